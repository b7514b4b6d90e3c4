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
from kboolq.config import BEFORE_SETTING, Config, flag_of
from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.evaluation import evaluate_splits, format_table
from kboolq.files import write_json, write_text
from kboolq.models.architectures import build_model
from kboolq.outputs import claim_output, lock_output
from kboolq.plots import read_history, save_grid_curves
from kboolq.rundir import RunInfo, check_fits, load_model, read_info, write_info
from kboolq.threads import set_threads
from kboolq.training import MONITOR, train_model
from tuning import kt_private
from tuning.distributed import (
    GridClient,
    Heartbeat,
    Role,
    chief_secret,
    read_ca,
    read_tls,
    role_from,
    serve,
    worker_secret,
)
from tuning.launch import Launcher
from tuning.oracle import ResumableGridOracle

# The notebook's W&B sweep: 3 x 3 x 3 x 3 = 81 configurations.
DEFAULT_GRID: dict[str, list[Any]] = {
    "hidden_size": [128, 256, 512],
    "dropout": [0.0, 0.1, 0.2],
    "learning_rate": [1e-3, 1e-4, 1e-5],
    "weight_decay": [0.0, 0.1, 0.01],
}
FIELDS = {f.name: f for f in dataclasses.fields(Config)}  # every hyperparameter may be an axis
OBJECTIVE = kt.Objective(MONITOR, direction="max")
DEFAULT_LEASE = 120.0  # seconds a worker may stay silent before its trial is handed elsewhere
DEFAULT_CHIEF_TIMEOUT = 600.0  # the chief loads the data before it serves: give it time


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
        return build_model(config, self.prepared.layout, self.prepared.table.shape[1])


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
    layout, dim = hypermodel.prepared.layout, hypermodel.prepared.table.shape[1]

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
        best = max(done, key=lambda t: t.score, default=None)
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


RECORD = "grid.json"  # what the grid directory was made from


def grid_record(info: RunInfo, grid: dict[str, list[Any]]) -> dict[str, Any]:
    fixed = {k: v for k, v in info.config.to_dict().items() if k not in grid}
    data = info.to_dict()["data"]
    return {"data": data, "embeddings": info.to_dict()["embeddings"], "fixed": fixed, "axes": grid}


def record_changes(old: dict[str, Any], new: dict[str, Any], same_axes: bool) -> list[str]:
    """What differs between two grid records: data, vectors and fixed settings always; the
    axes must be equal (`same_axes`) or may only gain values."""
    # a setting added to kboolq after the old grid was made had the value that reproduces
    # the behaviour of before (BEFORE_SETTING; accents: the notebook's "drop")
    before = {"fixed": BEFORE_SETTING, "data": {"accents": "drop"}}

    def was(section: str, key: str) -> Any:
        return old.get(section, {}).get(key, before.get(section, {}).get(key))

    changed = [
        f"{section}.{key}: {was(section, key)!r} -> {value!r}"
        for section in ("data", "embeddings", "fixed")
        for key, value in new[section].items()
        if was(section, key) != value
    ]
    old_axes, axes = old.get("axes", {}), new["axes"]
    if set(old_axes) != set(axes):
        changed.append(f"axes: {', '.join(old_axes)} -> {', '.join(axes)}")
    else:
        changed += [
            f"axes.{name}: {old_axes[name]} -> {values}" + ("" if same_axes else " drops values")
            for name, values in axes.items()
            if (old_axes[name] != values if same_axes else not set(old_axes[name]) <= set(values))
        ]
    return changed


def check_same_grid(grid_dir: Path, record: dict[str, Any]) -> None:
    """A grid directory continues only the grid it was made for: the same data, vectors and
    fixed settings, and axes that keep every value they had (new values add grid points)."""
    try:
        old = json.loads((grid_dir / RECORD).read_text())
    except (OSError, ValueError):
        return  # a new grid, or one made before grid.json was written
    changed = record_changes(old, record, same_axes=False)
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
            kt_private.set_choices(hp, grid[hp.name])


