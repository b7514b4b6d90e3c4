"""evaluate's error analysis (kboolq/analysis.py) on four rows worked out by hand."""

import numpy as np
import pytest

from kboolq.analysis import analyse, confident_errors, format_analysis
from kboolq.data.boolq import Row

ROWS = [
    Row("is the sky blue", "the sky is blue", 1, "f:1"),  # P .93: right
    Row("is it red", "grass is green", 0, "f:2"),  # P .85: wrong, the most confident
    Row("does it rain", "it rains a lot here today", 1, "f:3"),  # P .45: wrong
    Row("can cats fly", "cats can not fly at all no", 0, "f:4"),  # P .05: right
]
P_YES = np.array([0.93, 0.85, 0.45, 0.05])


def test_groups_by_first_word_length_and_overlap_by_hand():
    found = analyse(ROWS, P_YES, "fold")
    assert found["by_first_word"] == {
        # "is": labels 1 0, answers yes yes: one right; recall of yes 1, of no 0
        "is": {"rows": 2, "accuracy": 0.5, "balanced_accuracy": 0.5},
        # one yes answered no; the group has no "no": that class counts 0
        "does": {"rows": 1, "accuracy": 0.0, "balanced_accuracy": 0.0},
        "can": {"rows": 1, "accuracy": 1.0, "balanced_accuracy": 0.5},
    }
    # passage lengths 4 3 6 7 words: quartile edges 3.75, 5, 6.25
    assert list(found["by_passage_length"]) == [
        "Q1: 3-3 words", "Q2: 4-5 words", "Q3: 6-6 words", "Q4: 7-7 words",
    ]  # fmt: skip
    assert found["by_passage_length"]["Q2: 4-5 words"]["accuracy"] == 1.0  # the first row
    # question words in the passage: 4/4, 1/3 ("is"), 1/3 ("it"), 3/3
    assert found["by_question_words_in_passage"] == {
        "[25%, 50%)": {"rows": 2, "accuracy": 0.0, "balanced_accuracy": 0.0},
        "[75%, 100%]": {"rows": 2, "accuracy": 1.0, "balanced_accuracy": 1.0},
    }


def test_calibration_bins_and_expected_error_by_hand():
    calibration = analyse(ROWS, P_YES, "fold")["calibration"]
    # one row in each of the bins [0, .1), [.4, .5), [.8, .9), [.9, 1]
    assert [b["rows"] for b in calibration["bins"]] == [1, 1, 1, 1]
    assert [b["share_yes"] for b in calibration["bins"]] == [0.0, 1.0, 0.0, 1.0]
    assert [b["mean_p_yes"] for b in calibration["bins"]] == pytest.approx([0.05, 0.45, 0.85, 0.93])
    # (|0 - .05| + |1 - .45| + |0 - .85| + |1 - .93|) / 4
    assert calibration["expected_calibration_error"] == pytest.approx(1.52 / 4)


def test_the_most_confident_wrong_answers_come_first():
    errors = confident_errors(ROWS, P_YES, 0.5)
    assert [(e["where"], e["p_yes"], e["label"]) for e in errors] == [
        ("f:2", 0.85, False),
        ("f:3", 0.45, True),
    ]
    assert errors[0]["question"] == "is it red" and errors[0]["passage"] == "grass is green"


def test_the_text_table_names_each_group():
    text = format_analysis(analyse(ROWS, P_YES, "fold"))
    assert "  is                                   2    0.5000    0.5000" in text
    assert text.endswith("expected calibration error: 0.3800")
