"""The one place that knows older formats: a run's config.json or a grid's grid.json written by
an earlier kboolq is read as today's format (FORMAT), with each setting it lacks filled with the
value that it was made with, which is not always today's default; and a model.keras saved with
a fixed sequence length T is used as one that takes any T (any_steps).

Nothing else in kboolq reads an older format: read_info and the grid record take only what
migrate_run and migrate_grid_record return. Adding a setting means adding its value-before here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from kboolq.errors import UserError

TIME_INPUTS = ("vectors", "stems", "words")  # the inputs with a (batch, T, ...) shape

FORMAT = 5

# Format 1 (kboolq 0.1) wrote a setting only once it existed: a format-1 file without one was
# made with these values.
FORMAT_1_HYPERPARAMETERS = {
    "min_epochs": 0,
    "lr_plateau": 0,
    "clipnorm": 0.0,
    "ema": 0.0,
    "exact_match": "off",
}
# Formats 1-4 dealt training rows into batches at random (format 5 records --batching).
FORMAT_4_HYPERPARAMETERS = {"batching": "random"}
# Format 2 (kboolq 0.2) had every setting above, but no character CNN.
FORMAT_2_HYPERPARAMETERS = {"chars": 0}
FORMAT_2_LAYOUT = {"word_chars": 0}
FORMAT_1_DATA = {
    "passage_percentile": 99.0,  # the notebook's cut
    "question_percentile": 100.0,  # questions were never cut
    "accents": "drop",  # the notebook's ASCII filter
}


ARCH_RENAMES = {"seed": "notebook"}  # --arch names renamed since: older runs and grids carry them


def current_arch(name: Any) -> Any:
    """Today's name of an --arch (an older name given on the command line or saved in a run)."""
    return ARCH_RENAMES.get(name, name) if isinstance(name, str) else name


def _renamed(section: Any) -> Any:
    """A hyperparameters section with its arch under today's name."""
    if isinstance(section, dict) and "arch" in section:
        return {**section, "arch": current_arch(section["arch"])}
    return section


def migrate_run(raw: Any, path: Path) -> dict[str, Any]:
    """A run's config.json as read (any format) -> a format-FORMAT dict; a UserError naming
    `path` for a format this kboolq does not know (a newer kboolq's, or not a run at all)."""
    found = raw.get("format") if isinstance(raw, dict) else None
    if found == FORMAT:
        return {**raw, "hyperparameters": _renamed(raw.get("hyperparameters"))}
    if found not in (1, 2, 3, 4):
        raise UserError(f"{path}: run format {found!r}, this kboolq reads formats 1 to {FORMAT}")
    # formats 1-3 had no fit --train-folds: every run trained on all its train rows
    migrated = {**raw, "format": FORMAT}
    if found <= 3:
        migrated = {"held_out": None, **migrated}
    fills = [("hyperparameters", FORMAT_4_HYPERPARAMETERS)]
    if found <= 2:
        fills += [("hyperparameters", FORMAT_2_HYPERPARAMETERS), ("layout", FORMAT_2_LAYOUT)]
    if found == 1:
        migrated = {"distillation": None, **migrated}  # format 1 had no fit --distill
        fills += [("hyperparameters", FORMAT_1_HYPERPARAMETERS), ("data", FORMAT_1_DATA)]
    for section, before in fills:
        if isinstance(migrated.get(section), dict):  # else read_info names the missing section
            migrated[section] = {**before, **migrated[section]}
    return {**migrated, "hyperparameters": _renamed(migrated.get("hyperparameters"))}


def migrate_grid_record(raw: Any) -> dict[str, Any]:
    """A grid's grid.json as read -> today's record. Records without a "format" key were written
    with format-1 runs: their fixed settings and data settings are filled the same way; format-2
    records lack only the settings added since."""
    if not isinstance(raw, dict):
        return raw
    raw = {**raw, "fixed": _renamed(raw.get("fixed"))}
    axes = raw.get("axes")
    if isinstance(axes, dict) and isinstance(axes.get("arch"), list):
        raw["axes"] = {**axes, "arch": [current_arch(name) for name in axes["arch"]]}
    if raw.get("format") == FORMAT:
        return raw
    fills = [("fixed", FORMAT_4_HYPERPARAMETERS), ("fixed", FORMAT_2_HYPERPARAMETERS)]
    if raw.get("format") is None:
        fills += [("fixed", FORMAT_1_HYPERPARAMETERS), ("data", FORMAT_1_DATA)]
    migrated = {**raw, "format": FORMAT}
    for section, before in fills:
        if isinstance(migrated.get(section), dict):
            migrated[section] = {**before, **migrated[section]}
    return migrated


def any_steps(model: keras.Model) -> keras.Model:
    """A model saved with a fixed T (kboolq before batches were cut to their own rows) as one
    that takes any T: the same layers, called on inputs of shape (batch, None, ...), with the
    same weights, so that its batches are cut as a new run's are (its layers find the parts
    from the row lengths; tests/data/runs answer as they did). A model that takes any T
    already is returned as it is."""
    if all(t.shape[1] is None for t in model.inputs if t.name in TIME_INPUTS):
        return model
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(
            shape=(None, *t.shape[2:]) if t.name in TIME_INPUTS else t.shape[1:],
            dtype=t.dtype,
            name=t.name,
        ),
        model.input,  # the structure the model was built with (a dict, for kboolq's)
    )
    migrated = keras.models.clone_model(model, input_tensors=inputs)
    migrated.set_weights(model.get_weights())
    return migrated
