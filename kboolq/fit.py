"""python -m kboolq.fit: train a classifier on the notebook's split and write a run directory.

The command reads the flags and picks the mode; the library does the rest: kboolq.fitting (one
model or an ensemble, kboolq.members), kboolq.distill (--distill) and kboolq.refit (--refit),
each written through kboolq.runs.outputs.claimed and ended by kboolq.runs.finish."""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import contextlib
import dataclasses
import shlex
import signal
import sys
from pathlib import Path

from kboolq.cli import (
    add_source_arguments,
    add_threads_argument,
    add_verbose_argument,
    cache_dir,
    data_settings,
    run_command,
    verbosity,
)
from kboolq.config import (
    Config,
    DataSettings,
    add_arguments,
    add_config_arguments,
    config_from_args,
    flag_of,
    word_chars,
)
from kboolq.distill import distilled
from kboolq.errors import Interrupted, UserError
from kboolq.evaluation import format_spread, format_table
from kboolq.fitting import Plan, train_run
from kboolq.inputs import load_inputs, warn_about_data
from kboolq.members import (
    alternate_config,
    fold_configs,
    member_configs,
    member_vectors,
    split_vectors,
)
from kboolq.refit import plan_refit, refit_into
from kboolq.resume import read_state, training_key
from kboolq.runs.outputs import Claim, claimed
from kboolq.runs.rundir import (
    MEMBERS_DIR,
    METRICS_FILE,
    MODEL_FILE,
    RUN,
    RunInfo,
    clear_run,
    is_run,
    read_info,
    run_and_members,
)
from kboolq.threads import set_threads

