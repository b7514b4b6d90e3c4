"""When runs reach their best: each run's epochs, best epoch and best valid balanced accuracy,
and the best within its first N epochs (what it had reached had it stopped there).

    python benchmarks/best_by_epoch.py RUN_DIR ... [--epochs N]

Read from each run's history.csv; prints a Markdown table, then the mean of each column.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from statistics import mean

MONITOR = "val_balanced_accuracy"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (their history.csv)")
    p.add_argument("--epochs", type=int, default=19, help="N: the best within the first N")
    args = p.parse_args()
    print(f"| run | epochs | best epoch | best valid bal. acc. | best in epochs 1-{args.epochs} |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for run in args.runs:
        with open(run / "history.csv") as handle:
            values = [float(row[MONITOR]) for row in csv.DictReader(handle)]
        best = max(range(len(values)), key=values.__getitem__)
        rows.append((len(values), best + 1, values[best], max(values[: args.epochs])))
        print(f"| {run} | {rows[-1][0]} | {rows[-1][1]} | {rows[-1][2]:.3f} | {rows[-1][3]:.3f} |")
    means = [mean(column) for column in zip(*rows, strict=True)]
    print(f"| mean | {means[0]:.1f} | {means[1]:.1f} | {means[2]:.3f} | {means[3]:.3f} |")


if __name__ == "__main__":
    main()
