"""python -m kboolq.fit: train a classifier on the notebook's split and write a run directory."""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import contextlib
import dataclasses
import json
import shlex
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np

from kboolq import tracking
from kboolq.api import open_run
from kboolq.card import fit_command, write_card
from kboolq.cli import (
    Inputs,
    add_source_arguments,
    add_threads_argument,
    add_verbose_argument,
    cache_dir,
    check_same_rows,
    check_same_vectors,
    data_settings,
    load_inputs,
    run_command,
    run_info,
    verbosity,
    warn_about_data,
)
from kboolq.config import (
    Config,
    DataSettings,
    add_arguments,
    add_config_arguments,
    config_from_args,
    config_with_flags,
    flag_of,
    word_chars,
)
from kboolq.data.layout import Prepared, train_folds
from kboolq.errors import Interrupted, UserError
from kboolq.evaluation import (
    evaluate_splits,
    format_spread,
    format_table,
    predict_split,
    spread,
)
from kboolq.files import write_json
from kboolq.outputs import claim_output, lock_output
from kboolq.rundir import (
    MODEL_FILE,
    REFIT_FILE,
    Distillation,
    HeldOut,
    RunInfo,
    clear_run,
    ensemble_members,
    is_kboolq_entry,
    is_run,
    load_model,
    read_info,
    run_and_members,
    save_ensemble,
    sources_of,
    write_info,
)
from kboolq.staging import recover, remove_leftovers, staged, write_target
from kboolq.threads import set_threads
from kboolq.training import refit_model, refit_schedule, train_model, with_valid_in_train

MAX_SEEDS = 25  # members of one seed ensemble; more is a mistake, not a plan
MAX_FOLDS = 10
# The other model of the default seed ensemble: chosen on valid (README Results, seed means)
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
        "averaging their P(yes)); each member is a run of its own in "
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
        "models; the 2nd, 4th, ... members train as configured. 'none' trains every member "
        "alike. The default mix (esim members between the default bigru members) scored best "
        "on valid among the ensembles measured (docs/results.md) "
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
    if args.train_folds > 1:
        members = [dataclasses.replace(config, seed=config.seed + k)
                   for k in range(args.train_folds)]  # fmt: skip
    else:
        members = member_configs(config, alternate_config(config, args.alternate), args.seeds)
    settings = data_settings(args)
    if not 0.0 <= args.distill_weight <= 1.0:
        raise UserError(f"--distill-weight must be from 0 to 1, got {args.distill_weight}")
    if args.distill is not None:
        read_run_flag("--distill", args.distill)  # reported before anything is touched
    out = write_target(args.out)  # a symlinked RUN_DIR is written through, never replaced
    with lock_output(out):
        recover(out)
        return fit(args, config, members, settings, out)


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
    info = read_run_flag("--refit", source)
    members = ensemble_members(source)
    infos = {member: read_info(member) for member in members or [source]}
    plans = [(member, i, refit_schedule(member, i.config)) for member, i in infos.items()]
    out = write_target(args.out)
    with lock_output(out):
        recover(out)
        claim_output(out, "run", is_run, args.overwrite, protect=run_and_members(source))
        remove_leftovers(out)
        with sources_of(source):
            inputs = load_inputs(info.data, cache_dir(args), info.layout.word_chars)
        check_same_vectors("--refit", source, info, inputs.glove)
        check_same_rows("--refit", source, info, inputs.boolq)
        prepared = with_valid_in_train(inputs.prepared)
        rows = len(prepared.splits["train"])
        print(f"refitting {source} on {rows} rows (train + valid)", flush=True)
        started = time.perf_counter()
        with staged(out, is_kboolq_entry) as work:
            write_info(work, info)
            models, member_dirs = [], []
            for index, (member, member_info, rates) in enumerate(plans):
                where = work if not members else work / "members" / f"{index}_{member.name}"
                where.mkdir(parents=True, exist_ok=True)
                print(f"{member}: {len(rates)} epochs", flush=True)
                model = refit_model(
                    member_info.config, prepared, where, rates, verbose=verbosity(args)
                )
                write_json(where / REFIT_FILE, {"from": str(member.resolve()), "epochs": len(rates),
                                                "learning_rates": rates})  # fmt: skip
                if members:  # every labelled row now: a fold member's fold is trained on too
                    write_info(where, dataclasses.replace(member_info, held_out=None))
                    write_json(where / "metrics.json", evaluate_splits(
                        model, prepared, member_info.config.batch_size))  # fmt: skip
                models.append(model)
                member_dirs.append(out / where.relative_to(work))
            if members:
                model = save_ensemble(work, models, member_dirs, out)
            reports = evaluate_splits(model, prepared, info.config.batch_size)
            write_json(work / "metrics.json", reports)
            seconds = time.perf_counter() - started
            made_by = shlex.join(["python", "-m", "kboolq.fit", "--refit", str(source),
                                  "--out", str(args.out)])  # fmt: skip
            write_card(work, out.name, info, model, reports, made_by, prepared, seconds)
    print(format_table(reports))
    print(f"refit of {source} trained {seconds:.0f} s; written to {out}")
    return 0