MAX_SEEDS = 25  # members of one seed ensemble; more is a mistake, not a plan
MAX_FOLDS = 10
# The other model of the default seed ensemble: chosen on valid (docs/results.md, seed means)
ALTERNATE = "--arch esim --hidden 128 --exact-match off"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.fit",
        description="Train a BoolQ yes/no classifier on train[:-valid_size], stop early on the "
        "validation split's balanced accuracy, and write RUN_DIR with model.keras, config.json, "
        "history.csv and metrics.json (valid, and test when the data has a test split).",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="RUN_DIR",
        help="run directory to write: a new or empty directory, or a kboolq run with --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help=f"train N (at most {MAX_SEEDS}) models with seeds --seed, --seed+1, ... (the 1st, "
        "3rd, ... with --alternate's settings) and save RUN_DIR as their ensemble (one model "
        "averaging their P(yes), or, when their vectors differ, the members each answering "
        "their own way); each member is a run of its own in "
        "RUN_DIR/members/seed_S, and the members' mean +- std, the ensemble and its gain are "
        "printed and written to RUN_DIR/seeds.json. A killed --seeds fit keeps the members it "
        "finished and trains only the rest when run again (default: 1, one model)",
    )
    p.add_argument(
        "--alternate",
        default=ALTERNATE,
        metavar="FLAGS",
        help="with --seeds N: hyperparameter flags applied on top of the others for the 1st, "
        "3rd, 5th, ... member (seeds --seed, --seed+2, ...), so that the ensemble mixes two "
        "models; the 2nd, 4th, ... members train as configured. --glove SPEC among them gives "
        'those members other vectors (e.g. --alternate "--glove spacy-md"): each member then '
        "encodes its own input and RUN_DIR answers the mean of the members. 'none' trains every "
        "member alike. The default mix (esim members between the default bigru members) scored "
        "best on valid among the ensembles measured (docs/results.md) "
        "(default: '%(default)s')",
    )
    p.add_argument(
        "--train-folds",
        type=int,
        default=1,
        metavar="K",
        help=f"train K models (2 to {MAX_FOLDS}; seeds --seed, --seed+1, ...), the k-th on the "
        "train rows outside fold k of K (a fixed shuffle of the train rows dealt into K "
        "folds), and save RUN_DIR as their ensemble, like --seeds (members in "
        "RUN_DIR/members/fold_k). As a --distill teacher it answers each train row with the "
        "member that did not train on it, not with models that learned its label. Each "
        "member sees (K-1)/K of the train rows; not with --seeds or --distill "
        "(default: 1, off)",
    )
    p.add_argument(
        "--distill",
        type=Path,
        metavar="TEACHER_DIR",
        help="train on the answers of a trained run or ensemble (the teacher, made from the "
        "same data and --valid-size) mixed with the labels: each train row's target is "
        "(1 - W) * answer + W * the teacher's P(yes). Only train rows get the teacher's "
        "answers; valid (early stopping) and test keep the labels alone. A teacher made with "
        "--train-folds answers each train row out of fold (default: off)",
    )
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        metavar="W",
        help="with --distill: the teacher's share W of each train target, from 0 to 1 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--refit",
        type=Path,
        metavar="RUN_DIR",
        help="train RUN_DIR's settings again on every labelled row but the test split (train + "
        "valid), for the epochs its early stopping chose and with the learning rate it had in "
        "each; an ensemble's members are each refit and averaged. Takes RUN_DIR's own "
        "hyperparameters and data (no other settings flags); the new run reports the test "
        "split only, as valid is now trained on (default: off)",
    )
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases (off by default)")
    add_verbose_argument(p)
    add_source_arguments(p)
    add_threads_argument(p)
    add_config_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    if args.refit is not None:
        return refit(args, given_settings(sys.argv[1:] if argv is None else argv))
    config = config_from_args(args)
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise UserError(
            f"--seeds must be from 1 to {MAX_SEEDS}, got {args.seeds} (each member is a full "
            f"training: {MAX_SEEDS} already cost about {MAX_SEEDS} times one fit)"
        )
    if args.train_folds != 1 and not 2 <= args.train_folds <= MAX_FOLDS:
        raise UserError(f"--train-folds must be from 2 to {MAX_FOLDS}, got {args.train_folds}")
    if args.train_folds > 1 and (args.seeds != 1 or args.distill is not None):
        other = "--seeds" if args.seeds != 1 else "--distill"
        raise UserError(f"--train-folds makes its own ensemble of teachers: drop {other}")
    settings = data_settings(args)
    if args.train_folds > 1:
        members = fold_configs(config, args.train_folds)
        vectors = [settings.glove] * len(members)
    else:
        members = member_configs(config, alternate_config(config, args.alternate), args.seeds)
        vectors = member_vectors(settings.glove, split_vectors(args.alternate)[1], len(members))
    if not 0.0 <= args.distill_weight <= 1.0:
        raise UserError(f"--distill-weight must be from 0 to 1, got {args.distill_weight}")
    if args.distill is not None:
        read_run_flag("--distill", args.distill)  # reported before anything is touched
    plan = Plan(verbosity(args), args.wandb, cache_dir(args), args.seeds, args.alternate,
                args.train_folds)  # fmt: skip
    teacher = [] if args.distill is None else run_and_members(Path(args.distill))
    with claimed(args.out, RUN, args.overwrite, protect=teacher, resumable=unfinished) as out:
        return fit(args, plan, config, members, vectors, settings, out)


def read_run_flag(flag: str, run_dir: Path) -> RunInfo:
    """read_info for a run named by a flag; its errors name the flag."""
    try:
        return read_info(run_dir)
    except UserError as exc:
        raise UserError(f"{flag} {exc}") from None


