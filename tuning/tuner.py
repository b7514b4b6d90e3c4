"""The grid's KerasTuner side: the hypermodel over Config, the tuner that trains each trial like
kboolq.fit, the chief's check of a trial's files, progress lines, and the grid's results
(trials.csv, the curves, GRID_DIR/best). build_tuner makes the tuner for one process, a chief
and a worker alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from kboolq import tracking
from kboolq.config import Config
from kboolq.data.layout import Prepared
from kboolq.files import write_json
from kboolq.models.architectures import build_model
from kboolq.resume import forget
from kboolq.runs.rundir import (
    RunInfo,
    write_info,
)
from kboolq.training import MONITOR, train_model
from tuning import kt_private
from tuning.axes import grid_size
from tuning.distributed import GridClient, Heartbeat
from tuning.oracle import ResumableGridOracle
from tuning.progress import Progress

OBJECTIVE = kt.Objective(MONITOR, direction="max")


class ConfigHyperModel(kt.HyperModel):
    """Builds kboolq models from a Config whose grid axes come from `hp.Choice`."""

    def __init__(self, base: Config, grid: dict[str, list[Any]], prepared: Prepared) -> None:
        super().__init__()
        self.base, self.grid, self.prepared = base, grid, prepared

    def config(self, hp: kt.HyperParameters) -> Config:
        values = {name: hp.Choice(name, choices) for name, choices in self.grid.items()}
        return dataclasses.replace(self.base, **values)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        config = self.config(hp)
        keras.utils.set_random_seed(config.seed)
        return build_model(config, self.prepared.layout, self.prepared.lookup.dim)


class StopWhenLost(keras.callbacks.Callback):
    """Ends a worker's training once the chief has handed its trial to another worker."""

    def __init__(self, beat: Heartbeat) -> None:
        super().__init__()
        self.beat = beat

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.beat.lost.is_set():
            self.model.stop_training = True


class GridTuner(kt.Tuner):
    """Runs each trial with kboolq's own training loop into the trial's directory; on a
    worker it also keeps the trial's lease alive and sends the finished trial's files to the
    chief."""

    def __init__(
        self, hypermodel: ConfigHyperModel, info: RunInfo, wandb: bool, verbose: int, **kwargs
    ) -> None:
        super().__init__(hypermodel=hypermodel, **kwargs)
        self.info, self.wandb, self.fit_verbose = info, wandb, verbose
        self.client: GridClient | None = None  # set on a worker
        self.heartbeat_interval = 10.0
        self.beat: Heartbeat | None = None
        self.ran = 0

    def on_trial_begin(self, trial) -> None:
        super().on_trial_begin(trial)
        if self.client is not None:
            self.beat = Heartbeat(self.client, trial.trial_id, self.heartbeat_interval)
            print(
                f"grid worker {self.tuner_id}: trial {trial.trial_id} "
                f"{trial.hyperparameters.values}",
                flush=True,
            )

    def on_trial_end(self, trial) -> None:
        if self.beat is not None:
            self.beat.stop()
        super().on_trial_end(trial)
        self.ran += 1

    def save(self) -> None:
        if self.client is None:  # the oracle lives here, not on a chief
            self.oracle.save()
        write_json(Path(kt_private.tuner_state_file(self)), self.get_state())

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        config = self.hypermodel.config(trial.hyperparameters)
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        write_info(trial_dir, dataclasses.replace(self.info, config=config))
        tracker, extra = tracking.start_tracking(
            self.wandb,
            config.to_dict(),
            Path(self.project_dir).parent / "wandb",
            name=f"trial-{trial.trial_id}",
            group=Path(self.project_dir).parent.name,
        )
        if self.beat is not None:
            extra = [*extra, StopWhenLost(self.beat)]
        _, checkpoint = train_model(
            config, self.hypermodel.prepared, trial_dir, extra, verbose=self.fit_verbose
        )
        forget(trial_dir)  # the trial's training state: its checkpoint is what counts
        if tracker is not None:
            tracker.summary[MONITOR] = checkpoint.best
            tracker.finish()
        if self.client is not None:
            refused = (
                "it was handed to another worker after its lease ran out"
                if self.beat.lost.is_set()
                else self.client.put_files(trial_dir, trial.trial_id)
            )
            if refused:
                print(
                    f"grid worker {self.tuner_id}: trial {trial.trial_id}'s result is dropped: "
                    f"{refused}",
                    flush=True,
                )
        return {MONITOR: checkpoint.best}


def widen_space(oracle: kt.Oracle, grid: dict[str, list[Any]]) -> None:
    """Give a reloaded oracle the axes' current values: KerasTuner keeps the values it saved,
    so a grid re-run with more values would otherwise never reach the new points."""
    for hp in oracle.hyperparameters.space:
        if hp.name in grid and list(hp.values) != list(grid[hp.name]):
            kt_private.set_choices(hp, grid[hp.name])


def build_tuner(
    base: Config,
    grid: dict[str, list[Any]],
    prepared: Prepared,
    info: RunInfo,
    grid_dir: Path,
    *,
    role: str | None,
    wandb: bool,
    verbose: int,
    lease: float | None = None,
    fresh: bool = False,
) -> GridTuner:
    """The grid's tuner for one process (role None), a chief or a worker: the same hypermodel
    and oracle, with what each role adds (the chief: leases and checked uploads, and it never
    stops for failed trials, a worker's bad upload being one failed point; one process and the
    chief: a progress line after every trial)."""
    total = grid_size(grid)
    chief = role == "chief"
    progress = None if role == "worker" else Progress(total)
    oracle = ResumableGridOracle(
        grid_size=total,
        lease=lease if chief else None,
        on_trial_end=progress,
        require_files=chief,
        max_consecutive_failed_trials=None if chief else 3,
        objective=OBJECTIVE,
        seed=base.seed,
    )
    if progress is not None:
        progress.oracle = oracle
    tuner = GridTuner(
        ConfigHyperModel(base, grid, prepared),
        info,
        wandb,
        verbose,
        oracle=oracle,
        directory=str(grid_dir),
        project_name="trials",
        overwrite=fresh and role != "worker",  # a worker's --out may be the chief's grid
    )
    widen_space(tuner.oracle, grid)
    return tuner
