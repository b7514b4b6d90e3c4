import numpy as np

from kboolq.ensemble import greedy_select


def test_greedy_selection_by_hand():
    labels = np.array([1, 1, 0, 0])
    members = [
        np.array([0.9, 0.4, 0.1, 0.6]),  # alone: balanced accuracy 0.5
        np.array([0.6, 0.6, 0.7, 0.2]),  # 0.75, first of the two best
        np.array([0.2, 0.7, 0.3, 0.3]),  # 0.75
        np.array([0.4, 0.4, 0.6, 0.6]),  # 0.0
    ]
    # B, then A (B+A: 1.0; B+C: 0.5; B+D: 0.75); adding C keeps 1.0, which is no improvement
    assert greedy_select(labels, members) == [1, 0]


def test_greedy_selection_keeps_two_members_even_when_the_second_hurts():
    labels = np.array([1, 0])
    assert greedy_select(labels, [np.array([0.9, 0.1]), np.array([0.1, 0.9])]) == [0, 1]