def given_settings(argv: list[str]) -> list[str]:
    """The hyperparameter and data flags given on the command line (not their defaults)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_arguments(probe, Config, "", only_given=True)
    add_arguments(probe, DataSettings, "", only_given=True)
    known, _ = probe.parse_known_args(argv)
    return [flag_of(name, Config if name in Config.__dataclass_fields__ else DataSettings)
            for name in vars(known)]  # fmt: skip


def refit(args: argparse.Namespace, given: list[str]) -> int:
    """fit --refit RUN_DIR: RUN_DIR (or each member of it) trained again on train + valid for
    the epochs and learning rates it chose, into --out, staged like any fit."""
    if given or args.seeds != 1 or args.distill is not None or args.train_folds != 1:
        extra = [*given, *(["--seeds"] if args.seeds != 1 else [])]
        extra += ["--distill"] if args.distill is not None else []
        extra += ["--train-folds"] if args.train_folds != 1 else []
        raise UserError(f"--refit takes {args.refit}'s own settings: drop {', '.join(extra)}")
    source = Path(args.refit)
    plan = plan_refit(source, read_run_flag("--refit", source))
    made_by = shlex.join(["python", "-m", "kboolq.fit", "--refit", str(source),
                          "--out", str(args.out)])  # fmt: skip
    with claimed(args.out, RUN, args.overwrite, protect=run_and_members(source)) as out:
        reports, seconds = refit_into(plan, out, cache_dir(args), verbosity(args), made_by)
    print(format_table(reports))
    print(f"refit of {source} trained {seconds:.0f} s; written to {out.path}")
    return 0


def unfinished(run_dir: Path) -> bool:
    """A run that did not finish (no metrics.json): this command's own leftover, started over
    in place without --overwrite."""
    return is_run(run_dir) and not (run_dir / METRICS_FILE).exists()


def fit(
    args: argparse.Namespace,
    plan: Plan,
    config: Config,
    members: list[Config],
    vectors: list[str],
    settings: DataSettings,
    out: Claim,
) -> int:
    """Everything is checked before RUN_DIR is touched; a finished run being replaced stays
    whole until its successor is complete (trained in a staging directory, then swapped in, the
    user's own files carried over). A run that did not finish is this command's own leftover
    and is started over in place."""
    run_dir = out.path
    left = unfinished(run_dir)
    chars = word_chars(member.chars for member in members)
    loaded = {}  # each member's vectors (--alternate "--glove SPEC"), loaded once each
    for spec in dict.fromkeys([settings.glove, *vectors]):
        loaded[spec] = load_inputs(dataclasses.replace(settings, glove=spec), plan.cache, chars)
        if spec == settings.glove:
            warn_about_data(loaded[spec], config.batch_size)
        if args.distill is not None:
            loaded[spec] = distilled(loaded[spec], args.distill, args.distill_weight, plan.cache)
    inputs = loaded[settings.glove]
    member_inputs = [loaded[spec] for spec in vectors]
    staging = out.held and not left
    if left:
        if len(members) == 1 and read_state(run_dir, training_key(config, inputs.prepared)):
            print(f"{run_dir} holds a run that did not finish; going on where it stopped")
        else:  # an ensemble keeps its finished members and each member's state
            print(f"{run_dir} holds a run that did not finish; starting it over")
            clear_run(run_dir)
    try:
        with out.staged() if staging else _in_place(run_dir) as work:
            trained = train_run(work, plan, config, members, inputs, run_dir, member_inputs)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if isinstance(exc, Interrupted) and str(exc):  # staging says what it did
            said = str(exc)
        elif staging:
            said = f"{run_dir} still holds the previous run"
        elif len(members) > 1:
            said = f"finished members kept in {run_dir / MEMBERS_DIR}; the same command goes on"
        else:
            saved = run_dir / MODEL_FILE
            said = f"best model so far {f'kept in {saved}' if saved.exists() else 'none saved yet'}"
            said += "; the same command goes on from the last finished epoch"
        raise Interrupted(f"interrupted: {said}", signum) from None
    print(format_table(trained.reports))
    if len(members) > 1:
        print(format_spread(trained.members, trained.reports, len(members)))
        archs = ", ".join(member.arch for member in members)
        folds = f", each without one of {plan.folds} folds" if plan.folds > 1 else ""
        print(
            f"ensemble of {len(members)} seeds ({archs}{folds}); trained "
            f"{trained.seconds:.0f} s; written to {run_dir}"
        )
    else:
        best = trained.checkpoint
        print(
            f"best epoch {best.best_epoch} (valid balanced accuracy {best.best:.4f}); "
            f"trained {trained.seconds:.0f} s; run written to {run_dir}"
        )
    return 0


@contextlib.contextmanager
def _in_place(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    yield run_dir


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.fit")())
