import numpy as np
import pytest

from kboolq.evaluation import (
    BalancedAccuracy,
    MacroF1,
    average_precision,
    binary_report,
    confusion_matrix,
)

LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 1])
SCORES = np.array([0.9, 0.8, 0.4, 0.6, 0.7, 0.2, 0.1, 0.3])
# predicted at 0.5: 1 1 0 1 1 0 0 0 -> tp=3, fn=2, fp=1, tn=2


def test_confusion_matrix_by_hand():
    assert confusion_matrix(LABELS, SCORES >= 0.5) == [[2, 1], [2, 3]]


def test_report_by_hand():
    report = binary_report(LABELS, SCORES)
    assert report["accuracy"] == pytest.approx(5 / 8)
    assert report["precision"] == pytest.approx(3 / 4)
    assert report["recall"] == pytest.approx(3 / 5)
    assert report["balanced_accuracy"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    f1_yes, f1_no = 2 * 3 / (2 * 3 + 1 + 2), 2 * 2 / (2 * 2 + 2 + 1)
    assert report["macro_f1"] == pytest.approx((f1_yes + f1_no) / 2)
    expected_loss = -np.mean(LABELS * np.log(SCORES) + (1 - LABELS) * np.log(1 - SCORES))
    assert report["loss"] == pytest.approx(expected_loss)
    assert report["confusion_matrix"] == [[2, 1], [2, 3]]


def test_average_precision_by_hand():
    # ranked: 0.9(1) 0.8(1) 0.7(0) 0.6(1) 0.4(1) 0.3(1) 0.2(0) 0.1(0)
    # precision at each positive: 1, 1, 3/4, 4/5, 5/6; each recall step 1/5
    expected = (1 + 1 + 3 / 4 + 4 / 5 + 5 / 6) / 5
    assert average_precision(LABELS, SCORES) == pytest.approx(expected)
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie is one threshold
    assert average_precision([0, 0], [0.1, 0.2]) == 0.0


def test_always_yes_has_balanced_accuracy_one_half():
    report = binary_report(LABELS, np.ones(8))
    assert report["balanced_accuracy"] == 0.5
    assert report["macro_f1"] == pytest.approx((2 * 5 / (10 + 3)) / 2)


@pytest.mark.parametrize("metric_class", [BalancedAccuracy, MacroF1])
def test_keras_metrics_accumulate_over_batches_like_the_whole_split(metric_class):
    metric = metric_class()
    for start in range(0, 8, 3):
        metric.update_state(LABELS[start : start + 3].astype("float32"), SCORES[start : start + 3])
    key = "balanced_accuracy" if metric_class is BalancedAccuracy else "macro_f1"
    assert float(metric.result()) == pytest.approx(binary_report(LABELS, SCORES)[key], abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


# binary_report's figures as kboolq computed them by hand before they moved to scikit-learn
# (at 0950d4b, on these inputs): the move must not change them beyond 1e-9.
MIXED_LABELS = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1,
                0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0]  # fmt: skip
MIXED_P = [0.51, 0.47, 0.92, 0.63, 0.51, 0.5, 0.25, 0.01, 0.19, 0.69, 0.2, 0.37, 0.0, 0.83, 0.15,
           0.27, 0.88, 0.51, 0.85, 0.64, 0.74, 0.09, 0.54, 0.51, 0.87, 0.36, 0.6, 0.06, 0.39,
           0.32, 0.15, 0.82, 0.38, 0.98, 0.59, 0.61, 0.64, 0.68, 0.15, 0.44, 0.24, 0.4, 0.1,
           0.97, 0.22, 0.67, 0.3, 0.87, 0.66, 0.13]  # fmt: skip
BEFORE = {
    "mixed": ((MIXED_LABELS, MIXED_P), {
        "accuracy": 0.58, "balanced_accuracy": 0.5789049919484701,
        "macro_f1": 0.5784825371336813, "precision": 0.6153846153846154,
        "recall": 0.5925925925925926, "pr_auc": 0.5917935395688897,
        "loss": 1.1026438767391782, "confusion_matrix": [[13, 10], [11, 16]]}),
    "yes_only": (([1] * 6, [0.9, 0.2, 0.6, 0.6, 0.4, 0.99]), {
        "accuracy": 0.6666666666666666, "balanced_accuracy": 0.3333333333333333,
        "macro_f1": 0.4, "precision": 1.0, "recall": 0.6666666666666666, "pr_auc": 1.0,
        "loss": 0.6104651238919275, "confusion_matrix": [[0, 0], [2, 4]]}),
    "all_yes_predicted": (([0, 1, 0, 1, 1], [0.7, 0.8, 0.9, 0.6, 0.5]), {
        "accuracy": 0.6, "balanced_accuracy": 0.5, "macro_f1": 0.375, "precision": 0.6,
        "recall": 1.0, "pr_auc": 0.5333333333333333, "loss": 0.9867348505920255,
        "confusion_matrix": [[0, 2], [0, 3]]}),
    "no_only": (([0] * 4, [0.1, 0.7, 0.3, 0.3]), {
        "accuracy": 0.75, "balanced_accuracy": 0.375, "macro_f1": 0.42857142857142855,
        "precision": 0.0, "recall": 0.0, "pr_auc": 0.0, "loss": 0.5056708019653068,
        "confusion_matrix": [[3, 1], [0, 0]]}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BEFORE))
def test_the_report_on_scikit_learn_gives_the_figures_it_gave_before(case):
    (labels, p_yes), before = BEFORE[case]
    now = binary_report(np.array(labels), np.array(p_yes))
    assert now["confusion_matrix"] == before["confusion_matrix"]
    assert set(now) == set(before)
    for name, value in before.items():
        if name != "confusion_matrix":
            assert now[name] == pytest.approx(value, abs=1e-9, rel=0), name
