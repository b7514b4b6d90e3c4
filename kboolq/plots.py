"""The PNG plots: a split's confusion matrix, ROC and PR curves; a run's and a grid's learning
curves. Drawn with matplotlib's object API (no pyplot), so nothing global changes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kboolq.evaluation import curves
from kboolq.files import atomic_path


def save_plots(labels: np.ndarray, scores: np.ndarray, report: dict, out_dir: Path, split: str):
    """confusion_matrix, ROC and PR curve PNGs for one split; returns the written paths.

    Figures are drawn with matplotlib's object API (no pyplot), so nothing global changes.
    """
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, dtype=float).ravel()
    fpr, tpr, precision = curves(labels, scores)
    written = []

    def save(figure, name):
        path = Path(out_dir) / f"{split}_{name}.png"
        save_figure(figure, path)
        written.append(path)

    figure, axis = _figure()
    matrix = np.array(report["confusion_matrix"])
    axis.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        axis.text(j, i, str(value), ha="center", va="center", color=color)
    axis.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["no", "yes"],
        yticklabels=["no", "yes"],
        xlabel="predicted",
        ylabel="true",
        title=f"{split}: confusion matrix",
    )
    save(figure, "confusion_matrix")

    figure, axis = _figure()
    auc = float(np.trapezoid(tpr, fpr))
    axis.plot(fpr, tpr, label=f"ROC AUC {auc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{split}: ROC")
    axis.legend(loc="lower right")
    save(figure, "roc")

    figure, axis = _figure()
    axis.plot(tpr, precision, label=f"PR AUC {report['pr_auc']:.3f}")
    axis.axhline(labels.mean(), linestyle=":", color="grey", label="always yes")
    axis.set(
        xlabel="recall", ylabel="precision", ylim=(0, 1.02), title=f"{split}: precision-recall"
    )
    axis.legend(loc="lower left")
    save(figure, "pr")
    return written


def save_figure(figure: Figure, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")


def _figure():
    figure = Figure(figsize=(4, 3.6))
    return figure, figure.subplots()


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv's rows (one per epoch) as numbers."""
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def save_learning_curves(history: list[dict[str, float]], path: Path, best_epoch: int | None):
    """Train against valid loss and balanced accuracy per epoch, the best epoch marked: what
    the notebook's user watched in W&B, as one PNG in the run directory."""
    figure = Figure(figsize=(8, 3.4))
    axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for axis, metric, title in (
        (axes[0], "loss", "loss"),
        (axes[1], "balanced_accuracy", "balanced accuracy"),
    ):
        for prefix, label in (("", "train"), ("val_", "valid")):
            if any(f"{prefix}{metric}" in row for row in history):
                values = [row.get(f"{prefix}{metric}", np.nan) for row in history]
                axis.plot(epochs, values, marker=".", label=label)
        if best_epoch is not None:
            axis.axvline(best_epoch, linestyle=":", color="grey", label=f"best epoch {best_epoch}")
        axis.set(xlabel="epoch", title=title)
        axis.legend(loc="best")
    save_figure(figure, path)


def save_grid_curves(curves_by_trial: dict[str, list[float]], best: str | None, path: Path):
    """Each trial's valid balanced accuracy per epoch, the best trial drawn bold; every epoch
    is a marker too, so that trials of one epoch (no line to draw) still show."""
    figure, axis = _figure()
    figure.set_size_inches(6, 4)
    for name, values in curves_by_trial.items():
        epochs = range(1, len(values) + 1)
        if name == best:
            axis.plot(epochs, values, color="C3", linewidth=2.5, marker="o",
                      label=f"best: trial {name}")  # fmt: skip
        else:
            axis.plot(epochs, values, color="grey", alpha=0.5, linewidth=1, marker=".")
    axis.set(xlabel="epoch", ylabel="valid balanced accuracy", title="grid: valid curves")
    if best is not None:
        axis.legend(loc="best")
    save_figure(figure, path)


def save_reliability(calibration: dict, path: Path) -> None:
    """The reliability diagram: each bin's share of yes against its mean P(yes) (the diagonal
    is a calibrated model), dots sized by the bin's rows, the expected calibration error in
    the title (kboolq.analysis.calibration)."""
    figure, axis = _figure()
    bins = calibration["bins"]
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="calibrated")
    sizes = [20 + 180 * b["rows"] / max(c["rows"] for c in bins) for b in bins]
    axis.plot([b["mean_p_yes"] for b in bins], [b["share_yes"] for b in bins], color="C0")
    axis.scatter([b["mean_p_yes"] for b in bins], [b["share_yes"] for b in bins], s=sizes,
                 color="C0", label="bins (size: rows)")  # fmt: skip
    ece = calibration["expected_calibration_error"]
    axis.set(xlabel="mean P(yes)", ylabel="share of yes", xlim=(0, 1), ylim=(0, 1),
             title=f"reliability (ECE {ece:.3f})")  # fmt: skip
    axis.legend(loc="upper left")
    save_figure(figure, path)
