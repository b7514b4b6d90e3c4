"""fit --refit: a finished run (or each member of an ensemble) trained again on train + valid
for the epochs its early stopping chose, with the learning rate it had in each."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from kboolq.errors import UserError
from kboolq.files import write_json
from kboolq.inputs import check_same_rows, check_same_vectors, load_inputs
from kboolq.runs.finish import finish_run
from kboolq.runs.outputs import Claim
from kboolq.runs.rundir import (
    MEMBERS_DIR,
    REFIT_FILE,
    RunInfo,
    ensemble_members,
    read_info,
    reads_own_inputs,
    save_ensemble,
    sources_of,
    write_info,
)
from kboolq.training import refit_model, refit_schedule, with_valid_in_train


@dataclasses.dataclass(frozen=True)
class Refit:
    """What a refit repeats: the source run, its members (none for one model) and, for each
    model, its settings and the learning rate of each epoch it keeps."""

    source: Path
    info: RunInfo
    members: list[Path]
    schedules: list[tuple[Path, RunInfo, list[float]]]


def plan_refit(source: Path, info: RunInfo) -> Refit:
    """Everything read from the source run before the output is touched."""
    if reads_own_inputs(source):
        raise UserError(
            f"--refit {source}: its members read different vectors or layouts; refit each "
            "member (fit --refit MEMBER), then join the refits with kboolq.ensemble"
        )
    members = ensemble_members(source)
    infos = {member: read_info(member) for member in members or [source]}
    schedules = [(m, i, refit_schedule(m, i.config)) for m, i in infos.items()]
    return Refit(Path(source), info, members, schedules)


def refit_into(
    plan: Refit, out: Claim, cache: Path, verbose: int, made_by: str
) -> tuple[dict[str, dict], float]:
    """Train `plan` into the claimed output (staged: the old run stays whole until the new one
    is complete); returns the reports (the test split only: valid is trained on) and seconds."""
    source, info = plan.source, plan.info
    with sources_of(source):
        inputs = load_inputs(info.data, cache, info.layout.word_chars)
    check_same_vectors("--refit", source, info, inputs.glove)
    check_same_rows("--refit", source, info, inputs.boolq)
    prepared = with_valid_in_train(inputs.prepared)
    print(f"refitting {source} on {len(prepared.splits['train'])} rows (train + valid)",
          flush=True)  # fmt: skip
    started = time.perf_counter()
    with out.staged() as work:
        write_info(work, info)
        models, member_dirs = [], []
        for index, (member, member_info, rates) in enumerate(plan.schedules):
            where = work if not plan.members else work / MEMBERS_DIR / f"{index}_{member.name}"
            where.mkdir(parents=True, exist_ok=True)
            print(f"{member}: {len(rates)} epochs", flush=True)
            model = refit_model(member_info.config, prepared, where, rates, verbose=verbose)
            write_json(where / REFIT_FILE, {"from": str(member.resolve()), "epochs": len(rates),
                                            "learning_rates": rates})  # fmt: skip
            if plan.members:  # every labelled row now: a fold member's fold is trained on too
                own = dataclasses.replace(member_info, held_out=None)
                write_info(where, own)
                finish_run(where, where.name, own, model, prepared,
                           f"{made_by}  # member {index} of {out.path.name}")  # fmt: skip
            models.append(model)
            member_dirs.append(out.path / where.relative_to(work))
        if plan.members:
            infos = [member_info for _, member_info, _ in plan.schedules]
            model = save_ensemble(work, models, member_dirs, out.path, infos)
        seconds = time.perf_counter() - started
        reports = finish_run(work, out.path.name, info, model, prepared, made_by, seconds)
    return reports, seconds
