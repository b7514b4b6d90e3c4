"""python -m tuning.report GRID_DIR: which hyperparameters matter, from a grid's finished trials
(GRID_DIR/report/report.md with its plots; tuning/dashboard.py)."""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import sys
from pathlib import Path

from kboolq.cli import run_command
from tuning.dashboard import REPORT_DIR, write_report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tuning.report",
        description="Write GRID_DIR/report/: report.md with the importance of each axis "
        "(Optuna's fANOVA evaluator over the finished trials), a parallel-coordinates plot of "
        "every finished trial coloured by valid balanced accuracy, each axis's score per value "
        "(mean +- std) and the best trials. Works on a grid that is still running (finished "
        "trials only), a distributed grid's chief directory and a resumed grid; every grid "
        "writes it again when it ends. Reads the grid's files only: it takes no lock and "
        f"writes nothing outside GRID_DIR/{REPORT_DIR}.",
    )
    p.add_argument("grid_dir", type=Path, metavar="GRID_DIR", help="a tuning.grid --out")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = write_report(args.grid_dir)
    print(f"wrote {path} and its plots")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "tuning.report")())