def alternate_config(config: Config, flags: str) -> Config | None:
    """The settings of the odd-numbered members (1st, 3rd, ...), or None for 'none'."""
    if flags.strip() == "none":
        return None
    return config_with_flags(config, flags, "--alternate")


def member_configs(config: Config, alternate: Config | None, n: int) -> list[Config]:
    """What each of n models trains with: seeds config.seed, config.seed + 1, ...; the 1st,
    3rd, ... with `alternate`'s settings when there is more than one model (every seed is
    checked as each is made). One model is `config` itself: --alternate shapes ensembles only."""
    if n == 1:
        return [config]
    return [
        dataclasses.replace(
            alternate if alternate is not None and k % 2 == 0 else config, seed=config.seed + k
        )
        for k in range(n)
    ]


def fit(
    args: argparse.Namespace,
    config: Config,
    members: list[Config],
    settings: DataSettings,
    run_dir: Path,
) -> int:
    """Everything is checked before RUN_DIR is touched; a finished run being replaced stays
    whole until its successor is complete (trained in a staging directory, then swapped in, the
    user's own files carried over). A run that did not finish is this command's own leftover
    and is started over in place."""
    unfinished = is_run(run_dir) and not (run_dir / "metrics.json").exists()
    teacher = [] if args.distill is None else run_and_members(Path(args.distill))
    replacing = claim_output(run_dir, "run", is_run, args.overwrite or unfinished, protect=teacher)
    remove_leftovers(run_dir)  # kboolq's own, and only once the output is claimed
    inputs = load_inputs(settings, cache_dir(args), word_chars(member.chars for member in members))
    warn_about_data(inputs, config.batch_size)
    if args.distill is not None:
        inputs = distilled(inputs, args.distill, args.distill_weight, cache_dir(args))
    staging = replacing and not unfinished
    if unfinished:
        print(f"{run_dir} holds a run that did not finish; starting it over")
        clear_run(run_dir)
    try:
        with staged(run_dir, is_kboolq_entry) if staging else _in_place(run_dir) as work:
            reports, seconds, checkpoint, members_spread = _train_into(
                work, args, config, members, inputs, run_dir
            )
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        if isinstance(exc, Interrupted) and str(exc):  # staging says what it did
            said = str(exc)
        elif staging:
            said = f"{run_dir} still holds the previous run"
        elif len(members) > 1:
            said = f"finished members kept in {run_dir / 'members'}"
        else:
            saved = run_dir / MODEL_FILE
            said = f"best model so far {f'kept in {saved}' if saved.exists() else 'none saved yet'}"
        raise Interrupted(f"interrupted: {said}", signum) from None
    print(format_table(reports))
    if len(members) > 1:
        print(format_spread(members_spread, reports, len(members)))
        archs = ", ".join(member.arch for member in members)
        folds = f", each without one of {args.train_folds} folds" if args.train_folds > 1 else ""
        print(
            f"ensemble of {len(members)} seeds ({archs}{folds}); trained {seconds:.0f} s; "
            f"written to {run_dir}"
        )
    else:
        print(
            f"best epoch {checkpoint.best_epoch} (valid balanced accuracy {checkpoint.best:.4f}); "
            f"trained {seconds:.0f} s; run written to {run_dir}"
        )
    return 0


