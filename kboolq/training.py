"""One training run: model, callbacks, best checkpoint and the final per-split report.

Shared by `kboolq.fit` and the grid's trials, so every trial trains exactly like a fit.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import dataclasses
import gc
import io
import math
import signal
import threading
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path

import keras
import numpy as np

from kboolq import signals
from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.data.layout import Prepared, Split
from kboolq.errors import Interrupted, UserError
from kboolq.evaluation import training_metrics
from kboolq.files import write_text
from kboolq.models.architectures import build_model
from kboolq.plots import read_history, save_learning_curves
from kboolq.resume import Resume, read_state, training_key
from kboolq.runs.rundir import CURVES_FILE, HISTORY_FILE, RESUME_DIR, load_model, save_model

MONITOR = "val_balanced_accuracy"


def never() -> bool:
    return False


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever the monitored value strictly improves; only the best is kept.

    Improvement is judged exactly as EarlyStopping judges it, so the saved model is the one
    early stopping would restore. An epoch that `interrupted` cut short (Ctrl-C, SIGTERM) does
    not count: a resumed training does it again whole.
    """

    def __init__(self, run_dir: Path, monitor: str = MONITOR) -> None:
        super().__init__()
        self.run_dir, self.monitor = Path(run_dir), monitor
        self.best, self.best_epoch = -math.inf, None
        self.interrupted = never

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.interrupted():
            return
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            save_model(self.model, self.run_dir)


class StopOnInterrupt(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) or SIGTERM ends training after the current batch, and then raises
    Interrupted (a KeyboardInterrupt) from train_model. Keras converts logs inside bare `except:`
    blocks, which swallowed a KeyboardInterrupt that arrived there and let training run on; a
    flag read between batches cannot be lost. A second signal interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        super().__init__()
        self.interrupted, self.signum, self.previous = False, None, {}

    def _handle(self, signum, frame) -> None:
        signals.record(signum)
        self.interrupted, self.signum = True, signum
        for number, handler in self.previous.items():  # the next signal is not deferred
            signal.signal(number, handler)

    def on_train_begin(self, logs=None) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers
        for number in self.SIGNALS:
            if signal.getsignal(number) is signal.SIG_IGN:
                continue  # started with it ignored (nohup, a background job): keep it so
            self.previous[number] = signal.signal(number, self._handle)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.interrupted:
            self.model.stop_training = True

    on_epoch_end = on_train_batch_end

    def on_train_end(self, logs=None) -> None:
        if not self.interrupted:
            for number, handler in self.previous.items():
                signal.signal(number, handler)


def release_memory() -> bool:
    """Collects garbage and hands freed heap memory back to the OS; False where libc cannot.

    Batches trimmed to their longest row have a new shape at every step, and glibc keeps the
    freed blocks: without this a whole-passage run's resident memory grew by hundreds of MB per
    epoch (one was killed by the OOM killer at 14.8 GB in epoch 13), while after a trim it is
    back at the level of the first epoch.
    """
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None) if libc_name else None
    if trim is None:
        return False
    trim(0)
    return True


