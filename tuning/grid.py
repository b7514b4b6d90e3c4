"""python -m tuning.grid: the notebook's hyperparameter grid with KerasTuner, resumable.

Every trial trains exactly as kboolq.fit does (same config dataclass, model builder, early
stopping on valid balanced accuracy and best-only checkpoint) into its own run directory, so
the best trial's directory is copied out as GRID_DIR/best, a normal run for evaluate/predict.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from kboolq import tracking
from kboolq.cli import (
    add_source_arguments,
    add_threads_argument,
    add_verbose_argument,
    cache_dir,
    data_settings,
    load_inputs,
    run_command,
    run_info,
    verbosity,
    warn_about_data,
)
from kboolq.config import Config, add_config_arguments, config_from_args, flag_of
from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.evaluation import (
    evaluate_splits,
    format_table,
    read_history,
    save_grid_curves,
)
from kboolq.files import write_json, write_text
from kboolq.models.architectures import build_model
from kboolq.rundir import RunInfo, claim_output, load_model, lock_output, write_info
from kboolq.threads import set_threads
from kboolq.training import MONITOR, train_model

# The notebook's W&B sweep: 3 x 3 x 3 x 3 = 81 configurations.
DEFAULT_GRID: dict[str, list[Any]] = {
    "hidden_size": [128, 256, 512],
    "dropout": [0.0, 0.1, 0.2],
    "learning_rate": [1e-3, 1e-4, 1e-5],
    "weight_decay": [0.0, 0.1, 0.01],
}
FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Config)}
OBJECTIVE = kt.Objective(MONITOR, direction="max")


class ResumableGridOracle(kt.oracles.GridSearchOracle):
    """GridSearchOracle whose next combination is derived from the recorded trials alone.

    KerasTuner 1.4.8 keeps GridSearchOracle's position in memory only: after a kill mid-trial a
    reload repeats the interrupted trial and then fails with KeyError in populate_space, and later
    reloads skip the rest. Here the next trial is simply the first combination, in
    GridSearch's own order, that no recorded trial has taken; an interrupted trial is re-run
    by the base Oracle because it is still the tuner's ongoing trial.
    """

    def _combinations(self) -> list[dict[str, Any]]:
        hps = self.get_space()
        current = {hp.name: hp.default for hp in hps.space}
        combinations = []
        while current is not None:
            combinations.append(dict(current))
            current = self._get_next_combination(current)
        return combinations

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        taken = {_key(trial.hyperparameters.values) for trial in self.trials.values()}
        for values in self._combinations():
            if _key(values) not in taken:
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
        status = "IDLE" if self.ongoing_trials else "STOPPED"
        return {"status": getattr(kt.engine.trial.TrialStatus, status), "values": None}

    def end_trial(self, trial) -> None:
        kt.Oracle.end_trial(self, trial)  # skip GridSearchOracle's in-memory bookkeeping

    # KerasTuner writes its JSON state in place; a kill mid-write would leave a file that the
    # resumed grid cannot read, so both files are written atomically instead.
    def save(self) -> None:
        write_json(Path(self._get_oracle_fname()), self.get_state())

    def _save_trial(self, trial) -> None:
        write_json(Path(self._get_trial_dir(trial.trial_id)) / "trial.json", trial.get_state())


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


class ConfigHyperModel(kt.HyperModel):
    """Builds and trains kboolq models from a Config whose grid axes come from `hp.Choice`."""

    def __init__(self, base: Config, grid: dict[str, list[Any]], prepared: Prepared) -> None:
        super().__init__()
        self.base, self.grid, self.prepared = base, grid, prepared

    def config(self, hp: kt.HyperParameters) -> Config:
        values = {name: hp.Choice(name, choices) for name, choices in self.grid.items()}
        return dataclasses.replace(self.base, **values)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        keras.utils.set_random_seed(self.base.seed)
        return build_model(self.config(hp), self.prepared.layout, self.prepared.table.shape[1])


class GridTuner(kt.Tuner):
    """Runs each trial with kboolq's own training loop into the trial's directory."""

    def __init__(
        self,
        hypermodel: ConfigHyperModel,
        info: RunInfo,
        wandb: bool,
        verbose: int,
        total: int,
        **kwargs,
    ) -> None:
        super().__init__(hypermodel=hypermodel, **kwargs)
        self.info, self.wandb, self.fit_verbose, self.total = info, wandb, verbose, total
        self.started = time.monotonic()
        self.trial_seconds: list[float] = []

    def on_trial_begin(self, trial) -> None:
        super().on_trial_begin(trial)
        self.trial_started = time.monotonic()

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        self.trial_seconds.append(time.monotonic() - self.trial_started)
        done = [t for t in self.oracle.trials.values() if t.status == "COMPLETED"]
        best = max(done, key=lambda t: t.score, default=None)
        print(
            progress_line(
                len(done),
                self.total,
                time.monotonic() - self.started,
                self.trial_seconds,
                None if best is None else (best.score, best.trial_id),
            ),
            flush=True,
        )

    def save(self) -> None:
        self.oracle.save()
        write_json(Path(self._get_tuner_fname()), self.get_state())

    def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
        config = self.hypermodel.config(trial.hyperparameters)
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        write_info(trial_dir, dataclasses.replace(self.info, config=config))
        tracker, extra = tracking.start_tracking(
            self.wandb,
            config.to_dict(),
            name=f"trial-{trial.trial_id}",
            group=Path(self.project_dir).parent.name,
        )
        _, checkpoint = train_model(
            config, self.hypermodel.prepared, trial_dir, extra, verbose=self.fit_verbose
        )
        if tracker is not None:
            tracker.summary[MONITOR] = checkpoint.best
            tracker.finish()
        return {MONITOR: checkpoint.best}


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
) -> str:
    """'grid: trial k of n done, elapsed ..., best so far ..., about ... left (...)': the
    estimate is the trials left times the mean time of the trials this process has run."""
    parts = [f"grid: trial {done} of {total} done", f"elapsed {_duration(elapsed)}"]
    if best is not None:
        parts.append(f"best so far {best[0]:.4f} (trial {best[1]})")
    left = total - done
    if left > 0 and trial_seconds:
        mean = sum(trial_seconds) / len(trial_seconds)
        parts.append(f"about {_duration(left * mean)} left ({left} trials x {_duration(mean)})")
    return ", ".join(parts)


RECORD = "grid.json"  # what the grid directory was made from


def grid_record(info: RunInfo, grid: dict[str, list[Any]]) -> dict[str, Any]:
    fixed = {k: v for k, v in info.config.to_dict().items() if k not in grid}
    data = info.to_dict()["data"]
    return {"data": data, "embeddings": info.to_dict()["embeddings"], "fixed": fixed, "axes": grid}


def check_same_grid(grid_dir: Path, record: dict[str, Any]) -> None:
    """A grid directory continues only the grid it was made for: the same data, vectors and
    fixed settings, and axes that keep every value they had (new values add grid points)."""
    try:
        old = json.loads((grid_dir / RECORD).read_text())
    except (OSError, ValueError):
        return  # a new grid, or one made before grid.json was written
    changed = [
        f"{section}.{key}: {old[section].get(key)!r} -> {value!r}"
        for section in ("data", "embeddings", "fixed")
        for key, value in record[section].items()
        if old.get(section, {}).get(key) != value
    ]
    old_axes, axes = old.get("axes", {}), record["axes"]
    if set(old_axes) != set(axes):
        changed.append(f"axes: {', '.join(old_axes)} -> {', '.join(axes)}")
    else:
        changed += [
            f"axes.{name}: {old_axes[name]} -> {values} drops values"
            for name, values in axes.items()
            if not set(old_axes[name]) <= set(values)
        ]
    if changed:
        raise UserError(
            f"--out {grid_dir}: holds a grid made from other settings ({'; '.join(changed)}); "
            "pass --fresh to start it over, or choose another --out"
        )


def widen_space(oracle: kt.Oracle, grid: dict[str, list[Any]]) -> None:
    """Give a reloaded oracle the axes' current values: KerasTuner keeps the values it saved,
    so a grid re-run with more values would otherwise never reach the new points."""
    for hp in oracle.hyperparameters.space:
        if hp.name in grid and list(hp.values) != list(grid[hp.name]):
            hp._values = list(grid[hp.name])  # KerasTuner has no public setter
            hp._default = hp._values[0]


def is_grid(path: Path) -> bool:
    """A directory this command wrote: KerasTuner's project folder is in it."""
    return (path / "trials").is_dir()


