"""fit --refit: a finished run (or each member of an ensemble) trained again on train + valid
for the epochs its early stopping chose, with the learning rate it had in each."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.files import write_json
from kboolq.inputs import check_same_rows, check_same_vectors, load_inputs
from kboolq.runs.api import Encodings, open_run
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
    members = ensemble_members(source)
    nested = [member for member in members if reads_own_inputs(member)]
    if nested:
        raise UserError(
            f"--refit {source}: its member {nested[0]} is itself an ensemble over different "
            "vectors; refit that one, then join the refits with kboolq.ensemble"
        )
    infos = {member: read_info(member) for member in members or [source]}
    schedules = [(m, i, refit_schedule(m, i.config)) for m, i in infos.items()]
    return Refit(Path(source), info, members, schedules)


def _inputs(plan: Refit, cache: Path) -> list[Prepared]:
    """Each model's rows (train + valid as train) over its own vectors and layout, loaded once
    per kind of input and checked to be what the model was made from."""
    loaded: dict[tuple, Prepared] = {}
    found = []
    for member, info, _ in plan.schedules:
        key = (info.data, info.layout.word_chars, info.vectors.fingerprint)
        if key not in loaded:
            with sources_of(member):
                inputs = load_inputs(info.data, cache, info.layout.word_chars)
            check_same_vectors("--refit", member, info, inputs.glove)
            check_same_rows("--refit", member, info, inputs.boolq)
            loaded[key] = with_valid_in_train(inputs.prepared)
        found.append(loaded[key])
    return found


def refit_into(
    plan: Refit, out: Claim, cache: Path, verbose: int, made_by: str
) -> tuple[dict[str, dict], float]:
    """Train `plan` into the claimed output (staged: the old run stays whole until the new one
    is complete); returns the reports (the test split only: valid is trained on) and seconds.
    Each model trains on its own input: an ensemble's members may read different vectors."""
    source, info = plan.source, plan.info
    prepared = _inputs(plan, cache)
    rows = len(prepared[0].splits["train"])
    print(f"refitting {source} on {rows} rows (train + valid)", flush=True)
    started = time.perf_counter()
    with out.staged() as work:
        write_info(work, info)
        models, member_dirs, infos = [], [], []
        for index, (member, member_info, rates) in enumerate(plan.schedules):
            where = work if not plan.members else work / MEMBERS_DIR / f"{index}_{member.name}"
            where.mkdir(parents=True, exist_ok=True)
            print(f"{member}: {len(rates)} epochs", flush=True)
            own = prepared[index]
            model = refit_model(member_info.config, own, where, rates, verbose=verbose)
            write_json(where / REFIT_FILE, {"from": str(member.resolve()), "epochs": len(rates),
                                            "learning_rates": rates})  # fmt: skip
            member_info = dataclasses.replace(member_info, held_out=None)
            if plan.members:  # every labelled row now: a fold member's fold is trained on too
                write_info(where, member_info)
                finish_run(where, where.name, member_info, model, own,
                           f"{made_by}  # member {index} of {out.path.name}")  # fmt: skip
            models.append(model)
            member_dirs.append(out.path / where.relative_to(work))
            infos.append(member_info)
        encoded: Prepared | Encodings = prepared[0]
        if plan.members:
            model = save_ensemble(work, models, member_dirs, out.path, infos)
            if model is None:  # members over different vectors: each scores its own input
                model, encoded = open_run(work, cache), Encodings(tuple(prepared))
        seconds = time.perf_counter() - started
        reports = finish_run(work, out.path.name, info, model, encoded, made_by, seconds)
    return reports, seconds
