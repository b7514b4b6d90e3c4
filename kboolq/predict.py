"""python -m kboolq.predict RUN_DIR: P(yes) for new questions, encoded with the run's layout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.boolq import Row, parse_row, read_records
from kboolq.errors import UserError
from kboolq.evaluation import predict_split
from kboolq.rundir import open_run
from kboolq.threads import set_threads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.predict",
        description="Answer yes/no questions about passages with a trained run. Give one "
        "--question and --passage, or --jsonl FILE with question and passage fields per line "
        "(answers, if present, are ignored); prints one JSON object per row.",
    )
    p.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a directory written by kboolq.fit"
    )
    p.add_argument("--question", help="the yes/no question")
    p.add_argument("--passage", help="the passage the question is about")
    p.add_argument(
        "--jsonl", type=Path, help="file of rows to answer (.jsonl, .jsonl.gz or .parquet)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="answer yes when P(yes) >= this (default: %(default)s)",
    )
    add_cache_argument(p)
    add_threads_argument(p)
    return p


def rows_from_args(args: argparse.Namespace) -> list[Row]:
    if args.jsonl is not None:
        if args.question is not None or args.passage is not None:
            raise UserError("give either --jsonl or --question with --passage, not both")
        if not args.jsonl.is_file():
            raise UserError(f"--jsonl {args.jsonl}: no such file")
        rows = [
            parse_row(record, where, labelled=False) for record, where in read_records(args.jsonl)
        ]
        if not rows:
            raise UserError(f"{args.jsonl}: no rows")
        return rows
    if args.question is None or args.passage is None:
        raise UserError("give --question and --passage (or --jsonl FILE)")
    return [
        parse_row(
            {"question": args.question, "passage": args.passage}, "the command line", labelled=False
        )
    ]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    if not 0.0 <= args.threshold <= 1.0:  # NaN fails this too
        raise UserError(f"--threshold must be in [0, 1], got {args.threshold}")
    rows = rows_from_args(args)
    run = open_run(args.run_dir, cache_dir(args))
    encoded = run.encode({"rows": rows})
    scores = predict_split(
        run.model, encoded.splits["rows"], encoded.table, run.info.config.batch_size, encoded.stems
    )
    for row, score in zip(rows, scores, strict=True):
        answer = "yes" if score >= args.threshold else "no"
        print(
            json.dumps(
                {"question": row.question, "p_yes": round(float(score), 6), "answer": answer}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.predict")())
