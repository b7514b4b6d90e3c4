"""Every private name of KerasTuner that the grid uses, in one place, checked at import.

KerasTuner 1.4 has no public way to do these: the compiled Oracle service (for the chief's gRPC
server and the worker's client), a trial's directory and the state files, a grid axis's values,
the GridSearch order, the retry queue and the display. pyproject.toml pins keras-tuner below
1.5; this module refuses any other minor version at import, so that a KerasTuner that moved
these names fails here, with one line, instead of somewhere inside a grid.

Overridden, not called, and so not listed below: ResumableGridOracle._save_trial (KerasTuner
calls it to write trial.json; tuning/oracle.py writes it atomically instead).
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from kboolq.errors import UserError

WRITTEN_FOR = "1.4"  # the minor version whose private names these are

if ".".join(kt.__version__.split(".")[:2]) != WRITTEN_FOR:
    raise UserError(
        f"kboolq's grid uses private parts of keras-tuner {WRITTEN_FOR}.x, found "
        f"{kt.__version__}: pip install 'keras-tuner>=1.4.7,<1.5'"
    )

from keras_tuner.src import protos  # noqa: E402  (the compiled Oracle service)

__all__ = ["protos"]


def trial_dir(oracle: kt.Oracle, trial_id: str) -> str:
    return oracle._get_trial_dir(trial_id)


def oracle_state_file(oracle: kt.Oracle) -> str:
    return oracle._get_oracle_fname()


def tuner_state_file(tuner: kt.Tuner) -> str:
    return tuner._get_tuner_fname()


def set_choices(hp: kt.HyperParameters, values: list[Any]) -> None:
    """A Choice axis's values (and its default, the first): KerasTuner has no public setter."""
    hp._values = list(values)
    hp._default = hp._values[0]


def next_combination(oracle: kt.oracles.GridSearchOracle, current: dict) -> dict | None:
    return oracle._get_next_combination(current)


def retry_queue(oracle: kt.Oracle) -> list[str]:
    return oracle._retry_queue


def set_retry_queue(oracle: kt.Oracle, trial_ids: list[str]) -> None:
    oracle._retry_queue = trial_ids


def display(oracle: kt.Oracle) -> Any:
    return oracle._display
