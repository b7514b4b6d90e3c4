"""python -m kboolq.fit: train a classifier on the notebook's split and write a run directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import keras

from kboolq import tracking
from kboolq.cli import (
    add_source_arguments,
    add_threads_argument,
    add_verbose_argument,
    cache_dir,
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
    add_config_arguments,
    config_from_args,
    config_with_flags,
)
from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.evaluation import (
    evaluate_splits,
    format_spread,
    format_table,
    predict_split,
    spread,
)
from kboolq.files import remove_stale_temporaries, write_json
from kboolq.models.averaging import average
from kboolq.rundir import (
    MODEL_FILE,
    RunInfo,
    claim_output,
    clear_run,
    is_run,
    load_model,
    lock_output,
    read_info,
    recover_run,
    replace_run,
    save_model,
    staging_dir,
    write_info,
)
from kboolq.threads import set_threads
from kboolq.training import train_model

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
        help="train N models with seeds --seed, --seed+1, ... (the 1st, 3rd, ... with "
        "--alternate's settings) and save RUN_DIR as their ensemble (one model averaging their "
        "P(yes)); each member is a run of its own in "
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
        "on valid among the ensembles measured (README Results) "
        "(default: '%(default)s')",
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
    config = config_from_args(args)
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    members = member_configs(config, alternate_config(config, args.alternate), args.seeds)
    settings = data_settings(args)
    with lock_output(args.out):
        recover_run(args.out)
        return fit(args, config, members, settings, args.out)


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
    whole until its successor is complete (trained in a staging directory, then swapped in).
    A run that did not finish is this command's own leftover and is started over in place."""
    unfinished = is_run(run_dir) and not (run_dir / "metrics.json").exists()
    replacing = claim_output(run_dir, "run", is_run, args.overwrite or unfinished)
    inputs = load_inputs(settings, cache_dir(args))
    warn_about_data(inputs, config.batch_size)
    staged = replacing and not unfinished
    work = staging_dir(run_dir) if staged else run_dir
    if unfinished:
        print(f"{run_dir} holds a run that did not finish; starting it over")
        clear_run(run_dir)
    work.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work)
    prepared = inputs.prepared
    print(
        f"data ready in {inputs.seconds:.1f} s{' (cached)' if inputs.from_cache else ''}; "
        f"T = {prepared.layout.steps}, vectors {inputs.glove.source} ({inputs.glove.dim}d)"
    )
    info = run_info(config, inputs)  # an ensemble's: the settings given; its members' differ
    write_info(work, info)
    tracker, extra = tracking.start_tracking(
        args.wandb, {**config.to_dict(), **info.to_dict()}, name=run_dir.name
    )
    started = time.perf_counter()
    try:
        if args.seeds == 1:
            model, checkpoint = train_model(config, prepared, work, extra, verbose=verbosity(args))
        else:
            model, member_reports = train_members(info, members, prepared, work, extra, args)
    except KeyboardInterrupt:
        if staged:
            shutil.rmtree(work, ignore_errors=True)
            print(f"\ninterrupted: {run_dir} still holds the previous run", file=sys.stderr)
        elif args.seeds > 1:
            print(f"\ninterrupted: finished members kept in {run_dir / 'members'}", file=sys.stderr)
        else:
            saved = run_dir / MODEL_FILE
            where = f"kept in {saved}" if saved.exists() else "none saved yet"
            print(f"\ninterrupted: best model so far {where}", file=sys.stderr)
        raise
    seconds = time.perf_counter() - started
    reports = evaluate_splits(
        model, prepared.splits, prepared.table, config.batch_size, prepared.stems
    )
    write_json(work / "metrics.json", reports)
    if args.seeds > 1:
        members_spread = spread(member_reports)
        write_json(
            work / "seeds.json",
            {
                "seeds": [member.seed for member in members],
                "archs": [member.arch for member in members],
                "alternate": args.alternate,
                "members": members_spread,
                "ensemble": reports,
            },
        )
    if staged:
        replace_run(work, run_dir)
    print(format_table(reports))
    if args.seeds > 1:
        print(format_spread(members_spread, reports, args.seeds))
        archs = ", ".join(member.arch for member in members)
        print(
            f"ensemble of {args.seeds} seeds ({archs}); trained {seconds:.0f} s; "
            f"written to {run_dir}"
        )
    else:
        print(
            f"best epoch {checkpoint.best_epoch} (valid balanced accuracy {checkpoint.best:.4f}); "
            f"trained {seconds:.0f} s; run written to {run_dir}"
        )
    if tracker is not None:
        valid = prepared.splits["valid"]
        scores = predict_split(model, valid, prepared.table, config.batch_size, prepared.stems)
        tracking.log_final(tracker, reports, valid.labels, scores, run_dir / MODEL_FILE)
        tracker.finish()
    return 0


def train_members(
    info: RunInfo,
    configs: list[Config],
    prepared: Prepared,
    work: Path,
    extra: list,
    args: argparse.Namespace,
) -> tuple[keras.Model, list[dict]]:
    """Train one member run per seed under work/members (a finished member whose config.json
    matches is kept, so a killed --seeds fit resumes) and save their average as work's model.
    Returns the average and each member's report."""
    models, reports = [], []
    for config in configs:
        member = dataclasses.replace(info, config=config)
        member_dir = work / "members" / f"seed_{config.seed}"
        if _finished(member_dir, member):
            print(f"member seed {config.seed}: kept from an earlier run ({member_dir})")
            models.append(load_model(member_dir))
            reports.append(json.loads((member_dir / "metrics.json").read_text()))
            continue
        member_dir.mkdir(parents=True, exist_ok=True)
        clear_run(member_dir)
        write_info(member_dir, member)
        where = f"{len(models) + 1} of {len(configs)}, {config.arch}"
        print(f"member seed {config.seed} ({where})", flush=True)
        model, _ = train_model(config, prepared, member_dir, extra, verbose=verbosity(args))
        report = evaluate_splits(
            model, prepared.splits, prepared.table, config.batch_size, prepared.stems
        )
        write_json(member_dir / "metrics.json", report)
        models.append(model)
        reports.append(report)
    # relative: an --overwrite fit trains in a staging directory that is renamed afterwards
    members = [f"members/seed_{config.seed}" for config in configs]
    write_json(work / "members.json", {"members": members})
    save_model(average(models), work)
    return load_model(work), reports


def _finished(member_dir: Path, info: RunInfo) -> bool:
    """A finished member trained with `info`'s settings. Compared as read back, not as JSON
    text: a member written by an older kboolq lacks keys that later versions add (read with
    the values it trained with), and it must be kept, not trained again."""
    if not (member_dir / "metrics.json").exists():
        return False
    try:
        return read_info(member_dir) == info
    except UserError:  # a missing or damaged config.json: the member is trained again
        return False


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.fit")())
