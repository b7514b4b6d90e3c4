"""Mean +- sample standard deviation of finished runs' metrics: how the README's results table
is computed from runs trained one by one (`fit --seeds N` writes the same into seeds.json).

    python benchmarks/seed_spread.py RUN_DIR RUN_DIR ... [--extra "valid=ACC,BAL,F1;test=..."]
        [--ensembles K]

--extra adds a run known only by its figures (accuracy, balanced accuracy, macro F1 per split),
for runs whose directory is gone but whose numbers were recorded. --ensembles K also scores the
average of every K of the runs (what `fit --seeds K` would give for each draw of K seeds) and
prints the mean +- std over those draws; draws share members, so their std understates the
spread of independent K-seed ensembles.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories with metrics.json")
    parser.add_argument("--extra", action="append", default=[], help="split=acc,bal,f1;...")
    parser.add_argument("--ensembles", type=int, metavar="K", help="score every K of the runs")
    args = parser.parse_args()
    reports = [json.loads((run / "metrics.json").read_text()) for run in args.runs]
    reports += [parse_extra(text) for text in args.extra]
    splits = [s for s in ("valid", "test") if all(s in r for r in reports)]
    print(format_means("runs", [{s: r[s] for s in splits} for r in reports]))
    if args.ensembles:
        set_threads(1)
        labels, scores = scores_of(args.runs)
        draws = list(itertools.combinations(range(len(scores)), args.ensembles))
        reports = [average_report(labels, [scores[i] for i in draw]) for draw in draws]
        print(format_means(f"ensembles of {args.ensembles} of these runs, every draw", reports))


if __name__ == "__main__":
    main()