def parse_axis(name: str, text: str) -> list[Any]:
    kind = FIELD_TYPES[name]
    caster = {"int": int, "float": float, "str": str}[
        kind if isinstance(kind, str) else kind.__name__
    ]
    values = []
    for item in text.split(","):
        try:
            values.append(caster(item.strip()))
        except ValueError:
            raise UserError(
                f"{flag_of(name)}: {item.strip()!r} is not a {caster.__name__}"
            ) from None
    return values


def read_grid_file(path: Path) -> dict[str, list[Any]]:
    """A TOML or JSON table of axis -> list of values; axes by field name or flag."""
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as exc:
        raise UserError(f"--grid {path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(
            f"--grid {path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({exc})"
        ) from None
    if not isinstance(raw, dict):
        raise UserError(f"--grid {path}: expected a table of axis = [values]")
    by_flag = {flag_of(name).lstrip("-"): name for name in DEFAULT_GRID}
    grid = {}
    for key, values in raw.items():
        name = by_flag.get(key, key)
        if name not in DEFAULT_GRID:
            raise UserError(
                f"--grid {path}: unknown axis {key!r} (axes: {', '.join(DEFAULT_GRID)})"
            )
        if not isinstance(values, list) or not values:
            raise UserError(f"--grid {path}: axis {key!r} needs a non-empty list of values")
        grid[name] = [_check_type(name, value, path) for value in values]
    return grid


