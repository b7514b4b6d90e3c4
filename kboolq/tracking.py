"""Optional Weights & Biases logging through a plain Keras callback.

wandb's own Keras callbacks import TensorFlow, which kboolq does not have; this one logs epoch
metrics itself. wandb is imported only when tracking is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from kboolq.errors import UserError
from kboolq.evaluation import curves


def start(config: dict[str, Any], name: str | None = None, group: str | None = None):
    try:
        import wandb  # the optional tracking extra
    except ImportError:
        raise UserError("--wandb needs wandb: pip install 'kboolq[tracking]'") from None
    try:
        return wandb.init(project="kboolq", config=config, name=name, group=group, reinit=True)
    except Exception as exc:  # wandb raises its own error types for login/network problems
        raise UserError(
            f"could not start a W&B run ({exc}); WANDB_MODE=offline works offline"
        ) from None


def start_tracking(
    enabled: bool, config: dict[str, Any], name: str | None = None, group: str | None = None
):
    """(W&B run or None, the callbacks that log each epoch to it): what fit and every grid trial
    add to their training."""
    if not enabled:
        return None, []
    run = start(config, name=name, group=group)
    return run, [EpochLogger(run)]


class EpochLogger(keras.callbacks.Callback):
    def __init__(self, run) -> None:
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.run.log({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})


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
