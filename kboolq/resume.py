"""A killed training goes on from its last finished epoch: the state saved after every epoch.

After each epoch, RUN_DIR/resume/ gets the model's and optimizer's variables (the weights, the
moment estimates, the weights' moving average, the learning rate) and state.json: the dropout
seeds' and the global random states, the epochs done and the time they took, what the
callbacks that judge epochs hold (the best checkpoint, early stopping, the learning-rate
plateau, the history, whether the averaged weights are swapped in), and a key of the settings
and rows trained on.

Training run again on the same RUN_DIR with the same key (train_model) takes that state up and
ends exactly as the uninterrupted run would (tests/test_resume.py), after any kill, SIGKILL too:
the weights go to a new file per epoch, and state.json, written atomically after it, names the
one to read. A state with another key is never used. finish_run removes it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import torch

from kboolq.config import Config
from kboolq.data.layout import Prepared
from kboolq.files import write_json
from kboolq.runs.rundir import RESUME_DIR

STATE_FILE = "state.json"
FORMAT = 1
# What each callback that judges epochs holds, by its class's name. SwapEMAWeights keeps its
# one flag under a private name (keras 3.15; tests/test_resume.py resumes with it and fails if
# a Keras release renames it).
HELD = {
    "BestCheckpoint": ("best", "best_epoch"),
    "HistoryWriter": ("rows",),
    "EarlyStopping": ("wait", "best", "stopped_epoch", "best_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "SwapEMAWeights": ("_ema_weights_in_model",),
}


def training_key(config: Config, prepared: Prepared) -> str:
    """sha256 over the hyperparameters and every row trained or validated on (their word ids,
    lengths and labels) and the vectors' cache key: a state is taken up only by the same
    training."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(json.dumps([prepared.fingerprint, list(prepared.splits)]).encode())
    for split in prepared.splits.values():
        for array in (split.ids, split.q_len, split.p_len, split.labels):
            digest.update(np.ascontiguousarray(array).tobytes())
    if prepared.fingerprint is None:  # rows encoded on the fly: the table itself
        digest.update(np.ascontiguousarray(prepared.lookup.vectors).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class State:
    epochs: int  # epochs finished
    stopped: bool  # training ended (early stopping or the last epoch); only finishing is left
    weights: str | None  # the variables' file in RUN_DIR/resume (None once stopped)
    seeds: list  # the dropout seeds' state (Keras saves weights only)
    shuffle: dict | None  # the global random states (global_random)
    held: dict[str, dict]  # HELD's values by callback
    seconds: float = 0.0  # training time up to the saved epoch, over every process so far


def _plain(value):
    """A callback's value as JSON holds it (numpy scalars to float; inf stays inf)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def read_state(run_dir: Path, key: str) -> State | None:
    """RUN_DIR's saved state for the training `key`, or None: none saved, another training's, or
    unreadable (then training starts over, as it would without one)."""
    path = Path(run_dir) / RESUME_DIR / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT or raw.get("key") != key:
            return None
        state = State(
            int(raw["epochs"]), bool(raw["stopped"]), raw["weights"], raw["seeds"],
            raw["shuffle"], raw["held"], float(raw.get("seconds", 0.0)),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if state.weights is not None and not (path.parent / state.weights).is_file():
        return None
    return state


def earlier_seconds(state: State | None) -> float:
    """The training time that earlier processes spent on the epochs `state` saved (0 without
    one): a resumed run's card counts it with its own."""
    return state.seconds if state is not None else 0.0


def forget(run_dir: Path) -> None:
    """Remove RUN_DIR's saved state (the run is finished, or starts over)."""
    shutil.rmtree(Path(run_dir) / RESUME_DIR, ignore_errors=True)


def global_random() -> dict:
    """The global random states training draws from: Python's (Keras shuffles the batches'
    order with it) and, on the torch backend, torch's (Keras's dropout draws from it when its
    seed is not fixed)."""
    states: dict = {"python": random.getstate()}
    if keras.backend.backend() == "torch":
        states["torch"] = torch.get_rng_state().tolist()
    return states


def set_global_random(states: dict) -> None:
    version, inner, gauss = states["python"]
    random.setstate((version, tuple(inner), gauss))
    if "torch" in states and keras.backend.backend() == "torch":
        torch.set_rng_state(torch.tensor(states["torch"], dtype=torch.uint8))


class Resume(keras.callbacks.Callback):
    """Saves the state after every epoch and, given one (`state`), puts it back when training
    begins. Place it after every callback in HELD: on_train_begin then runs after their resets,
    and on_epoch_end after their updates."""

    def __init__(self, run_dir: Path, key: str, state: State | None = None) -> None:
        super().__init__()
        self.folder, self.key, self.state = Path(run_dir) / RESUME_DIR, key, state
        self.others: list[keras.callbacks.Callback] = []
        self.interrupted = lambda: False  # set by train_model: Ctrl-C or SIGTERM came

    def _held(self) -> dict[str, dict]:
        return {
            type(callback).__name__: {
                name: _plain(getattr(callback, name)) for name in HELD[type(callback).__name__]
            }
            for callback in self.others
            if type(callback).__name__ in HELD
        }

    def _seeds(self) -> list:
        """The dropout seeds' state: the model's variables that are not weights (Keras saves
        weights only), in the model's own order."""
        weights = {id(variable) for variable in self.model.weights}
        return [variable for variable in self.model.variables if id(variable) not in weights]

    def on_train_begin(self, logs=None) -> None:
        self.started = time.perf_counter()
        if self.state is None:
            return
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.folder / self.state.weights)
        seeds = self._seeds()
        if len(seeds) != len(self.state.seeds):
            raise ValueError(f"{self.folder}: {len(self.state.seeds)} seed states for {len(seeds)}")
        for variable, value in zip(seeds, self.state.seeds, strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        set_global_random(self.state.shuffle)
        for callback in self.others:
            for name, value in self.state.held.get(type(callback).__name__, {}).items():
                setattr(callback, name, value)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.interrupted():  # cut short by Ctrl-C or SIGTERM: the last whole epoch stands
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epoch + 1}.weights.h5"
        self.model.save_weights(self.folder / weights, overwrite=True)
        seeds = [np.asarray(variable).tolist() for variable in self._seeds()]
        # early stopping decided here, or the last epoch: a kill before the end finishes only
        ending = bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", 0)
        seconds = earlier_seconds(self.state) + time.perf_counter() - self.started
        self._write(epoch + 1, ending, weights, seeds, global_random(), seconds)

    def on_train_end(self, logs=None) -> None:
        if self.interrupted() or not self.folder.is_dir():
            return
        state = read_state(self.folder.parent, self.key)
        epochs, seconds = (state.epochs, state.seconds) if state else (0, 0.0)
        self._write(epochs, True, None, [], None, seconds)

    def _write(self, epochs, stopped, weights, seeds, shuffle, seconds) -> None:
        write_json(
            self.folder / STATE_FILE,
            {"format": FORMAT, "key": self.key, "epochs": epochs, "stopped": stopped,
             "weights": weights, "seeds": seeds, "shuffle": shuffle, "held": self._held(),
             "seconds": seconds},
        )  # fmt: skip
        for path in self.folder.glob("epoch-*.weights.h5"):
            if path.name != weights:
                path.unlink()
