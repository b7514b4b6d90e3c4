"""fit --distill: each train row's label mixed with a teacher run's P(yes) for it (out of fold
for a --train-folds teacher), so that the student learns from the teacher's answers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kboolq.data.layout import train_folds
from kboolq.errors import UserError
from kboolq.inputs import Inputs, check_same_rows
from kboolq.runs.api import open_run
from kboolq.runs.rundir import Distillation, ensemble_members, read_info


def distilled(inputs: Inputs, teacher_dir: Path, weight: float, cache: Path) -> Inputs:
    """`inputs` with each train row's label mixed with the teacher's P(yes) for it. The
    teacher must have been made from the same data and --valid-size, so that it never trained
    on the student's valid or test rows; they keep the labels alone."""
    teacher = read_info(teacher_dir)
    data = teacher.data
    if (data.source, data.valid_size) != (inputs.boolq.source, inputs.settings.valid_size):
        raise UserError(
            f"--distill {teacher_dir}: made from {data.source} with --valid-size "
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
    data = {(info.data.source, info.data.valid_size) for info in members.values()}
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
