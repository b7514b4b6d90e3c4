"""The grid's KerasTuner side: the hypermodel over Config, the tuner that trains each trial like
kboolq.fit, the chief's check of a trial's files, progress lines, and the grid's results
(trials.csv, the curves, GRID_DIR/best). build_tuner makes the tuner for one process, a chief
and a worker alike."""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from kboolq import tracking
from kboolq.config import Config
from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.evaluation import format_table
from kboolq.files import write_json, write_text
from kboolq.models.architectures import build_model
from kboolq.plots import read_history, save_grid_curves
from kboolq.runs.card import fit_command
from kboolq.runs.finish import finish_run
from kboolq.runs.outputs import claimed
from kboolq.runs.rundir import (
    CURVES_FILE,
    HISTORY_FILE,
    RUN,
    RunInfo,
    check_fits,
    load_model,
    read_info,
    write_info,
)
from kboolq.training import MONITOR, train_model
from tuning import kt_private
from tuning.axes import grid_size
from tuning.distributed import GridClient, Heartbeat
from tuning.oracle import ResumableGridOracle, rank

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


def trial_check(hypermodel: ConfigHyperModel):
    """The chief's check of a trial's files before they count: config.json holds the trial's
    own grid point and the grid's layout and vectors, and model.keras loads and takes them.
    Returns accept(trial, directory) -> None, or the one-line reason the trial fails."""
    layout, dim = hypermodel.prepared.layout, hypermodel.prepared.lookup.dim

    def accept(trial, directory: Path) -> str | None:
        try:
            info = read_info(directory)
            if info.config != hypermodel.config(trial.hyperparameters.copy()):
                return "config.json holds other hyperparameters than the trial's grid point"
            if info.layout != layout or info.vectors.dim != dim:
                return "config.json's layout or vector size is not the grid's"
            check_fits(load_model(directory), info, directory)
        except UserError as exc:
            return str(exc).splitlines()[0].replace(str(directory), "the uploaded run")
        return None

    return accept


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_line(
    done: int,
    total: int,
    elapsed: float,
    trial_seconds: list[float],
    best: tuple[float, str] | None,
    workers: int = 1,
) -> str:
    """'grid: trial k of n done, elapsed ..., best so far ..., about ... left (...)': the
    estimate is the trials left times the mean time of the trials ended since this process
    started, shared among the workers."""
    parts = [f"grid: trial {done} of {total} done", f"elapsed {_duration(elapsed)}"]
    if best is not None:
        parts.append(f"best so far {best[0]:.4f} (trial {best[1]})")
    left = total - done
    if left > 0 and trial_seconds:
        mean = sum(trial_seconds) / len(trial_seconds)
        shared = f" / {workers} workers" if workers > 1 else ""
        parts.append(
            f"about {_duration(left * mean / workers)} left "
            f"({left} trials x {_duration(mean)}{shared})"
        )
    return ", ".join(parts)


class Progress:
    """Prints a progress line each time the oracle ends a trial (in one process or on the
    chief, which sees every worker's trials)."""

    def __init__(self, total: int) -> None:
        self.total, self.started = total, time.monotonic()
        self.trial_seconds: list[float] = []
        self.oracle: ResumableGridOracle | None = None

    def __call__(self, trial, seconds: float | None) -> None:
        if seconds is not None:
            self.trial_seconds.append(seconds)
        done = [t for t in self.oracle.trials.values() if t.status == "COMPLETED"]
        best = min(done, key=lambda t: rank(t.trial_id, t.score), default=None)
        workers = max(1, len(self.oracle.tuner_ids))
        print(
            progress_line(
                len(done),
                self.total,
                time.monotonic() - self.started,
                self.trial_seconds,
                None if best is None else (best.score, best.trial_id),
                workers,
            ),
            flush=True,
        )


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


def trials_table(tuner: GridTuner, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """One row per grid point: trials given up after their lease ran out are left out (their
    point ran again as another trial)."""
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.trial_id in tuner.oracle.expired:
            continue
        row = {"trial": trial.trial_id, "status": trial.status}
        row.update({name: trial.hyperparameters.values.get(name) for name in grid})
        row[MONITOR] = trial.score
        rows.append(row)
    rows.sort(key=lambda r: rank(r["trial"], r[MONITOR]))
    return rows


def write_trials_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def publish_best(
    trial_dir: Path, best_dir: Path, prepared: Prepared, batch_size: int, made_by: str
) -> dict[str, dict]:
    """GRID_DIR/best: a copy of the best trial's run, finished (evaluated once, its card), and
    swapped in whole through kboolq's one output protocol; returns its reports."""
    info = read_info(trial_dir)
    with claimed(best_dir, RUN, overwrite=True) as out, out.staged() as work:
        shutil.copytree(trial_dir, work, dirs_exist_ok=True)
        model = load_model(work)
        return finish_run(work, best_dir.name, info, model, prepared, made_by, None, batch_size)


def finish(
    tuner: GridTuner, grid: dict[str, list[Any]], grid_dir: Path, prepared: Prepared, base: Config
) -> int:
    """trials.csv, the grid's learning curves, and GRID_DIR/best evaluated once."""
    rows = trials_table(tuner, grid)
    write_trials_csv(grid_dir / "trials.csv", rows)
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise UserError(f"{grid_dir}: no trial finished")
    curves = {
        row["trial"]: [r[MONITOR] for r in read_history(history)]
        for row in rows
        if (history := Path(tuner.get_trial_dir(row["trial"])) / HISTORY_FILE).exists()
    }
    save_grid_curves(curves, best[0].trial_id, grid_dir / CURVES_FILE)
    best_dir = grid_dir / "best"
    trial_dir = Path(tuner.get_trial_dir(best[0].trial_id))
    made_by = f"{fit_command(read_info(trial_dir))}  # the grid's best trial, {best[0].trial_id}"
    reports = publish_best(trial_dir, best_dir, prepared, base.batch_size, made_by)
    print(_format_rows(rows))
    print(f"best trial {best[0].trial_id}: {best[0].hyperparameters.values}")
    print(format_table(reports))
    print(f"wrote {grid_dir / 'trials.csv'} and {best_dir}")
    return 0


def _format_rows(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0])
    lines = ["  ".join(f"{name:>13}" for name in names)]
    for row in rows:
        cells = [f"{v:>13.4g}" if isinstance(v, float) else f"{v!s:>13}" for v in row.values()]
        lines.append("  ".join(cells))
    return "\n".join(lines)