class ReleaseMemory(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        release_memory()


class HistoryWriter(keras.callbacks.Callback):
    """history.csv, rewritten atomically after every epoch so a crash never truncates it; an
    epoch that `interrupted` cut short is left out, as in BestCheckpoint."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.rows = Path(path), []
        self.interrupted = never

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.interrupted():
            return
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[-1]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, buffer.getvalue())


NOT_PER_STEP = float("nan")  # what a step reports for a metric that is read once per epoch


def epoch_metrics(model: keras.Model) -> keras.Model:
    """Training and validation steps that update the metrics on the device but report no tensor
    per step, so that Keras reads no value back to the host inside a step (each read waits for
    all queued GPU work). Keras reads the metrics' whole-epoch results once, at the epoch's end
    (or the validation's), which is all that early stopping, the history and the curves use;
    per step it gets NaN placeholders under the same names."""
    names: list[str] = []

    def compute_metrics(x, y, y_pred, sample_weight=None):
        for metric in model.metrics:
            if metric.name != "loss":  # the loss tracker: Keras's step updated it already
                metric.update_state(y, y_pred, sample_weight=sample_weight)
        if not names:  # the keys Keras expects; read once, outside any hot loop
            names.extend(model.get_metrics_result())
        return dict.fromkeys(names, NOT_PER_STEP)

    model.compute_metrics = compute_metrics
    return model


class EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras's progress bar without per-step values (there are none: epoch_metrics); the
    epoch's metrics appear when it ends."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        super().on_train_batch_end(batch, None)


def compile_model(model: keras.Model, config: Config) -> keras.Model:
    """AdamW on binary cross-entropy, with the whole-epoch metrics that early stopping reads."""
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            clipnorm=config.clipnorm or None,
            use_ema=config.ema > 0,
            ema_momentum=config.ema or 0.99,
        ),
        loss="binary_crossentropy",
        metrics=training_metrics(),
    )
    return epoch_metrics(model)


def class_weights(labels: np.ndarray, mode: str) -> dict[int, float] | None:
    """Keras class_weight for `mode` ('none' or 'balanced': n / (2 n_class)) from train labels."""
    if mode == "none":
        return None
    counts = np.bincount(np.rint(labels).astype(np.int64), minlength=2)  # soft labels too
    if counts.min() == 0:
        raise UserError("--class-weight balanced needs both answers among the training rows")
    return {label: float(counts.sum() / (2 * count)) for label, count in enumerate(counts)}


def train_model(
    config: Config,
    prepared: Prepared,
    run_dir: Path,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 1,
) -> tuple[keras.Model, BestCheckpoint]:
    """Trains with early stopping on valid balanced accuracy; returns the best model. run_dir
    gets model.keras (the best), history.csv and learning_curves.png, and after every epoch the
    state that a training killed and run again with the same settings goes on from
    (kboolq.resume; finish_run removes it).

    The best model is read back from run_dir/model.keras, which also proves the saved file works.
    """
    key = training_key(config, prepared)
    state = read_state(run_dir, key)
    checkpoint = BestCheckpoint(run_dir)
    history = HistoryWriter(Path(run_dir) / HISTORY_FILE)
    if state is not None and state.stopped:  # killed after training, before it was finished
        for callback in (checkpoint, history):
            vars(callback).update(state.held[type(callback).__name__])
        print(f"{run_dir}: training had ended after epoch {state.epochs}; finishing it")
        save_learning_curves(history.rows, Path(run_dir) / CURVES_FILE, checkpoint.best_epoch)
        return load_model(run_dir), checkpoint
    keras.utils.set_random_seed(config.seed)
    model = compile_model(build_model(config, prepared.layout, prepared.lookup.dim), config)
    splits, lookup, layout, size = (
        prepared.splits, prepared.lookup, prepared.layout, config.batch_size
    )  # fmt: skip
    train = Batches.for_model(model, splits["train"], lookup, layout, size, shuffle=True,
                              seed=config.seed, batching=config.batching)  # fmt: skip
    valid = Batches.for_model(model, splits["valid"], lookup, layout, size)
    first = 0 if state is None else state.epochs
    if first:
        train.start_at(first)
        print(f"{run_dir}: going on after epoch {first} (the state saved in {RESUME_DIR}/)")
    # With --ema the averaged weights are swapped in before validation and at each epoch's end,
    # so the metrics, early stopping and the checkpoint (placed after the swap) all see them.
    averaging = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema > 0 else []
    plateau = (
        [
            keras.callbacks.ReduceLROnPlateau(
                monitor=MONITOR, mode="max", factor=0.5, patience=config.lr_plateau, verbose=0
            )
        ]
        if config.lr_plateau
        else []
    )
    callbacks = [
        *averaging,
        *plateau,  # before the history, which then records each epoch's learning rate
        checkpoint,
        history,
        keras.callbacks.EarlyStopping(
            monitor=MONITOR,
            mode="max",
            patience=config.patience,
            start_from_epoch=config.min_epochs,
        ),
        ReleaseMemory(),
        *extra_callbacks,
        interrupt := StopOnInterrupt(),
        resume := Resume(run_dir, key, state),  # after the callbacks whose state it keeps
        *([EpochProgbar()] if verbose else []),
    ]
    resume.others = callbacks
    for callback in (checkpoint, history, resume):  # an epoch cut short is not an epoch
        callback.interrupted = lambda: interrupt.interrupted
    signals.raise_if_received()  # one that came while the model was built, and was swallowed
    model.fit(
        train,
        validation_data=valid,
        initial_epoch=first,
        epochs=config.max_epochs,
        callbacks=callbacks,
        verbose=verbose,
        class_weight=class_weights(prepared.splits["train"].labels, config.class_weight),
    )
    if interrupt.interrupted:
        raise Interrupted(signum=interrupt.signum)
    save_learning_curves(history.rows, Path(run_dir) / CURVES_FILE, checkpoint.best_epoch)
    return load_model(run_dir), checkpoint


def refit_model(
    config: Config,
    prepared: Prepared,
    run_dir: Path,
    learning_rates: Sequence[float],
    verbose: int | str = 1,
) -> keras.Model:
    """Train `config` on prepared's "train" split for one epoch per learning rate, with that
    rate (no validation, no early stopping: the epochs and rates an earlier run chose), and
    save the last epoch's model (its weight average with --ema, as a checkpoint saves it) as
    run_dir/model.keras, with history.csv."""
    keras.utils.set_random_seed(config.seed)
    model = compile_model(build_model(config, prepared.layout, prepared.lookup.dim), config)
    train = Batches.for_model(
        model,
        prepared.splits["train"],
        prepared.lookup,
        prepared.layout,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        batching=config.batching,
    )
    rates = [float(rate) for rate in learning_rates]
    callbacks = [
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.ema > 0 else []),
        keras.callbacks.LearningRateScheduler(lambda epoch, rate: rates[epoch]),
        HistoryWriter(Path(run_dir) / HISTORY_FILE),
        ReleaseMemory(),
        interrupt := StopOnInterrupt(),
        *([EpochProgbar()] if verbose else []),
    ]
    signals.raise_if_received()  # one that came while the model was built, and was swallowed
    model.fit(
        train,
        epochs=len(rates),
        callbacks=callbacks,
        verbose=verbose,
        class_weight=class_weights(prepared.splits["train"].labels, config.class_weight),
    )
    if interrupt.interrupted:
        raise Interrupted(signum=interrupt.signum)
    save_model(model, run_dir)
    return load_model(run_dir)


def refit_schedule(run_dir: Path, config: Config) -> list[float]:
    """The learning rate of each epoch up to the one a finished run kept (the first with its
    best valid balanced accuracy, as its checkpoint chose), from its history.csv."""
    path = Path(run_dir) / HISTORY_FILE
    try:
        rows = read_history(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); --refit needs a finished run") from None
    scores = [row.get(MONITOR, math.nan) for row in rows]
    if not rows or all(math.isnan(score) for score in scores):
        raise UserError(f"{path}: no epoch with a valid {MONITOR}; --refit needs a finished run")
    best = int(np.nanargmax(scores)) + 1
    return [row.get("learning_rate", config.learning_rate) for row in rows[:best]]


def with_valid_in_train(prepared: Prepared) -> Prepared:
    """Every labelled row but the test split's in "train" (train, then valid), for a refit."""
    train, valid = prepared.splits["train"], prepared.splits["valid"]
    merged = Split(
        *(np.concatenate([a, b]) for a, b in zip(astuple(train), astuple(valid), strict=True))
    )
    splits = {
        "train": merged,
        **{n: s for n, s in prepared.splits.items() if n not in ("train", "valid")},
    }
    return dataclasses.replace(prepared, splits=splits)