def is_grid(path: Path) -> bool:
    """A directory this command wrote: KerasTuner's project folder is in it."""
    return (path / "trials").is_dir()


def _kind(name: str) -> type:
    return type(FIELDS[name].default)


def parse_axis(name: str, text: str) -> list[Any]:
    kind = _kind(name)
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            if kind is bool:
                if item.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(item)
                values.append(item.lower() in ("true", "1"))
            else:
                values.append(kind(item))
        except ValueError:
            raise UserError(f"{flag_of(name)}: {item!r} is not a {kind.__name__}") from None
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
    by_flag = {flag_of(name).lstrip("-"): name for name in FIELDS}
    grid = {}
    for key, values in raw.items():
        name = by_flag.get(key, key)
        if name not in FIELDS:
            raise UserError(f"--grid {path}: unknown axis {key!r} (axes: {', '.join(FIELDS)})")
        if not isinstance(values, list) or not values:
            raise UserError(f"--grid {path}: axis {key!r} needs a non-empty list of values")
        grid[name] = [_check_type(name, value, path) for value in values]
    return grid


def _check_type(name: str, value: Any, path: Path) -> Any:
    kind = _kind(name)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int and not (numeric and float(value).is_integer()):
        raise UserError(f"--grid {path}: axis {name!r} takes integers, got {value!r}")
    if kind is float and not numeric:
        raise UserError(f"--grid {path}: axis {name!r} takes numbers, got {value!r}")
    if kind in (str, bool) and not isinstance(value, kind):
        raise UserError(f"--grid {path}: axis {name!r} takes {kind.__name__}s, got {value!r}")
    return kind(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tuning.grid",
        description="Grid search with KerasTuner over any hyperparameters of the --arch model "
        "(by default the notebook's grid: hidden x dropout x lr x weight decay, 81 trials), each "
        "trial early-stopped on valid balanced accuracy. Writes GRID_DIR/trials.csv (every grid "
        "point once, best first) and GRID_DIR/best (a normal run directory for "
        "kboolq.evaluate/predict). A killed grid resumes where it stopped when run again with "
        "the same arguments. With --chief/--worker the trials run on several processes or "
        "machines at once (see README, 'Several trials at once'); every call to the chief "
        "carries the grid secret ($KBOOLQ_GRID_SECRET, else GRID_DIR/grid.secret, which the "
        "chief writes).",
    )
    p.add_argument("--out", type=Path, required=True, metavar="GRID_DIR", help="grid directory")
    axes = p.add_argument_group(
        "hyperparameters: every one may be a grid axis (V,V,... makes an axis; one value fixes "
        "it, except for the notebook's four axes, which stay axes of that one value)"
    )
    for name, f in FIELDS.items():
        default = ",".join(map(str, DEFAULT_GRID.get(name, [f.default])))
        kind = "axis" if name in DEFAULT_GRID else "fixed"
        choices = f.metadata.get("choices")
        axes.add_argument(
            f.metadata["flag"],
            dest=f"axis_{name}",
            metavar="V,V,..." if not choices else "{" + ",".join(choices) + "},...",
            help=f"{f.metadata['help']} (default: {kind} {default})",
        )
    p.add_argument(
        "--grid",
        type=Path,
        help="TOML or JSON file of axis = [values], axes named by field or flag (e.g. "
        "hidden = [128, 256]; arch = ['bigru', 'attention']); flags win",
    )
    p.add_argument("--fresh", action="store_true", help="discard finished trials and start over")
    p.add_argument(
        "--wandb", action="store_true", help="log each trial as a W&B run (metrics only)"
    )
    dist = p.add_argument_group(
        "many workers (KerasTuner's chief/worker mode; KERASTUNER_ORACLE_IP, "
        "KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID work too)"
    )
    dist.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="run the grid on N local worker processes at once, in this one command: it "
        "starts a chief on a free 127.0.0.1 port and N workers (each with --threads / N "
        "threads, or all cores / N; GPUs from CUDA_VISIBLE_DEVICES round-robin, several "
        "workers may share one), shows all their output tagged by process, replaces a worker "
        "that dies, and stops them all on Ctrl-C. 1: one process, no chief (default: 1)",
    )
    dist.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="be the chief: hand out grid points to workers on HOST:PORT, trains nothing, and "
        "write trials.csv and best/ when every point is done",
    )
    dist.add_argument(
        "--worker",
        metavar="HOST:PORT",
        help="be a worker: train the grid points the chief at HOST:PORT hands out, with the "
        "same other arguments as the chief",
    )
    dist.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="chief: serve over TLS with this certificate (chain), for networks that are not "
        "private; workers then need --tls-ca (default: no TLS; the grid secret is still checked)",
    )
    dist.add_argument(
        "--tls-key", type=Path, metavar="PEM", help="chief: the private key of --tls-cert"
    )
    dist.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="worker: reach the chief over TLS, trusting the certificate authority in this file "
        "(the chief's own certificate, if self-signed)",
    )
    dist.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE,
        metavar="SECONDS",
        help="chief: a trial whose worker sends nothing (it sends a heartbeat every "
        "min(10, lease/4) s) for this long is handed to another worker "
        f"(default: {DEFAULT_LEASE:g})",
    )
    dist.add_argument(
        "--chief-timeout",
        type=float,
        default=DEFAULT_CHIEF_TIMEOUT,
        metavar="SECONDS",
        help="worker: give up with an error when the chief cannot be reached for this long "
        f"(default: {DEFAULT_CHIEF_TIMEOUT:g})",
    )
    add_verbose_argument(p)
    add_source_arguments(p)
    add_threads_argument(p)
    return p


