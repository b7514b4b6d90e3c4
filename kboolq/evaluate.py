"""python -m kboolq.evaluate RUN_DIR: score a saved model on one split, with report and plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kboolq.cli import add_cache_argument, cache_dir, run_command
from kboolq.data import load_boolq
from kboolq.embeddings import load_glove
from kboolq.errors import UserError
from kboolq.files import write_json
from kboolq.metrics import binary_report
from kboolq.preprocess import encode
from kboolq.report import format_table, save_plots
from kboolq.run import RunInfo, load_model, read_info
from kboolq.training import predict


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.evaluate",
        description="Evaluate RUN_DIR/model.keras on one split; print the metrics table and write "
        "RUN_DIR/report.json plus confusion-matrix, ROC and PR plots (SPLIT_*.png).",
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
    return p


def load_vectors(info: RunInfo, cache: Path):
    """The run's own vectors, refused if they changed since training."""
    glove = load_glove(info.glove["source"], cache)
    if glove.fingerprint != info.glove["fingerprint"]:
        raise UserError(
            f"the vectors behind {info.glove['source']} changed since this model was trained; "
            "restore the original file or train again"
        )
    return glove


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    info = read_info(args.run_dir)
    model = load_model(args.run_dir)
    boolq = load_boolq(args.data or info.data["source"], info.data["valid_size"])
    if args.split not in boolq.splits:
        raise UserError(
            f"{boolq.source} has no {args.split} split (it has {', '.join(boolq.splits)})"
        )
    glove = load_vectors(info, cache_dir(args))
    _, table, splits, _, _ = encode({args.split: boolq.splits[args.split]}, glove, info.layout)
    split = splits[args.split]
    scores = predict(model, split, table, args.batch_size or info.config.batch_size)
    report = binary_report(split.labels, scores)
    write_json(args.run_dir / "report.json", {args.split: report})
    plots = save_plots(split.labels, scores, report, args.run_dir, args.split)
    print(format_table({args.split: report}))
    print(f"wrote {args.run_dir / 'report.json'} and {', '.join(p.name for p in plots)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.evaluate")())