def _check_type(name: str, value: Any, path: Path) -> Any:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if FIELD_TYPES[name] == "int" and not (numeric and float(value).is_integer()):
        raise UserError(f"--grid {path}: axis {name!r} takes integers, got {value!r}")
    if FIELD_TYPES[name] == "float" and not numeric:
        raise UserError(f"--grid {path}: axis {name!r} takes numbers, got {value!r}")
    return int(value) if FIELD_TYPES[name] == "int" else float(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tuning.grid",
        description="Grid search over the notebook's grid (hidden x dropout x lr x weight "
        "decay, 81 trials by default) for the --arch model with KerasTuner, each trial "
        "early-stopped on valid balanced accuracy. Writes GRID_DIR/trials.csv (all trials, best "
        "first) and GRID_DIR/best (a normal run directory for kboolq.evaluate/predict). A killed "
        "grid resumes where it stopped when run again with the same arguments.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="GRID_DIR", help="grid directory")
    axes = p.add_argument_group("grid axes (comma-separated values; defaults: the notebook's grid)")
    for name, values in DEFAULT_GRID.items():
        axes.add_argument(
            flag_of(name),
            dest=f"axis_{name}",
            metavar="V,V,...",
            help=f"values of {name} (default: {','.join(map(str, values))})",
        )
    p.add_argument("--grid", type=Path, help="TOML or JSON file of axis = [values]; flags win")
    p.add_argument("--fresh", action="store_true", help="discard finished trials and start over")
    p.add_argument(
        "--wandb", action="store_true", help="log each trial as a W&B run (metrics only)"
    )
    add_verbose_argument(p)
    add_source_arguments(p)
    add_threads_argument(p)
    add_config_arguments(p, skip=tuple(DEFAULT_GRID))
    return p


def grid_from_args(args: argparse.Namespace) -> dict[str, list[Any]]:
    grid = dict(DEFAULT_GRID)
    if args.grid is not None:
        grid.update(read_grid_file(args.grid))
    for name in DEFAULT_GRID:
        text = getattr(args, f"axis_{name}")
        if text is not None:
            grid[name] = parse_axis(name, text)
    for name, values in grid.items():
        for value in values:
            dataclasses.replace(Config(), **{name: value})  # range errors before any training
    return grid


def trials_table(tuner: GridTuner, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    rows = []
    for trial in tuner.oracle.trials.values():
        row = {"trial": trial.trial_id, "status": trial.status}
        row.update({name: trial.hyperparameters.values.get(name) for name in grid})
        row[MONITOR] = trial.score
        rows.append(row)
    rows.sort(key=lambda r: (r[MONITOR] is None, -(r[MONITOR] or 0.0), r["trial"]))
    return rows


def write_trials_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def publish_best(trial_dir: Path, best_dir: Path) -> None:
    """Replace GRID_DIR/best with a copy of the best trial's run directory, atomically."""
    staging = Path(tempfile.mkdtemp(prefix=".best-", dir=best_dir.parent))
    try:
        shutil.copytree(trial_dir, staging, dirs_exist_ok=True)
        old = best_dir.with_name(".best-old")
        shutil.rmtree(old, ignore_errors=True)
        if best_dir.exists():
            best_dir.rename(old)
        staging.rename(best_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    grid = grid_from_args(args)
    base = config_from_args(args)
    settings = data_settings(args)
    grid_dir: Path = args.out
    with lock_output(grid_dir):
        claim_output(grid_dir, "grid", is_grid, overwrite=True)  # its own grid: resumed
        inputs = load_inputs(settings, cache_dir(args))  # once per grid, shared by every trial
        warn_about_data(inputs, base.batch_size)
        prepared = inputs.prepared
        info = run_info(base, inputs)
        record = grid_record(info, grid)
        if not args.fresh:
            check_same_grid(grid_dir, record)
        grid_dir.mkdir(parents=True, exist_ok=True)
        write_json(grid_dir / RECORD, record)
        total = len(list(itertools.product(*grid.values())))
        print(
            f"grid of {total} trials over {', '.join(grid)}; data ready in {inputs.seconds:.1f} s"
        )
        hypermodel = ConfigHyperModel(base, grid, prepared)
        tuner = GridTuner(
            hypermodel,
            info,
            args.wandb,
            verbosity(args),
            total,
            oracle=ResumableGridOracle(objective=OBJECTIVE, max_trials=total, seed=base.seed),
            directory=str(grid_dir),
            project_name="trials",
            overwrite=args.fresh,
        )
        widen_space(tuner.oracle, grid)
        tuner.search()
        rows = trials_table(tuner, grid)
        write_trials_csv(grid_dir / "trials.csv", rows)
        best = tuner.oracle.get_best_trials(1)
        if not best:
            raise UserError(f"{grid_dir}: no trial finished")
        curves = {
            trial.trial_id: [row[MONITOR] for row in read_history(history)]
            for trial in tuner.oracle.trials.values()
            if (history := Path(tuner.get_trial_dir(trial.trial_id)) / "history.csv").exists()
        }
        save_grid_curves(curves, best[0].trial_id, grid_dir / "learning_curves.png")
        best_dir = grid_dir / "best"
        publish_best(Path(tuner.get_trial_dir(best[0].trial_id)), best_dir)
        reports = evaluate_splits(
            load_model(best_dir), prepared.splits, prepared.table, base.batch_size
        )
        write_json(best_dir / "metrics.json", reports)
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


if __name__ == "__main__":
    sys.exit(run_command(main, "tuning.grid")())