def settings_from_args(args: argparse.Namespace) -> tuple[Config, dict[str, list[Any]]]:
    """The fixed hyperparameters and the grid axes, checked before any training."""
    grid = dict(DEFAULT_GRID)
    if args.grid is not None:
        grid.update(read_grid_file(args.grid))
    fixed = {}
    for name in FIELDS:
        text = getattr(args, f"axis_{name}")
        if text is None:
            continue
        values = parse_axis(name, text)
        if len(values) == 1 and name not in grid:
            fixed[name] = values[0]
        else:
            grid[name] = values
    base = Config(**fixed)
    for name, values in grid.items():
        for value in values:
            dataclasses.replace(base, **{name: value})  # range errors before any training
    return base, grid


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
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    role = role_from(args.chief, args.worker)
    if args.workers > 1:
        if role is not None:
            raise UserError("--workers starts its own chief and workers: drop --chief/--worker")
        settings_from_args(args)  # flag errors before any process starts
        argv = sys.argv[1:] if argv is None else list(argv)
        return Launcher(argv, args.workers, args.threads).run()
    set_threads(args.threads)
    base, grid = settings_from_args(args)
    if not args.lease > 0 or not args.chief_timeout > 0:
        raise UserError("--lease and --chief-timeout must be positive numbers of seconds")
    tls_flags = args.tls_cert or args.tls_key or args.tls_ca
    if role is None and tls_flags:
        raise UserError("--tls-cert, --tls-key and --tls-ca are for a grid on --chief/--worker")
    if role is not None and role.kind == "worker":
        return run_worker(args, role, base, grid)
    if args.tls_ca:
        raise UserError("--tls-ca is a worker's; the chief takes --tls-cert and --tls-key")
    tls = read_tls(args.tls_cert, args.tls_key) if role is not None else None
    grid_dir: Path = args.out
    settings = data_settings(args)
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
        progress = Progress(total)
        oracle = ResumableGridOracle(
            grid_size=total,
            lease=None if role is None else args.lease,
            on_trial_end=progress,
            require_files=role is not None,
            # a chief never stops for failed trials: a worker's bad upload is one failed point
            max_consecutive_failed_trials=3 if role is None else None,
            objective=OBJECTIVE,
            seed=base.seed,
        )
        progress.oracle = oracle
        hypermodel = ConfigHyperModel(base, grid, prepared)
        tuner = GridTuner(
            hypermodel,
            info,
            args.wandb,
            verbosity(args),
            oracle=oracle,
            directory=str(grid_dir),
            project_name="trials",
            overwrite=args.fresh,
        )
        widen_space(tuner.oracle, grid)
        if role is None:
            tuner.search()
        else:
            tuner.save()
            secret = chief_secret(grid_dir)
            cpu, wall = time.process_time(), time.monotonic()
            requests = serve(
                oracle,
                role,
                record,
                heartbeat=min(10.0, args.lease / 4),
                secret=secret,
                tls=tls,
                accept=trial_check(hypermodel),
            )
            print(
                f"grid chief: all {total} points done; served {sum(requests.values())} requests "
                f"({requests.get('CreateTrial', 0)} trial requests, "
                f"{requests.get('Heartbeat', 0)} heartbeats) in "
                f"{_duration(time.monotonic() - wall)} using "
                f"{time.process_time() - cpu:.2f} s of CPU time",
                flush=True,
            )
        return finish(tuner, grid, grid_dir, prepared, base)


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
        if (history := Path(tuner.get_trial_dir(row["trial"])) / "history.csv").exists()
    }
    save_grid_curves(curves, best[0].trial_id, grid_dir / "learning_curves.png")
    best_dir = grid_dir / "best"
    publish_best(Path(tuner.get_trial_dir(best[0].trial_id)), best_dir)
    reports = evaluate_splits(
        load_model(best_dir), prepared.splits, prepared.table, base.batch_size, prepared.stems
    )
    write_json(best_dir / "metrics.json", reports)
    print(_format_rows(rows))
    print(f"best trial {best[0].trial_id}: {best[0].hyperparameters.values}")
    print(format_table(reports))
    print(f"wrote {grid_dir / 'trials.csv'} and {best_dir}")
    return 0


