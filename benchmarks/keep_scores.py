"""Keep finished runs' answers in the repository: each RUN becomes INTO/NAME (its config.json,
history.csv, metrics.json, card, and scores.npz with its P(yes) and the labels on valid and test),
which every ensemble benchmark here reads in place of the run (benchmarks/run_scores.py).

    python benchmarks/keep_scores.py RUN_DIR ... --into benchmarks/results/kept/GROUP

A training takes up to an hour here, and a session's machine is new each time: kept runs let the
next session's seed means and ensembles use this session's trainings. NAME is the run
directory's name; a kept run already there is replaced.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from run_scores import keep

from kboolq.threads import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--into", type=Path, required=True, help="folder to keep them in")
    args = parser.parse_args()
    set_threads(1)
    for run in args.runs:
        keep(run, args.into / run.resolve().name)
        print(f"kept {run} in {args.into / run.resolve().name}")


if __name__ == "__main__":
    main()
