"""One fit: a model, or an ensemble of members (--seeds, --train-folds), trained into a run
directory, finished (kboolq.runs.finish) and logged to W&B when asked."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from kboolq import tracking
from kboolq.config import Config
from kboolq.evaluation import predict_split, spread
from kboolq.files import write_json
from kboolq.inputs import Inputs, run_info
from kboolq.members import train_members
from kboolq.resume import earlier_seconds, read_state, training_key
from kboolq.runs.api import Encodings, OpenMix, open_run
from kboolq.runs.card import fit_command
from kboolq.runs.finish import finish_run
from kboolq.runs.rundir import MODEL_FILE, SEEDS_FILE, HeldOut, write_info
from kboolq.training import BestCheckpoint, train_model


@dataclass(frozen=True)
class Plan:
    """How a fit runs, besides its hyperparameters and data: Keras's output, W&B, where the
    cache is, and the ensemble it makes (`seeds` members mixed with `alternate`'s settings, or
    one member per fold of `folds`)."""

    verbose: int
    wandb: bool
    cache: Path
    seeds: int = 1
    alternate: str = "none"
    folds: int = 1


@dataclass(frozen=True)
class Trained:
    reports: dict[str, dict]
    seconds: float
    checkpoint: BestCheckpoint | None  # one model's
    members: dict | None  # an ensemble's: the members' spread


def train_run(
    work: Path,
    plan: Plan,
    config: Config,
    members: list[Config],
    inputs: Inputs,
    run_dir: Path,
    member_inputs: list[Inputs] | None = None,
) -> Trained:
    """Train one model or an ensemble into `work` (which becomes `run_dir`), with its metrics,
    card and W&B logging. `inputs` are the run's own (config.json's); `member_inputs` each
    member's when their vectors differ (fit --alternate "--glove SPEC"), else `inputs`."""
    member_inputs = member_inputs or [inputs] * len(members)
    prepared = inputs.prepared
    print(
        f"data ready in {inputs.seconds:.1f} s{' (cached)' if inputs.from_cache else ''}; "
        f"T = {prepared.layout.steps}, vectors {inputs.glove.source} ({inputs.glove.dim}d)"
    )
    info = run_info(config, inputs)  # an ensemble's: the settings given; its members' differ
    write_info(work, info)
    settings = {k: v for k, v in info.to_dict().items() if k != "hyperparameters"}
    tracker, extra = tracking.start_tracking(
        plan.wandb, {**config.to_dict(), **settings}, plan.cache / "wandb", name=run_dir.name
    )  # the hyperparameters once, at the top, where W&B's tables and filters find them
    started = time.perf_counter()
    earlier: float | None = 0.0  # the training time earlier processes spent: the card counts it
    if len(members) == 1:
        earlier = earlier_seconds(read_state(work, training_key(config, prepared)))
    checkpoint, members_spread = None, None
    held_out = [HeldOut(k, plan.folds) if plan.folds > 1 else None for k in range(len(members))]
    if len(members) == 1:
        model, checkpoint = train_model(config, prepared, work, extra, verbose=plan.verbose)
    else:
        model, member_reports, earlier = train_members(
            list(zip(members, held_out, member_inputs, strict=True)),
            work,
            extra,
            plan.verbose,
            run_dir,
        )
    encoded = prepared
    if model is None:  # members that read different vectors: each scores its own encoding
        model = open_run(work, plan.cache)
        encoded = Encodings(tuple(member.prepared for member in member_inputs))
    seconds = time.perf_counter() - started + (earlier or 0.0)
    flags = ["--seeds", str(plan.seeds), "--alternate", plan.alternate] if plan.seeds > 1 else []
    flags += ["--train-folds", str(plan.folds)] if plan.folds > 1 else []
    made_by = fit_command(info, shlex.join([*flags, "--out", str(run_dir)]))
    card_time = None if earlier is None else seconds  # None: a kept member's time is unknown
    reports = finish_run(work, run_dir.name, info, model, encoded, made_by, card_time)
    if len(members) > 1:
        members_spread = spread(member_reports)
        write_json(
            work / SEEDS_FILE,
            {
                "seeds": [member.seed for member in members],
                "archs": [member.arch for member in members],
                "vectors": [member.glove.source for member in member_inputs],
                "alternate": plan.alternate if plan.seeds > 1 else "none",
                "train_folds": plan.folds,
                "members": members_spread,
                "ensemble": reports,
            },
        )
    if tracker is not None:
        valid = prepared.splits["valid"]
        saved: Path | None = work / MODEL_FILE  # the model artifact; a mix has no one file
        if isinstance(model, OpenMix):
            scores, saved = model.scores(encoded, "valid", config.batch_size), None
        else:
            scores = predict_split(
                model, valid, prepared.lookup, prepared.layout, config.batch_size
            )
        tracking.log_final(tracker, reports, valid.labels, scores, saved)
        tracker.finish()
    return Trained(reports, seconds, checkpoint, members_spread)
