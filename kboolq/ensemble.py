"""python -m kboolq.ensemble RUN_DIR RUN_DIR ... --out ENS_DIR: average the members' P(yes).

The ensemble is saved as one ordinary run directory (a single model.keras whose output is the
mean of its members), so kboolq.evaluate and kboolq.predict use it like any other run.
`--select` keeps only the members that help on the valid split (greedy forward selection), so
the choice of members, like every other choice, is made on validation data only.
"""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.boolq import load_boolq
from kboolq.errors import UserError
from kboolq.evaluation import binary_report, format_table
from kboolq.runs.api import open_run
from kboolq.runs.finish import finish_run
from kboolq.runs.outputs import claimed
from kboolq.runs.rundir import (
    RUN,
    RunInfo,
    read_info,
    run_and_members,
    save_ensemble,
    write_info,
)
from kboolq.threads import set_threads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.ensemble",
        description="Combine runs trained on the same data (e.g. different seeds, "
        "architectures or vectors) into one run directory that answers the mean of their "
        "probabilities; reports valid (and test) metrics of the ensemble. Runs that read the "
        "same vectors and layout are averaged into one model.keras; runs that read different "
        "ones each keep their own model and encode the rows their own way.",
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="member run directories")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="run directory to write: new or empty, or a kboolq run with --overwrite (never one "
        "of the members)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument(
        "--select",
        action="store_true",
        help="keep only the members that raise the valid balanced accuracy: start from the best "
        "run, add the run that raises it most while one does (at least two members)",
    )
    add_cache_argument(p)
    add_threads_argument(p)
    return p


def check_distinct(runs: list[Path]) -> None:
    """The same run named twice (also through a link or `..`) is not a second member."""
    seen: dict[Path, Path] = {}
    for run in runs:
        real = Path(run).resolve()
        if real in seen:
            raise UserError(
                f"{run}: the same run as {seen[real]}; an ensemble averages different runs"
            )
        seen[real] = run


def check_compatible(infos: list[RunInfo], runs: list[Path]) -> None:
    """Members are scored on the same valid and test rows: the same data and valid split (their
    vectors, layouts and tokenizer settings may differ: each member encodes its own input)."""
    first = infos[0]
    for info, run in zip(infos[1:], runs[1:], strict=True):
        for what, mine, theirs in (
            ("data", info.data.source, first.data.source),
            ("--valid-size", info.data.valid_size, first.data.valid_size),
        ):
            if mine != theirs:
                raise UserError(
                    f"{run}: trained with {what} {mine}, {runs[0]} with {theirs}; an ensemble's "
                    "members are scored on the same valid and test rows"
                )


def greedy_select(labels: np.ndarray, probabilities: list[np.ndarray]) -> list[int]:
    """Indices of the members chosen by forward selection on balanced accuracy (Caruana et al.).

    Each step adds the member whose inclusion gives the highest balanced accuracy of the mean
    probability; it stops when no addition improves it, but always keeps two members. Ties go to
    the member listed first.
    """

    def score(chosen: list[int]) -> float:
        mean = np.mean([probabilities[i] for i in chosen], axis=0)
        return binary_report(labels, mean)["balanced_accuracy"]

    chosen: list[int] = []
    best = -1.0
    while len(chosen) < len(probabilities):
        scores = {i: score([*chosen, i]) for i in range(len(probabilities)) if i not in chosen}
        candidate = max(scores, key=lambda i: (scores[i], -i))
        if scores[candidate] <= best and len(chosen) >= 2:
            break
        chosen.append(candidate)
        best = max(best, scores[candidate])
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    if len(args.runs) < 2:
        raise UserError("an ensemble needs at least two RUN_DIRs")
    check_distinct(args.runs)
    infos = [read_info(run) for run in args.runs]
    check_compatible(infos, args.runs)
    protect = [run for given in args.runs for run in run_and_members(given)]
    with claimed(args.out, RUN, args.overwrite, protect=protect) as out:
        cache = cache_dir(args)
        members = [open_run(run, cache) for run in args.runs]
        info = infos[0]
        boolq = load_boolq(info.data.source, info.data.valid_size)
        names = [name for name in ("valid", "test") if name in boolq.splits]
        groups = {n: boolq.splits[n] for n in names}
        runs = list(args.runs)
        if args.select:
            valid = [member.scores(member.encode_splits(groups), "valid") for member in members]
            labels = np.array([row.label for row in groups["valid"]])
            chosen = greedy_select(labels, valid)
            runs, members = [runs[i] for i in chosen], [members[i] for i in chosen]
            infos = [infos[i] for i in chosen]
            info = infos[0]  # config.json: the first member's (its data, batch size)
            print(f"selected on valid: {', '.join(str(run) for run in runs)}")
        # staged: a kill at any moment leaves the old run whole or the new one complete
        with out.staged() as work:
            write_info(work, info)
            models = [getattr(member, "model", None) for member in members]  # None: a mix
            model = save_ensemble(work, models, runs, out.path, infos)
            answerer = model if model is not None else open_run(work, cache)
            encoded = (members[0] if model is not None else answerer).encode_splits(groups)
            words = ["python", "-m", "kboolq.ensemble", *map(str, runs), "--out", str(args.out)]
            reports = finish_run(work, out.path.name, info, answerer, encoded, shlex.join(words))
        print(format_table(reports))
        print(f"ensemble of {len(runs)} runs written to {args.out}")
        return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.ensemble")())
