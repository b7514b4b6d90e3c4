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
