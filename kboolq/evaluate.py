"""python -m kboolq.evaluate RUN_DIR: score a saved model on one split, with report and plots."""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import json
import sys
from pathlib import Path

from kboolq.analysis import analyse, confident_errors, format_analysis
from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.boolq import load_boolq, source_problem
from kboolq.errors import UserError
from kboolq.evaluation import binary_report, format_table
from kboolq.files import remove_stale_temporaries, write_json, write_text
from kboolq.plots import save_plots, save_reliability
from kboolq.runs.api import open_run
from kboolq.runs.outputs import lock_output
from kboolq.runs.rundir import CONFIG_FILE, REPORT_FILE, read_info
from kboolq.threads import set_threads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.evaluate",
        description="Evaluate RUN_DIR/model.keras on one split; print the metrics table and where "
        "the model fails (accuracy and balanced accuracy by the question's first word, by "
        "passage-length quartile and by the share of question words the passage repeats; the "
        "expected calibration error); add the split's report with that analysis to "
        "RUN_DIR/report.json (one entry per split evaluated); write its most confident wrong "
        "answers to SPLIT_errors.jsonl and confusion-matrix, ROC, PR and reliability plots "
        "(SPLIT_*.png).",
    )
    p.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a directory written by kboolq.fit"
    )
    p.add_argument(
        "--split",
        choices=("valid", "test"),
        default="valid",
        help="which split to score (default: %(default)s)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="BoolQ source as in fit: hub, tfds or a directory (default: the run's own)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="rows per prediction batch (default: the run's batch size)",
    )
    add_cache_argument(p)
    add_threads_argument(p)
    return p


def _reports(run_dir: Path) -> dict:
    """The splits evaluated before: report.json keeps one report per split."""
    try:
        reports = json.loads((run_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return reports if isinstance(reports, dict) else {}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    read_info(args.run_dir)  # a mistyped RUN_DIR is reported before anything else
    with lock_output(args.run_dir):
        run = open_run(args.run_dir, cache_dir(args))
        remove_stale_temporaries(args.run_dir)
        info = run.info
        if args.data is None and (problem := source_problem(info.data.source)):
            reason = problem.removeprefix("--data ")
            raise UserError(
                f"{args.run_dir / CONFIG_FILE}: key 'data.source' records the data the run was "
                f"trained on, which cannot be read now ({reason}); pass --data DIR (or hub, "
                "tfds) to score other data: it overrides the recorded source"
            )
        boolq = load_boolq(args.data or info.data.source, info.data.valid_size)
        if args.split not in boolq.splits:
            raise UserError(
                f"{boolq.source} has no {args.split} split (it has {', '.join(boolq.splits)})"
            )
        encoded = run.encode_splits({args.split: boolq.splits[args.split]})
        split = encoded.splits[args.split]
        batch_size = args.batch_size or info.config.batch_size
        scores = run.scores(encoded, args.split, batch_size)
        rows = boolq.splits[args.split]
        analysis = analyse(rows, scores, info.data.accents)
        # which data was scored: the run's own, or what --data named
        report = {**binary_report(split.labels, scores), "data": boolq.source,
                  "analysis": analysis}  # fmt: skip
        write_json(args.run_dir / REPORT_FILE, {**_reports(args.run_dir), args.split: report})
        errors = args.run_dir / f"{args.split}_errors.jsonl"
        write_text(errors, "".join(json.dumps(e) + "\n"
                                   for e in confident_errors(rows, scores, 0.5)))  # fmt: skip
        plots = save_plots(split.labels, scores, report, args.run_dir, args.split)
        plots.append(args.run_dir / f"{args.split}_calibration.png")
        save_reliability(analysis["calibration"], plots[-1])
        print(format_table({args.split: report}))
        print(format_analysis(analysis))
        own = "--data" if args.data else "the run's own data"
        print(f"scored {args.split} of {boolq.source} ({own})")
        print(f"wrote {args.run_dir / REPORT_FILE}, {errors.name} and "
              f"{', '.join(p.name for p in plots)}")  # fmt: skip
        return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.evaluate")())
