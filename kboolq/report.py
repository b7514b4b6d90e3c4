"""Human-facing output of a split's metrics: a text table and PNG plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAMES = ("accuracy", "balanced_accuracy", "macro_f1", "precision", "recall", "pr_auc", "loss")


def format_table(reports: dict[str, dict]) -> str:
    """Splits as columns, metrics as rows, then each split's confusion matrix."""
    splits = list(reports)
    lines = [f"{'':<18}" + "".join(f"{name:>10}" for name in splits)]
    for metric in NAMES:
        lines.append(f"{metric:<18}" + "".join(f"{reports[s][metric]:>10.4f}" for s in splits))
    for split in splits:
        (tn, fp), (fn, tp) = reports[split]["confusion_matrix"]
        lines.append(f"{split} confusion (rows: true no/yes; cols: predicted no/yes)")
        lines.append(f"    no  {tn:>6} {fp:>6}\n    yes {fn:>6} {tp:>6}")
    return "\n".join(lines)


def curve_points(labels: np.ndarray, scores: np.ndarray):
    order = np.argsort(-scores, kind="stable")
    labels = labels[order].astype(bool)
    tp = np.r_[0, np.cumsum(labels)]
    fp = np.r_[0, np.cumsum(~labels)]
    positives, negatives = max(labels.sum(), 1), max((~labels).sum(), 1)
    precision = np.divide(tp, tp + fp, out=np.ones(len(tp)), where=(tp + fp) > 0)
    return fp / negatives, tp / positives, precision


def save_plots(labels: np.ndarray, scores: np.ndarray, report: dict, out_dir: Path, split: str):
    """confusion_matrix, ROC and PR curve PNGs for one split; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kboolq.files import atomic_path

    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, dtype=float).ravel()
    fpr, tpr, precision = curve_points(labels, scores)
    written = []

    def save(figure, name):
        path = Path(out_dir) / f"{split}_{name}.png"
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(path)

    figure, axis = plt.subplots(figsize=(4, 3.6))
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

    figure, axis = plt.subplots(figsize=(4, 3.6))
    auc = float(np.trapezoid(tpr, fpr))
    axis.plot(fpr, tpr, label=f"ROC AUC {auc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{split}: ROC")
    axis.legend(loc="lower right")
    save(figure, "roc")

    figure, axis = plt.subplots(figsize=(4, 3.6))
    axis.plot(tpr, precision, label=f"PR AUC {report['pr_auc']:.3f}")
    axis.axhline(labels.mean(), linestyle=":", color="grey", label="always yes")
    axis.set(
        xlabel="recall", ylabel="precision", ylim=(0, 1.02), title=f"{split}: precision-recall"
    )
    axis.legend(loc="lower left")
    save(figure, "pr")
    return written
