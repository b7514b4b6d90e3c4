"""What a grid's finished trials say, offline, as a sweep dashboard would: which axes matter and
how much (Optuna's fANOVA importance evaluator on the recorded trials), a parallel-coordinates
plot, each axis's main effect with its spread, and the best trials, in GRID_DIR/report/.

It reads only what the grid has written (grid.json, each trial's trial.json, the oracle's
record of trials given up), so it works on a grid that is still running (finished trials
only), on a distributed grid's chief directory and on a resumed grid alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from kboolq.errors import UserError
from kboolq.files import write_text
from kboolq.plots import save_figure
from kboolq.runs.migration import migrate_grid_record
from kboolq.training import MONITOR
from tuning.oracle import rank
from tuning.record import RECORD

REPORT_DIR = "report"
REPORT = "report.md"
PARALLEL = "parallel_coordinates.png"
IMPORTANCE_SEED = 0  # fANOVA's random forest: the same trials give the same importances
BEST_SHOWN = 10  # trials in report.md's table


@dataclass(frozen=True)
class Trials:
    """A grid's axes (name -> its values, as grid.json records them) and its finished trials:
    (trial id, the axes' values, valid balanced accuracy), best first."""

    axes: dict[str, list[Any]]
    finished: list[tuple[str, dict[str, Any], float]]
    total: int  # grid points

    def varied(self) -> list[str]:
        """The axes with more than one value (the others cannot matter)."""
        return [name for name, values in self.axes.items() if len(values) > 1]


def read_trials(grid_dir: Path) -> Trials:
    """The finished trials of GRID_DIR: status COMPLETED with a score, not given up."""
    grid_dir = Path(grid_dir)
    try:
        record = migrate_grid_record(json.loads((grid_dir / RECORD).read_text()))
        axes = dict(record["axes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{grid_dir}: not a grid directory ({RECORD}: {exc})") from None
    oracle = grid_dir / "trials" / "oracle.json"
    expired = set(json.loads(oracle.read_text()).get("expired", [])) if oracle.exists() else set()
    finished = []
    for path in sorted((grid_dir / "trials").glob("trial_*/trial.json")):
        try:
            trial = json.loads(path.read_text())
            values = trial["hyperparameters"]["values"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a trial being written: not finished yet
        score = trial.get("score")
        if trial.get("status") != "COMPLETED" or score is None or trial["trial_id"] in expired:
            continue
        if not isinstance(score, int | float) or not math.isfinite(score):
            continue
        finished.append((trial["trial_id"], {name: values.get(name) for name in axes}, score))
    finished.sort(key=lambda t: rank(t[0], t[2]))
    return Trials(axes, finished, math.prod(len(values) for values in axes.values()))


def importance(trials: Trials) -> dict[str, float]:
    """Each varied axis's share of the score's variance (summing to 1), from Optuna's fANOVA
    evaluator over the finished trials; {} with fewer than two finished trials or no varied
    axis."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    varied = trials.varied()
    if len(trials.finished) < 2 or not varied:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {name: CategoricalDistribution(trials.axes[name]) for name in varied}
    study = optuna.create_study(direction="maximize")
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={name: values[name] for name in varied},
                distributions=distributions,
                value=score,
            )
            for _, values, score in trials.finished
        ]
    )
    found = get_param_importances(
        study, evaluator=FanovaImportanceEvaluator(seed=IMPORTANCE_SEED), normalize=True
    )
    return {name: float(found.get(name, 0.0)) for name in sorted(found, key=found.get)[::-1]}


def _positions(values: list[Any], chosen: list[Any]) -> np.ndarray:
    """Where each chosen value sits on its axis: 0 to 1 by the axis's own order."""
    index = {json.dumps(v): i for i, v in enumerate(values)}
    span = max(len(values) - 1, 1)
    return np.array([index[json.dumps(v)] / span for v in chosen], dtype=float)


def plot_parallel(trials: Trials, path: Path) -> None:
    """Every finished trial as one line across the varied axes and its score, coloured by the
    score (the best drawn last, on top)."""
    names = trials.varied() or list(trials.axes)
    scores = np.array([score for _, _, score in trials.finished])
    low, high = float(scores.min()), float(scores.max())
    norm = Normalize(low, high if high > low else low + 1e-9)
    colours = matplotlib.colormaps["viridis"]
    figure = Figure(figsize=(1.8 * (len(names) + 1) + 2, 4.5))
    axis = figure.subplots()
    columns = [_positions(trials.axes[n], [v[n] for _, v, _ in trials.finished]) for n in names]
    columns.append((scores - low) / (high - low) if high > low else np.full(len(scores), 0.5))
    for row in reversed(range(len(scores))):  # finished is best first: draw the best last
        axis.plot(range(len(columns)), [c[row] for c in columns],
                  color=colours(norm(scores[row])), alpha=0.8, linewidth=1.5)  # fmt: skip
    for x, name in enumerate(names):
        values = trials.axes[name]
        for value, y in zip(values, _positions(values, values), strict=True):
            axis.annotate(f"{value}", (x, y), xytext=(4, 0), textcoords="offset points",
                          fontsize=8, va="center")  # fmt: skip
    axis.set_xticks(range(len(columns)), [*names, MONITOR], rotation=15)
    axis.set_yticks([])
    for x in range(len(columns)):
        axis.axvline(x, color="grey", linewidth=0.8)
    figure.colorbar(ScalarMappable(norm=norm, cmap=colours), ax=axis, label=MONITOR)
    axis.set_title(f"{len(scores)} finished trials of {trials.total}")
    save_figure(figure, path)


def plot_effect(trials: Trials, name: str, path: Path) -> None:
    """The score of every finished trial against this axis's value, with each value's mean and
    standard deviation (its main effect and spread over the other axes)."""
    values = trials.axes[name]
    figure = Figure(figsize=(max(3.0, 1.1 * len(values) + 1.5), 3.5))
    axis = figure.subplots()
    for x, value in enumerate(values):
        scores = [s for _, v, s in trials.finished if json.dumps(v[name]) == json.dumps(value)]
        if not scores:
            continue
        axis.scatter([x] * len(scores), scores, color="tab:blue", alpha=0.5, s=16)
        axis.errorbar(x + 0.15, np.mean(scores), yerr=np.std(scores), fmt="o", color="black",
                      capsize=4)  # fmt: skip
    axis.set_xticks(range(len(values)), [str(v) for v in values])
    axis.set_xlabel(name)
    axis.set_ylabel(MONITOR)
    axis.set_title(f"{name}: score per value (mean +- std in black)")
    save_figure(figure, path)


def report_text(trials: Trials, shares: dict[str, float], effects: dict[str, str]) -> str:
    lines = [
        "# Grid report",
        "",
        f"{len(trials.finished)} of {trials.total} grid points finished (valid balanced "
        "accuracy; trials still running or given up are not counted). Made by "
        "`python -m tuning.report GRID_DIR`, and again at the end of every grid.",
        "",
        "## Which axes matter",
        "",
    ]
    if shares:
        lines += [
            "Share of the score's variance each axis explains (Optuna's fANOVA importance "
            f"evaluator, seed {IMPORTANCE_SEED}, over the finished trials):",
            "",
            "| axis | importance |",
            "|---|---|",
            *(f"| {name} | {share:.3f} |" for name, share in shares.items()),
        ]
    else:
        lines.append("Not enough finished trials (two or more) or no axis with two values.")
    lines += ["", f"![parallel coordinates]({PARALLEL})", "", "## Each axis", ""]
    lines += [f"![{name}]({file})" for name, file in effects.items()]
    names = list(trials.axes)
    lines += [
        "",
        "## Best trials",
        "",
        "| trial | " + " | ".join(names) + f" | {MONITOR} |",
        "|---" * (len(names) + 2) + "|",
        *(
            f"| {trial} | " + " | ".join(str(values[n]) for n in names) + f" | {score:.4f} |"
            for trial, values, score in trials.finished[:BEST_SHOWN]
        ),
        "",
    ]
    return "\n".join(lines)


def write_report(grid_dir: Path) -> Path:
    """GRID_DIR/report/: report.md, the parallel-coordinates plot and one plot per varied
    axis; returns report.md's path. A grid with no finished trial is a UserError."""
    trials = read_trials(grid_dir)
    if not trials.finished:
        raise UserError(f"{grid_dir}: no trial has finished yet; nothing to report")
    out = Path(grid_dir) / REPORT_DIR
    out.mkdir(exist_ok=True)
    plot_parallel(trials, out / PARALLEL)
    effects = {}
    for name in trials.varied():
        effects[name] = f"effect_{name}.png"
        plot_effect(trials, name, out / effects[name])
    write_text(out / REPORT, report_text(trials, importance(trials), effects))
    return out / REPORT
