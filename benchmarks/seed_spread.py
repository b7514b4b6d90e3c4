"""Mean +- sample standard deviation of finished runs' metrics: how the README's results table
is computed from runs trained one by one (`fit --seeds N` writes the same into seeds.json).

    python benchmarks/seed_spread.py RUN_DIR RUN_DIR ... [--extra "valid=ACC,BAL,F1;test=..."]
        [--recorded "N;valid=M+-S,M+-S,M+-S;test=..."] [--ensembles K [--alternate RUN_DIR ...]]

--extra adds a run known only by its figures (accuracy, balanced accuracy, macro F1 per split),
for runs whose directory is gone but whose numbers were recorded. --recorded adds N runs known
only by their recorded mean +- std per metric: they stand as N values with exactly that mean and
sample std, so the runs' mean +- std pooled with the others is exact (to the recorded digits).

--ensembles K also scores the average of every K of the runs (what `fit --seeds K` would give
for each draw of K seeds) and prints the mean +- std over those draws; draws share members, so
their std understates the spread of independent K-seed ensembles. With --alternate (runs of
the model that fit's --alternate trains), every draw is mixed as `fit --seeds K` mixes its
members: ceil(K/2) of the --alternate runs and K//2 of the others.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from run_scores import average_report, format_means, scores_of

from kboolq.evaluation import SPREAD_METRICS
from kboolq.threads import set_threads


def parse_extra(text: str) -> dict[str, dict[str, float]]:
    report = {}
    for part in text.split(";"):
        split, _, values = part.partition("=")
        report[split.strip()] = dict(
            zip(SPREAD_METRICS, map(float, values.split(",")), strict=True)
        )
    return report


def parse_recorded(text: str) -> list[dict[str, dict[str, float]]]:
    """N reports whose metrics have the recorded mean and sample std: mean + std * z_i, z the
    standardized 0..N-1 (mean 0, sample std 1)."""
    count, _, rest = text.partition(";")
    n = int(count)
    z = np.arange(n) - (n - 1) / 2
    z = z / z.std(ddof=1) if n > 1 else z
    reports: list[dict[str, dict[str, float]]] = [{} for _ in range(n)]
    for part in rest.split(";"):
        split, _, values = part.partition("=")
        for metric, value in zip(SPREAD_METRICS, values.split(","), strict=True):
            mean, _, std = value.partition("+-")
            for report, zi in zip(reports, z, strict=True):
                report.setdefault(split.strip(), {})[metric] = float(mean) + float(std or 0) * zi
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with metrics.json")
    parser.add_argument("--extra", action="append", default=[], help="split=acc,bal,f1;...")
    parser.add_argument(
        "--recorded", action="append", default=[], help="N;split=M+-S,M+-S,M+-S;..."
    )
    parser.add_argument("--ensembles", type=int, metavar="K", help="score every K of the runs")
    parser.add_argument(
        "--alternate",
        nargs="+",
        type=Path,
        default=[],
        metavar="RUN_DIR",
        help="with --ensembles K: runs of the other model; each draw takes ceil(K/2) of them",
    )
    args = parser.parse_args()
    if args.alternate and not args.ensembles:
        parser.error("--alternate needs --ensembles K")
    reports = [json.loads((run / "metrics.json").read_text()) for run in args.runs]
    reports += [parse_extra(text) for text in args.extra]
    reports += [report for text in args.recorded for report in parse_recorded(text)]
    splits = [s for s in ("valid", "test") if all(s in r for r in reports)]
    print(format_means("runs", [{s: r[s] for s in splits} for r in reports]))
    if args.ensembles:
        set_threads(1)
        labels, scores = scores_of(args.runs + args.alternate)
        draws = mixed_draws(len(args.runs), len(args.alternate), args.ensembles)
        reports = [average_report(labels, [scores[i] for i in draw]) for draw in draws]
        if args.alternate:
            alone = [average_report(labels, [member]) for member in scores[len(args.runs) :]]
            print(format_means("--alternate runs", alone))
        mixed = " (mixed as fit --seeds mixes them)" if args.alternate else ""
        print(format_means(f"ensembles of {args.ensembles}{mixed}, every draw", reports))


def mixed_draws(runs: int, alternate: int, k: int) -> list[tuple[int, ...]]:
    """Indices of every k-member draw: from the first `runs` only, or, when there are
    `alternate` runs after them, ceil(k/2) of those and k//2 of the first."""
    if not alternate:
        return list(itertools.combinations(range(runs), k))
    others = range(runs, runs + alternate)
    return [
        a + b
        for a in itertools.combinations(others, (k + 1) // 2)
        for b in itertools.combinations(range(runs), k // 2)
    ]


if __name__ == "__main__":
    main()
