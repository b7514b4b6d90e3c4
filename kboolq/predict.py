"""python -m kboolq.predict RUN_DIR: P(yes) for new questions, encoded with the run's layout."""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.boolq import BadRecord, Row, parse_row, read_records
from kboolq.errors import UserError
from kboolq.explain import STEPS, check_backend, check_explainable, explain
from kboolq.runs.api import answer, check_threshold, open_run
from kboolq.threads import set_threads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.predict",
        description="Answer yes/no questions about passages with a trained run. Give one "
        "--question and --passage, or --jsonl FILE with question and passage fields per line "
        "(answers, if present, are ignored); prints one JSON object per row, in order: "
        '{"question", "p_yes", "answer"}, or {"line", "error"} for a row that cannot be '
        "answered (malformed, a missing field, no word in the run's vocabulary). With "
        '--explain each answer also has "explanation": every word\'s share of P(yes).',
        epilog="exit status: 0 every row answered; 1 some rows not answered (each has its "
        "error line, and stderr counts them); 2 nothing answered because of the command itself "
        "(flags, RUN_DIR, an unreadable file); 130/143 interrupted.",
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
    p.add_argument(
        "--explain",
        action="store_true",
        help='add "explanation" to each answer: a score per question and passage word, '
        f"integrated gradients of P(yes) over the word vectors ({STEPS} steps from the "
        "padding vector); the scores sum to P(yes) minus P(yes) at that baseline, up to the "
        '"completeness_gap" it reports. About 2 model passes per step and row',
    )
    add_cache_argument(p)
    add_threads_argument(p)
    return p


@dataclass
class Entry:
    """One input row: the row, or why it cannot be answered; `where` is file:line."""

    where: str
    row: Row | None = None
    error: str | None = None
    score: float | None = None
    explanation: dict | None = None


def _entry(record, where: str) -> Entry:
    if isinstance(record, BadRecord):
        return Entry(where, error=record.reason)
    try:
        return Entry(where, row=parse_row(record, where, labelled=False))
    except UserError as exc:
        return Entry(where, error=str(exc).removeprefix(f"{where}: "))


def entries_from_args(args: argparse.Namespace) -> list[Entry]:
    if args.jsonl is not None:
        if args.question is not None or args.passage is not None:
            raise UserError("give either --jsonl or --question with --passage, not both")
        if not args.jsonl.is_file():
            raise UserError(f"--jsonl {args.jsonl}: no such file")
        entries = [_entry(record, where) for record, where in read_records(args.jsonl, True)]
        if not entries:
            raise UserError(f"{args.jsonl}: no rows")
        return entries
    if args.question is None or args.passage is None:
        raise UserError("give --question and --passage (or --jsonl FILE)")
    row = {"question": args.question, "passage": args.passage}
    return [Entry("the command line", row=parse_row(row, "the command line", labelled=False))]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    check_threshold(args.threshold)
    if args.explain:
        check_backend()  # before any row is read
    entries = entries_from_args(args)
    run = open_run(args.run_dir, cache_dir(args))
    if args.explain:
        check_explainable(run)
    for entry in entries:
        if entry.row is not None:
            entry.error = run.problem(entry.row)
    answerable = [entry for entry in entries if entry.error is None]
    if answerable:
        predicted = run.predict([entry.row for entry in answerable])
        for entry, score in zip(answerable, predicted, strict=True):
            entry.score = float(score)
        if args.explain:
            explained = explain(run, [entry.row for entry in answerable])
            for entry, explanation in zip(answerable, explained, strict=True):
                entry.explanation = explanation
    for entry in entries:
        if entry.error is not None:
            print(json.dumps({"line": entry.where, "error": entry.error}))
            continue
        score = entry.score
        said = answer(score, args.threshold)
        found = {"question": entry.row.question, "p_yes": round(score, 6), "answer": said}
        if entry.explanation is not None:
            found["explanation"] = entry.explanation
        print(json.dumps(found))
    failed = len(entries) - len(answerable)
    if failed:
        print(
            f"kboolq.predict: {failed} of {len(entries)} rows not answered (see their error lines)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.predict")())
