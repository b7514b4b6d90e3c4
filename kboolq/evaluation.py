"""How good a model is: metrics over whole splits, as numbers and as text tables.

The notebook averaged per-batch values, which is wrong for balanced accuracy and F1; both here
are computed over the whole epoch or split: scikit-learn's metrics for reports, stateful Keras
metrics (confusion counts accumulated over the epoch) in training.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from sklearn import metrics

from kboolq.data.batches import Batches
from kboolq.data.layout import Layout, Lookup, Prepared, Split
from kboolq.errors import UserError

NAMES = ("accuracy", "balanced_accuracy", "macro_f1", "precision", "recall", "pr_auc", "loss")

EPSILON = 1e-7  # Keras's clipping for binary cross-entropy, so reported losses match fit's


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """[[tn, fp], [fn, tp]] for 0/1 arrays."""
    matrix = metrics.confusion_matrix(
        np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool), labels=[False, True]
    )
    return matrix.astype(int).tolist()


def curves(labels: np.ndarray, scores: np.ndarray):
    """(fpr, tpr = recall, precision) at every distinct threshold, highest first, after the
    origin (0, 0, 1): tied scores form one point, as a threshold cannot split them (the ROC
    and PR plots draw both curves over the same thresholds)."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    tp = np.cumsum(sorted_labels)[last_of_tie]
    fp = np.cumsum(~sorted_labels)[last_of_tie]
    positives, negatives = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives], np.r_[1.0, tp / (tp + fp)]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum over distinct thresholds
    (scikit-learn's average precision); 0 for a split without a yes."""
    labels = np.asarray(labels).astype(bool).ravel()
    if not labels.any():
        return 0.0
    return float(metrics.average_precision_score(labels, np.asarray(scores, np.float64).ravel()))


def binary_report(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Every figure kboolq reports for one split, from labels and predicted P(yes). A class
    absent from the split scores 0 where it enters a mean (balanced accuracy, macro F1)."""
    labels = np.asarray(labels).astype(np.int64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    predicted = (probabilities >= threshold).astype(np.int64)
    both = {"labels": [0, 1], "zero_division": 0.0}
    # Keras's clipping, so that the reported loss is the one fit reports (not log_loss's)
    clipped = np.clip(probabilities, EPSILON, 1 - EPSILON)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(metrics.recall_score(labels, predicted, average="macro",
                                                        **both)),
        "macro_f1": float(metrics.f1_score(labels, predicted, average="macro", **both)),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0.0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0.0)),
        "pr_auc": average_precision(labels, probabilities),
        "loss": float(loss),
        "confusion_matrix": confusion_matrix(labels, predicted),
    }  # fmt: skip


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


def _on_hard_labels(metric: type[keras.metrics.Metric]) -> type[keras.metrics.Metric]:
    """`metric` with each target read as yes when it is at least 0.5, as BalancedAccuracy reads
    it: a distilled run's train targets are labels mixed with a teacher's answers (with
    --distill-weight up to 0.5, the side of 0.5 is the label), which Keras's own metrics would
    compare as they are (accuracy 0, PR AUC 1). Labels of 0 and 1 are unchanged."""

    class OnHardLabels(metric):
        def update_state(self, y_true, y_pred, sample_weight=None):
            hard = ops.cast(ops.convert_to_tensor(y_true) >= 0.5, "float32")
            return super().update_state(hard, y_pred, sample_weight)

    OnHardLabels.__name__ = OnHardLabels.__qualname__ = f"Hard{metric.__name__}"
    return keras.saving.register_keras_serializable(package="kboolq")(OnHardLabels)


HardBinaryAccuracy = _on_hard_labels(keras.metrics.BinaryAccuracy)
HardPrecision = _on_hard_labels(keras.metrics.Precision)
HardRecall = _on_hard_labels(keras.metrics.Recall)
HardAUC = _on_hard_labels(keras.metrics.AUC)


def training_metrics() -> list[keras.metrics.Metric]:
    return [
        HardBinaryAccuracy(name="accuracy"),
        BalancedAccuracy(),
        MacroF1(),
        HardPrecision(name="precision"),
        HardRecall(name="recall"),
        HardAUC(curve="PR", name="pr_auc"),
    ]


def predict_split(
    model: keras.Model, split: Split, lookup: Lookup, layout: Layout, batch_size: int
) -> np.ndarray:
    """P(yes) for every row of `split`, in the split's order (the batches take rows by length:
    kboolq.data.batches); never NaN (a damaged model is an error)."""
    if not len(split):
        return np.zeros(0, np.float32)
    batches = Batches.for_model(model, split, lookup, layout, batch_size)
    scores = np.empty(len(split), np.float32)
    scores[batches.order] = model.predict(batches, verbose=0).ravel()
    bad = ~np.isfinite(scores)
    if bad.any():
        raise UserError(
            f"the model gave no valid P(yes) (NaN or infinite) for {int(bad.sum())} of "
            f"{len(scores)} rows: its weights or the word vectors are damaged"
        )
    return scores


def evaluate_splits(model: keras.Model, prepared: Prepared, batch_size: int) -> dict[str, dict]:
    """The full report for each labelled split that is not the training split."""
    return {
        name: binary_report(
            split.labels, predict_split(model, split, prepared.lookup, prepared.layout, batch_size)
        )
        for name, split in prepared.splits.items()
        if name != "train"
    }


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


SPREAD_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def spread(reports: list[dict[str, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and sample standard deviation (ddof 1) over runs, per split and metric: a choice
    between settings should rest on differences larger than the seed-to-seed noise."""
    return {
        split: {
            metric: {
                "mean": float(np.mean(values := [r[split][metric] for r in reports])),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
            for metric in SPREAD_METRICS
        }
        for split in reports[0]
    }


def format_spread(members: dict, ensemble: dict[str, dict], n: int) -> str:
    """The members' mean +- std beside the ensemble, per split and metric."""
    lines = [f"{'':<18}{'split':>7}{f'{n} members: mean +- std':>26}{'ensemble':>10}{'gain':>8}"]
    for split, figures in members.items():
        for metric, m in figures.items():
            value = ensemble[split][metric]
            lines.append(
                f"{metric:<18}{split:>7}{m['mean']:>17.4f} +- {m['std']:.4f}"
                f"{value:>10.4f}{value - m['mean']:>+8.4f}"
            )
    return "\n".join(lines)