def run_worker(
    args: argparse.Namespace, role: Role, base: Config, grid: dict[str, list[Any]]
) -> int:
    """Train what the chief hands out until it says the grid is done. The worker's trial
    directories go under its own --out (the chief's, on a shared filesystem); each finished
    one is also sent to the chief."""
    grid_dir: Path = args.out
    if args.tls_cert or args.tls_key:
        raise UserError("--tls-cert and --tls-key are the chief's; a worker takes --tls-ca")
    secret, ca = worker_secret(grid_dir), read_ca(args.tls_ca)
    with lock_output(grid_dir / f".{role.tuner_id}"):  # a worker per id; beside the chief
        claim_output(grid_dir, "grid", is_grid, overwrite=True)
        inputs = load_inputs(data_settings(args), cache_dir(args))
        info = run_info(base, inputs)
        record = grid_record(info, grid)
        total = len(list(itertools.product(*grid.values())))
        tuner = GridTuner(
            ConfigHyperModel(base, grid, inputs.prepared),
            info,
            args.wandb,
            verbosity(args),
            oracle=ResumableGridOracle(grid_size=total, objective=OBJECTIVE, seed=base.seed),
            directory=str(grid_dir),
            project_name="trials",
            overwrite=False,  # on a shared filesystem this is the chief's grid too
        )
        local = getattr(tuner.oracle, "_oracle", tuner.oracle)  # KerasTuner's client wraps it
        client = GridClient(local, role, args.chief_timeout, secret, ca)
        tuner.oracle, tuner.client, tuner.tuner_id = client, client, role.tuner_id
        chief = client.record()
        changed = record_changes(chief["record"], record, same_axes=True)
        if changed:
            raise UserError(
                f"--worker {role.address}: the chief runs another grid ({'; '.join(changed)}); "
                "start every process with the same arguments"
            )
        tuner.heartbeat_interval = chief["heartbeat"]
        print(f"grid worker {role.tuner_id}: joined the chief at {role.address}", flush=True)
        tuner.search()
        print(
            f"grid worker {role.tuner_id}: the grid is done; ran {tuner.ran} trials, waited "
            f"{client.idle_asks} times for a free grid point",
            flush=True,
        )
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
