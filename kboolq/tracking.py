"""Optional Weights & Biases logging through a plain Keras callback.

wandb's own Keras callbacks import TensorFlow, which kboolq does not have; this one logs epoch
metrics itself. wandb is imported only when tracking is asked for. Its local files go to
$WANDB_DIR when set, else the directory the command gives (the cache's wandb/ for fit, the
grid's own folder for a grid), never the current folder. When training ends, the run's summary
holds the best epoch's figures (the epoch early stopping kept): `accuracy` and the other
plain names are that epoch's valid values, as are their `val_` names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kboolq.errors import UserError
from kboolq.evaluation import curves
from kboolq.training import MONITOR


def start(
    config: dict[str, Any], directory: Path, name: str | None = None, group: str | None = None
):
    try:
        import wandb  # the optional tracking extra
    except ImportError:
        raise UserError("--wandb needs wandb: pip install 'kboolq[tracking]'") from None
    directory = Path(os.environ.get("WANDB_DIR") or directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(
            project="kboolq", config=config, name=name, group=group, dir=str(directory),
            reinit="finish_previous",
        )  # fmt: skip
    except Exception as exc:  # wandb raises its own error types for login/network problems
        raise UserError(
            f"could not start a W&B run ({exc}); WANDB_MODE=offline works offline"
        ) from None


def start_tracking(
    enabled: bool,
    config: dict[str, Any],
    directory: Path,
    name: str | None = None,
    group: str | None = None,
):
    """(W&B run or None, the callbacks that log each epoch to it): what fit and every grid trial
    add to their training."""
    if not enabled:
        return None, []
    run = start(config, directory, name=name, group=group)
    return run, [EpochLogger(run)]


class EpochLogger(keras.callbacks.Callback):
    """Each epoch's figures as they come; at the end, the best epoch's in the summary."""

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        figures = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        self.epochs.append(figures)
        self.run.log(figures)

    def on_train_end(self, logs: dict | None = None) -> None:
        scored = [e for e in self.epochs if MONITOR in e]
        if not scored:
            return
        best = max(scored, key=lambda e: e[MONITOR])  # the first of equals, as training keeps
        self.run.summary["best_epoch"] = best["epoch"]
        for key, value in best.items():
            if key.startswith("val_"):
                self.run.summary[key] = value
                self.run.summary[key.removeprefix("val_")] = value


def log_final(
    run, reports: dict[str, dict], labels: np.ndarray, scores: np.ndarray, model_path: Path | None
) -> None:
    """Final report: summary figures, valid confusion matrix and PR curve, one model artifact."""
    import wandb  # the optional tracking extra; start() has checked it is there

    for split, report in reports.items():
        for key, value in report.items():
            if key != "confusion_matrix":
                run.summary[f"{split}/{key}"] = value
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= 0.5).astype(int)
    _, recall, precision = curves(labels, scores)  # wandb's pr_curve needs scikit-learn
    curve = wandb.Table(
        columns=["recall", "precision"], data=list(zip(recall, precision, strict=True))
    )
    matrix = wandb.plot.confusion_matrix(
        y_true=labels.tolist(), preds=predicted.tolist(), class_names=["no", "yes"]
    )
    run.log(
        {
            "valid/confusion_matrix": matrix,
            "valid/pr_curve": wandb.plot.line(curve, "recall", "precision", title="valid PR"),
        }
    )
    if model_path is not None:
        artifact = wandb.Artifact(f"kboolq-{run.id}", type="model")
        artifact.add_file(str(model_path))
        run.log_artifact(artifact)