@contextlib.contextmanager
def _in_place(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    yield run_dir


def _train_into(
    work: Path,
    args: argparse.Namespace,
    config: Config,
    members: list[Config],
    inputs,
    run_dir: Path,
):
    """Train one model or an ensemble (--seeds, --train-folds) into `work`, with its metrics
    and W&B logging. Returns the reports, the seconds trained, the checkpoint (one model) and
    the members' spread (an ensemble)."""
    prepared = inputs.prepared
    print(
        f"data ready in {inputs.seconds:.1f} s{' (cached)' if inputs.from_cache else ''}; "
        f"T = {prepared.layout.steps}, vectors {inputs.glove.source} ({inputs.glove.dim}d)"
    )
    info = run_info(config, inputs)  # an ensemble's: the settings given; its members' differ
    write_info(work, info)
    settings = {k: v for k, v in info.to_dict().items() if k != "hyperparameters"}
    tracker, extra = tracking.start_tracking(
        args.wandb, {**config.to_dict(), **settings}, cache_dir(args) / "wandb", name=run_dir.name
    )  # the hyperparameters once, at the top, where W&B's tables and filters find them
    started = time.perf_counter()
    checkpoint, members_spread = None, None
    held_out = [HeldOut(k, args.train_folds) if args.train_folds > 1 else None
                for k in range(len(members))]  # fmt: skip
    if len(members) == 1:
        model, checkpoint = train_model(config, prepared, work, extra, verbose=verbosity(args))
    else:
        model, member_reports = train_members(
            info, list(zip(members, held_out, strict=True)), prepared, work, extra, args, run_dir
        )
    seconds = time.perf_counter() - started
    reports = evaluate_splits(model, prepared, config.batch_size)
    write_json(work / "metrics.json", reports)
    extra = ["--seeds", str(args.seeds), "--alternate", args.alternate] if args.seeds > 1 else []
    extra += ["--train-folds", str(args.train_folds)] if args.train_folds > 1 else []
    made_by = fit_command(info, shlex.join([*extra, "--out", str(run_dir)]))
    write_card(work, run_dir.name, info, model, reports, made_by, prepared, seconds)
    if len(members) > 1:
        members_spread = spread(member_reports)
        write_json(
            work / "seeds.json",
            {
                "seeds": [member.seed for member in members],
                "archs": [member.arch for member in members],
                "alternate": args.alternate if args.seeds > 1 else "none",
                "train_folds": args.train_folds,
                "members": members_spread,
                "ensemble": reports,
            },
        )
    if tracker is not None:
        valid = prepared.splits["valid"]
        scores = predict_split(model, valid, prepared.lookup, prepared.layout, config.batch_size)
        tracking.log_final(tracker, reports, valid.labels, scores, work / MODEL_FILE)
        tracker.finish()
    return reports, seconds, checkpoint, members_spread


def train_members(
    info: RunInfo,
    plans: list[tuple[Config, HeldOut | None]],
    prepared: Prepared,
    work: Path,
    extra: list,
    args: argparse.Namespace,
    run_dir: Path,
) -> tuple[keras.Model, list[dict]]:
    """Train one member run per plan under work/members: members/seed_S (--seeds), or
    members/fold_k trained without fold k's train rows (--train-folds). A finished member whose
    config.json matches is kept, so a killed fit resumes. Saves their average as work's model;
    returns it and each member's report (its train split: the rows it trained on)."""
    models, reports, names = [], [], []
    print(
        f"training {len(plans)} members one after another (about {len(plans)} times the "
        "time of one fit; a killed run keeps the finished ones)",
        flush=True,
    )
    for config, held_out in plans:
        member = dataclasses.replace(info, config=config, held_out=held_out)
        name = f"seed_{config.seed}" if held_out is None else f"fold_{held_out.fold}"
        names.append(name)
        member_dir, own = work / "members" / name, without_fold(prepared, held_out)
        if _finished(member_dir, member):
            print(f"member {name.replace('_', ' ')}: kept from an earlier run ({member_dir})")
            models.append(load_model(member_dir))
            reports.append(json.loads((member_dir / "metrics.json").read_text()))
            continue
        member_dir.mkdir(parents=True, exist_ok=True)
        clear_run(member_dir)
        write_info(member_dir, member)
        where = f"{len(models) + 1} of {len(plans)}, {config.arch}"
        if held_out is not None:
            where += f", seed {config.seed}; {len(own.splits['train'])} train rows"
        print(f"member {name.replace('_', ' ')} ({where})", flush=True)
        model, _ = train_model(config, own, member_dir, extra, verbose=verbosity(args))
        report = evaluate_splits(model, own, config.batch_size)
        write_json(member_dir / "metrics.json", report)
        how = "--seeds" if held_out is None else "--train-folds"
        made_by = f"{fit_command(member)}  # member of {run_dir.name} (fit {how})"
        write_card(member_dir, member_dir.name, member, model, report, made_by, own)
        models.append(model)
        reports.append(report)
    members = [run_dir / "members" / name for name in names]
    return save_ensemble(work, models, members, run_dir), reports


def without_fold(prepared: Prepared, held_out: HeldOut | None) -> Prepared:
    """`prepared` with the train rows of the held-out fold left out (all of them for None)."""
    if held_out is None:
        return prepared
    train = prepared.splits["train"]
    keep = train_folds(len(train), held_out.folds) != held_out.fold
    return dataclasses.replace(prepared, splits={**prepared.splits, "train": train.take(keep)})


def distilled(inputs: Inputs, teacher_dir: Path, weight: float, cache: Path) -> Inputs:
    """`inputs` with each train row's label mixed with the teacher's P(yes) for it. The
    teacher must have been made from the same data and --valid-size, so that it never trained
    on the student's valid or test rows; they keep the labels alone."""
    teacher = read_info(teacher_dir)
    data = teacher.data
    if (data.data, data.valid_size) != (inputs.boolq.source, inputs.settings.valid_size):
        raise UserError(
            f"--distill {teacher_dir}: made from {data.data} with --valid-size "
            f"{data.valid_size}, not {inputs.boolq.source} with --valid-size "
            f"{inputs.settings.valid_size}: its answers could carry the student's valid rows"
        )
    check_same_rows("--distill", teacher_dir, teacher, inputs.boolq)
    rows = inputs.boolq.splits["train"]
    folds = out_of_fold_members(teacher_dir)
    if folds:
        print(
            f"distilling from {teacher_dir}: each of the {len(rows)} train rows answered by the "
            f"member that did not train on it ({len(folds)} folds)",
            flush=True,
        )
        fold = train_folds(len(rows), len(folds))
        answers = np.empty(len(rows), np.float32)
        for k, member in enumerate(folds):
            index = np.flatnonzero(fold == k)
            answers[index] = open_run(member, cache).predict([rows[i] for i in index])
    else:
        print(f"distilling from {teacher_dir}: its P(yes) for the {len(rows)} train rows",
              flush=True)  # fmt: skip
        answers = open_run(teacher_dir, cache).predict(rows)
    train = inputs.prepared.splits["train"]
    soft = ((1.0 - weight) * train.labels + weight * answers).astype(np.float32)
    splits = {**inputs.prepared.splits, "train": dataclasses.replace(train, labels=soft)}
    prepared = dataclasses.replace(inputs.prepared, splits=splits)
    distillation = Distillation(str(Path(teacher_dir).resolve()), weight)
    return dataclasses.replace(inputs, prepared=prepared, distillation=distillation)


def out_of_fold_members(teacher_dir: Path) -> list[Path]:
    """A fit --train-folds teacher's members in fold order (member k never trained on fold k's
    train rows); [] for a teacher whose members held out no fold (or one model)."""
    members = {member: read_info(member) for member in ensemble_members(teacher_dir)}
    held = {member: info.held_out for member, info in members.items()}
    if all(h is None for h in held.values()):
        return []
    folds = {h.folds for h in held.values() if h is not None}
    count = max(folds)
    by_fold = {h.fold: member for member, h in held.items() if h is not None}
    data = {(info.data.data, info.data.valid_size) for info in members.values()}
    if None in held.values() or len(folds) > 1 or len(held) != count or len(by_fold) != count:
        found = ", ".join(
            "all train rows" if h is None else f"fold {h.fold} of {h.folds}" for h in held.values()
        )
        raise UserError(
            f"--distill {teacher_dir}: its members held out {found}; out-of-fold answers need "
            "one member for each fold of one --train-folds K (a fit --train-folds run)"
        )
    if len(data) > 1:
        raise UserError(f"--distill {teacher_dir}: its members were made from different data")
    return [by_fold[k] for k in range(count)]


def _finished(member_dir: Path, info: RunInfo) -> bool:
    """A finished member trained with `info`'s settings (as read_info reads it back, in
    today's format), which is kept, not trained again."""
    if not (member_dir / "metrics.json").exists():
        return False
    try:
        return read_info(member_dir) == info
    except UserError:  # a missing or damaged config.json: the member is trained again
        return False


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.fit")())
