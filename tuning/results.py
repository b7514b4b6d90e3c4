"""What a grid leaves: trials.csv, the learning curves of every trial, and GRID_DIR/best (the
best trial's run, finished and swapped in whole by kboolq's one output protocol)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Any

from kboolq.config import Config
from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.evaluation import format_table
from kboolq.files import write_text
from kboolq.plots import read_history, save_grid_curves
from kboolq.runs.card import fit_command
from kboolq.runs.finish import finish_run
from kboolq.runs.outputs import claimed
from kboolq.runs.rundir import CURVES_FILE, HISTORY_FILE, RUN, load_model, read_info
from kboolq.training import MONITOR
from tuning.dashboard import write_report
from tuning.oracle import rank
from tuning.tuner import GridTuner


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
    """trials.csv, the grid's learning curves, GRID_DIR/report (tuning.dashboard) and
    GRID_DIR/best evaluated once."""
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
    report = write_report(grid_dir)
    print(_format_rows(rows))
    print(f"best trial {best[0].trial_id}: {best[0].hyperparameters.values}")
    print(format_table(reports))
    print(f"wrote {grid_dir / 'trials.csv'}, {report} and {best_dir}")
    return 0


def _format_rows(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0])
    lines = ["  ".join(f"{name:>13}" for name in names)]
    for row in rows:
        cells = [f"{v:>13.4g}" if isinstance(v, float) else f"{v!s:>13}" for v in row.values()]
        lines.append("  ".join(cells))
    return "\n".join(lines)
