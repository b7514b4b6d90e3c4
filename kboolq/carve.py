"""python -m kboolq.carve DATA OUT: a pseudo-test split carved out of the training rows.

The official validation split is the test set, and model choices must never look at it. This
writes a data directory whose validation.jsonl (the test split to kboolq) is a fixed slice of
the training rows just before the usual validation rows, so the valid split stays exactly the
rows fit would use on DATA and the pseudo-test rows never reach training or model selection.

With --folds K --fold I the valid split is instead the I-th block of --valid-size rows counted
back from the end of the remaining rows (fold 0 is the usual valid split), moved to the end of
train.jsonl where fit takes it from: K fits on folds 0..K-1 are K-fold cross-validation over
K x valid-size rows, with the same pseudo-test split in every fold.
"""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import json
import sys
from pathlib import Path

from kboolq.cli import run_command
from kboolq.data.boolq import DEFAULT_VALID_SIZE, Row, read_rows, train_file
from kboolq.errors import UserError
from kboolq.files import write_json, write_text
from kboolq.runs.outputs import claim_output, lock_output

MARKER = "carve.json"  # what a directory written by carve records about itself


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.carve",
        description="Write OUT/train.jsonl = train[:-(valid+size)] + train[-valid:] and "
        "OUT/validation.jsonl = train[-(valid+size):-valid], so that kboolq's holdout split of OUT "
        "has the same valid rows as DATA and a held-out pseudo-test split.",
    )
    p.add_argument("data", type=Path, metavar="DATA", help="directory with the train file")
    p.add_argument(
        "out",
        type=Path,
        metavar="OUT",
        help="directory to write: new or empty, or one written by carve with --overwrite",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a dataset that carve wrote in OUT"
    )
    p.add_argument(
        "--size", type=int, default=1000, help="rows in the pseudo-test split (default: 1000)"
    )
    p.add_argument(
        "--valid-size",
        type=int,
        default=DEFAULT_VALID_SIZE,
        help="the valid split size fit will use (default: %(default)s)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=1,
        metavar="K",
        help="cross-validation folds of --valid-size rows each, counted back from the end of the "
        "rows left after the pseudo-test split; rows before the K blocks are always trained on "
        "(default: 1, the usual valid split only)",
    )
    p.add_argument(
        "--fold",
        type=int,
        default=0,
        metavar="I",
        help="which fold (0..K-1) is the valid split: its rows go last in train.jsonl "
        "(default: 0, the usual valid rows)",
    )
    return p


def is_carved(path: Path) -> bool:
    return (path / MARKER).is_file()


def carve(
    train: list[Row], size: int, valid_size: int, folds: int = 1, fold: int = 0
) -> tuple[list[Row], list[Row]]:
    """(new train rows, pseudo-test rows); the valid rows of `fold` come last.

    The pseudo-test rows are the same for every fold, and fold 0's valid rows are the usual
    ones, so that folds=1 is the plain carve."""
    if size < 1 or valid_size < 1:
        raise UserError(f"--size and --valid-size must be at least 1, got {size}, {valid_size}")
    if folds < 1 or not 0 <= fold < folds:
        raise UserError(f"--fold must be in 0..{folds - 1} with --folds {folds}, got {fold}")
    held = size + valid_size
    if len(train) <= held:
        raise UserError(f"{len(train)} training rows leave none to train on after {held}")
    rest = train[:-held] + train[-valid_size:]
    if len(rest) <= folds * valid_size:
        raise UserError(
            f"{len(rest)} rows after the pseudo-test split leave none to train on after "
            f"{folds} folds of {valid_size}"
        )
    end = len(rest) - fold * valid_size
    valid = rest[end - valid_size : end]
    return rest[: end - valid_size] + rest[end:] + valid, train[-held:-valid_size]


def _jsonl(rows: list[Row]) -> str:
    return "".join(
        json.dumps({"question": r.question, "passage": r.passage, "answer": bool(r.label)}) + "\n"
        for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    source = train_file(args.data)
    with lock_output(args.out):
        claim_output(
            args.out, "dataset", is_carved, args.overwrite, protect=[args.data], flag="OUT"
        )
        train, pseudo_test = carve(
            read_rows(source), args.size, args.valid_size, args.folds, args.fold
        )
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "train.jsonl", _jsonl(train))
        write_text(args.out / "validation.jsonl", _jsonl(pseudo_test))
        write_json(
            args.out / MARKER,
            {
                "source": str(source.resolve()),
                "size": args.size,
                "valid_size": args.valid_size,
                "folds": args.folds,
                "fold": args.fold,
            },
        )
        print(
            f"{args.out}: train {len(train) - args.valid_size} + valid {args.valid_size} rows in "
            f"train.jsonl, pseudo-test {len(pseudo_test)} rows in validation.jsonl"
            + (f"; valid = fold {args.fold} of {args.folds}" if args.folds > 1 else "")
        )
        return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "python -m kboolq.carve")())
