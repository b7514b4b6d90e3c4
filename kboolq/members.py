"""The members of a fit ensemble (--seeds, --train-folds): what each trains with, and training
them one after another into RUN_DIR/members, keeping the ones a killed fit finished."""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from pathlib import Path

import keras

from kboolq.config import Config, config_with_flags
from kboolq.data.layout import Prepared, train_folds
from kboolq.errors import UserError
from kboolq.inputs import Inputs, run_info
from kboolq.resume import earlier_seconds, read_state, training_key
from kboolq.runs.card import card_seconds, fit_command
from kboolq.runs.finish import finish_run
from kboolq.runs.rundir import (
    MEMBERS_DIR,
    METRICS_FILE,
    HeldOut,
    RunInfo,
    clear_run,
    load_model,
    read_info,
    save_ensemble,
    write_info,
)
from kboolq.training import train_model


def alternate_config(config: Config, flags: str) -> Config | None:
    """The settings of the odd-numbered members (1st, 3rd, ...), or None for 'none' (a --glove
    among the flags is split_vectors's)."""
    if flags.strip() == "none":
        return None
    return config_with_flags(config, split_vectors(flags)[0], "--alternate")


def split_vectors(flags: str) -> tuple[str, str | None]:
    """--alternate's flags without its --glove SPEC, and that SPEC (None: no --glove): the odd
    members' vectors, so that an ensemble mixes vectors as it mixes architectures."""
    try:
        words = shlex.split(flags)
    except ValueError as exc:
        raise UserError(f"--alternate: {exc}") from None
    kept, glove = [], None
    while words:
        word = words.pop(0)
        if word == "--glove" or word.startswith("--glove="):
            spec = word.partition("=")[2] if "=" in word else (words.pop(0) if words else "")
            if not spec or glove is not None:
                raise UserError("--alternate: --glove takes one SPEC, given once")
            glove = spec
        else:
            kept.append(word)
    return shlex.join(kept), glove


def member_vectors(glove: str, alternate: str | None, n: int) -> list[str]:
    """Each of n members' --glove: the 1st, 3rd, ... `alternate`'s when there is more than one
    member (as member_configs deals the settings), the others `glove`."""
    if n == 1 or alternate is None:
        return [glove] * n
    return [alternate if k % 2 == 0 else glove for k in range(n)]


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


def fold_configs(config: Config, folds: int) -> list[Config]:
    """--train-folds K: K models with seeds config.seed, config.seed + 1, ..."""
    return [dataclasses.replace(config, seed=config.seed + k) for k in range(folds)]


def train_members(
    plans: list[tuple[Config, HeldOut | None, Inputs]],
    work: Path,
    extra: list[keras.callbacks.Callback],
    verbose: int,
    run_dir: Path,
) -> tuple[keras.Model | None, list[dict], float | None]:
    """Train one member run per plan (its settings, held-out fold and inputs: vectors may
    differ) under work/members: members/seed_S (--seeds), or members/fold_k trained without
    fold k's train rows (--train-folds). A finished member whose config.json matches is kept,
    and an unfinished one goes on from its last epoch (kboolq.resume), so a killed fit resumes.
    Saves their ensemble into work (save_ensemble: one averaged model,
    or None when their inputs differ); returns it, each member's report (its train split:
    the rows it trained on) and the training time earlier processes spent on the members (kept
    ones and the epochs a resumed one had; None when a kept member's card does not say)."""
    models, reports, names, infos = [], [], [], []
    earlier: list[float | None] = []  # per member: the time earlier processes trained it
    print(
        f"training {len(plans)} members one after another (about {len(plans)} times the "
        "time of one fit; a killed run keeps the finished ones)",
        flush=True,
    )
    for config, held_out, inputs in plans:
        member = dataclasses.replace(run_info(config, inputs), held_out=held_out)
        name = f"seed_{config.seed}" if held_out is None else f"fold_{held_out.fold}"
        names.append(name)
        infos.append(member)
        member_dir, own = work / MEMBERS_DIR / name, without_fold(inputs.prepared, held_out)
        if finished(member_dir, member):
            print(f"member {name.replace('_', ' ')}: kept from an earlier run ({member_dir})")
            models.append(load_model(member_dir))
            reports.append(json.loads((member_dir / METRICS_FILE).read_text()))
            earlier.append(card_seconds(member_dir))
            continue
        member_dir.mkdir(parents=True, exist_ok=True)
        state = read_state(member_dir, training_key(config, own))
        if state is None:
            clear_run(member_dir)  # else train_model goes on where the member stopped
        earlier.append(earlier_seconds(state))  # a resumed member's card counts them too
        started = time.perf_counter() - earlier[-1]
        write_info(member_dir, member)
        where = f"{len(models) + 1} of {len(plans)}, {config.arch}"
        if len({i.glove.source for _, _, i in plans}) > 1:  # members over different vectors
            where += f", {inputs.glove.source}"
        if held_out is not None:
            where += f", seed {config.seed}; {len(own.splits['train'])} train rows"
        print(f"member {name.replace('_', ' ')} ({where})", flush=True)
        model, _ = train_model(config, own, member_dir, extra, verbose=verbose)
        how = "--seeds" if held_out is None else "--train-folds"
        made_by = f"{fit_command(member)}  # member of {run_dir.name} (fit {how})"
        seconds = time.perf_counter() - started
        reports.append(
            finish_run(member_dir, member_dir.name, member, model, own, made_by, seconds)
        )
        models.append(model)
    members = [run_dir / MEMBERS_DIR / name for name in names]
    before = None if None in earlier else sum(earlier)
    return save_ensemble(work, models, members, run_dir, infos), reports, before


def without_fold(prepared: Prepared, held_out: HeldOut | None) -> Prepared:
    """`prepared` with the train rows of the held-out fold left out (all of them for None)."""
    if held_out is None:
        return prepared
    train = prepared.splits["train"]
    keep = train_folds(len(train), held_out.folds) != held_out.fold
    return dataclasses.replace(prepared, splits={**prepared.splits, "train": train.take(keep)})


def finished(member_dir: Path, info: RunInfo) -> bool:
    """A finished member trained with `info`'s settings (as read_info reads it back, in
    today's format), which is kept, not trained again."""
    if not (member_dir / METRICS_FILE).exists():
        return False
    try:
        return read_info(member_dir) == info
    except UserError:  # a missing or damaged config.json: the member is trained again
        return False
