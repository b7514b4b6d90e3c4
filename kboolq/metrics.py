"""Binary classification metrics over whole splits: numpy for reports, stateful Keras for training.

The notebook averaged per-batch values, which is wrong for balanced accuracy and F1; both here
accumulate the confusion counts over the whole epoch or split first.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

EPSILON = 1e-7  # Keras's clipping for binary cross-entropy, so reported losses match fit's


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """[[tn, fp], [fn, tp]] for 0/1 arrays."""
    labels, predicted = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
    return [
        [int(np.sum(~labels & ~predicted)), int(np.sum(~labels & predicted))],
        [int(np.sum(labels & ~predicted)), int(np.sum(labels & predicted))],
    ]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum over distinct thresholds."""
    labels = np.asarray(labels).astype(bool)
    positives = labels.sum()
    if positives == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores, sorted_labels = np.asarray(scores)[order], labels[order]
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    tp = np.cumsum(sorted_labels)[last_of_tie]
    predicted = (np.arange(1, len(labels) + 1))[last_of_tie]
    precision, recall = tp / predicted, tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_report(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Every figure kboolq reports for one split, from labels and predicted P(yes)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    (tn, fp), (fn, tp) = matrix = confusion_matrix(labels, probabilities >= threshold)
    clipped = np.clip(probabilities, EPSILON, 1 - EPSILON)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1_yes = _ratio(2 * tp, 2 * tp + fp + fn)
    f1_no = _ratio(2 * tn, 2 * tn + fn + fp)
    return {
        "accuracy": _ratio(tp + tn, len(labels)),
        "balanced_accuracy": (recall + _ratio(tn, tn + fp)) / 2,
        "macro_f1": (f1_yes + f1_no) / 2,
        "precision": precision,
        "recall": recall,
        "pr_auc": average_precision(labels, probabilities),
        "loss": float(loss),
        "confusion_matrix": matrix,
    }


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates tp/fp/tn/fn over every batch of an epoch; subclasses combine them."""

    def __init__(self, threshold: float = 0.5, name: str | None = None, dtype=None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.counts = {
            key: self.add_variable(shape=(), initializer="zeros", name=key)
            for key in ("tp", "fp", "tn", "fn")
        }

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        actual = ops.reshape(y_true, (-1,)) >= 0.5
        predicted = ops.reshape(y_pred, (-1,)) >= self.threshold
        for key, hit in (
            ("tp", actual & predicted),
            ("fp", ~actual & predicted),
            ("tn", ~actual & ~predicted),
            ("fn", actual & ~predicted),
        ):
            self.counts[key].assign_add(ops.sum(ops.cast(hit, self.dtype)))

    def reset_state(self) -> None:
        for variable in self.counts.values():
            variable.assign(ops.zeros((), dtype=self.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="kboolq")
class BalancedAccuracy(_ConfusionMetric):
    def __init__(self, threshold: float = 0.5, name: str = "balanced_accuracy", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype)

    def result(self):
        c = self.counts
        yes = ops.divide_no_nan(c["tp"], c["tp"] + c["fn"])
        no = ops.divide_no_nan(c["tn"], c["tn"] + c["fp"])
        return (yes + no) / 2


@keras.saving.register_keras_serializable(package="kboolq")
class MacroF1(_ConfusionMetric):
    def __init__(self, threshold: float = 0.5, name: str = "macro_f1", dtype=None):
        super().__init__(threshold, name=name, dtype=dtype)

    def result(self):
        c = self.counts
        yes = ops.divide_no_nan(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])
        no = ops.divide_no_nan(2 * c["tn"], 2 * c["tn"] + c["fn"] + c["fp"])
        return (yes + no) / 2


def training_metrics() -> list[keras.metrics.Metric]:
    return [
        keras.metrics.BinaryAccuracy(name="accuracy"),
        BalancedAccuracy(),
        MacroF1(),
        keras.metrics.Precision(name="precision"),
        keras.metrics.Recall(name="recall"),
        keras.metrics.AUC(curve="PR", name="pr_auc"),
    ]
