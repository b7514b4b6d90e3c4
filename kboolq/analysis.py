"""Where a model fails on a split: accuracy and balanced accuracy by the question's first word,
by passage length and by the share of question words the passage repeats; its calibration
(reliability bins and expected calibration error); and its most confident wrong answers."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from sklearn import metrics
from sklearn.calibration import calibration_curve

from kboolq.data.boolq import Row
from kboolq.data.tokens import tokenize

FIRST_WORDS = 8  # the most common first words each get a group; the rest are "other"
OVERLAP_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)  # share of distinct question words in the passage
CALIBRATION_BINS = 10  # equal-width bins of P(yes)
ERRORS = 25  # the most confident wrong answers listed


def group_figures(labels: np.ndarray, predicted: np.ndarray, keys: Sequence[str]) -> dict:
    """{key: rows, accuracy, balanced accuracy} for each group of rows, in `keys`' first-seen
    order; balanced accuracy counts a class the group lacks as 0, as binary_report does."""
    keys = np.asarray(keys, dtype=object)
    found = {}
    for key in dict.fromkeys(keys.tolist()):
        chosen = keys == key
        truth, guess = labels[chosen], predicted[chosen]
        found[key] = {
            "rows": int(chosen.sum()),
            "accuracy": float(metrics.accuracy_score(truth, guess)),
            "balanced_accuracy": float(metrics.recall_score(
                truth, guess, labels=[0, 1], average="macro", zero_division=0.0)),
        }  # fmt: skip
    return found


def first_words(questions: list[list[str]]) -> list[str]:
    """Each question's first token, or "other" outside the FIRST_WORDS most common ones."""
    firsts = [tokens[0] if tokens else "" for tokens in questions]
    common = {word for word, _ in Counter(firsts).most_common(FIRST_WORDS) if word}
    return [word if word in common else "other" for word in firsts]


def length_quartiles(lengths: np.ndarray) -> list[str]:
    """Each passage's quartile of the split's passage lengths (in tokens), named by the whole
    numbers of words it holds (a length on a quartile's edge belongs to the lower one)."""
    edges = np.quantile(lengths, [0.25, 0.5, 0.75])
    quartile = np.searchsorted(edges, lengths, side="left")
    lows = [int(lengths.min()), *(math.floor(e) + 1 for e in edges)]
    highs = [*(math.floor(e) for e in edges), int(lengths.max())]
    names = [f"Q{q + 1}: {lows[q]}-{highs[q]} words" for q in range(4)]
    return [names[q] for q in quartile]


def overlap_shares(questions: list[list[str]], passages: list[list[str]]) -> np.ndarray:
    """The share of each question's distinct tokens that its passage contains."""
    return np.array([
        len(set(q) & set(p)) / len(set(q)) if q else 0.0
        for q, p in zip(questions, passages, strict=True)
    ])  # fmt: skip


def overlap_groups(shares: np.ndarray) -> list[str]:
    edges = OVERLAP_BINS
    names = [f"[{lo:.0%}, {hi:.0%}{']' if i == len(edges) - 2 else ')'}"
             for i, (lo, hi) in enumerate(zip(edges, edges[1:], strict=False))]  # fmt: skip
    index = np.clip(np.searchsorted(edges, shares, side="right") - 1, 0, len(names) - 1)
    return [names[i] for i in index]


def calibration(labels: np.ndarray, p_yes: np.ndarray) -> dict:
    """Reliability bins (scikit-learn's calibration_curve, uniform bins of P(yes)) and the
    expected calibration error: the bins' |share of yes - mean P(yes)| weighted by their rows."""
    share, mean_p = calibration_curve(labels, p_yes, n_bins=CALIBRATION_BINS, strategy="uniform")
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)  # calibration_curve's own bins
    counts = np.bincount(np.searchsorted(edges[1:-1], p_yes), minlength=CALIBRATION_BINS)
    rows = counts[counts > 0]  # calibration_curve drops the empty bins, in the same order
    return {
        "bins": [
            {"rows": int(n), "mean_p_yes": float(p), "share_yes": float(s)}
            for n, p, s in zip(rows, mean_p, share, strict=True)
        ],
        "expected_calibration_error": float(np.sum(rows * np.abs(share - mean_p)) / len(p_yes)),
    }


def confident_errors(rows: Sequence[Row], p_yes: np.ndarray, threshold: float) -> list[dict]:
    """The ERRORS wrong answers given with the most confidence (P(yes) farthest from the
    threshold on the wrong side), most confident first."""
    labels = np.array([row.label for row in rows])
    wrong = np.flatnonzero((p_yes >= threshold) != labels.astype(bool))
    order = wrong[np.argsort(-np.abs(p_yes[wrong] - threshold), kind="stable")][:ERRORS]
    return [
        {"where": rows[i].where, "question": rows[i].question, "passage": rows[i].passage,
         "label": bool(labels[i]), "p_yes": round(float(p_yes[i]), 6)}
        for i in order
    ]  # fmt: skip


def analyse(rows: Sequence[Row], p_yes: np.ndarray, accents: str, threshold: float = 0.5) -> dict:
    """The split's failures, grouped three ways, and its calibration (report.json's
    "analysis"); the rows are the split's, in the order of `p_yes`."""
    labels = np.array([row.label for row in rows], dtype=np.int64)
    p_yes = np.asarray(p_yes, dtype=np.float64)
    predicted = (p_yes >= threshold).astype(np.int64)
    questions = [tokenize(row.question, accents) for row in rows]
    passages = [tokenize(row.passage, accents) for row in rows]
    lengths = np.array([len(p) for p in passages])
    return {
        "by_first_word": group_figures(labels, predicted, first_words(questions)),
        "by_passage_length": dict(sorted(group_figures(
            labels, predicted, length_quartiles(lengths)).items())),
        "by_question_words_in_passage": dict(sorted(group_figures(
            labels, predicted, overlap_groups(overlap_shares(questions, passages))).items(),
            key=lambda kv: float(kv[0][1:].split("%")[0]))),
        "calibration": calibration(labels, p_yes),
    }  # fmt: skip


def format_analysis(analysis: dict) -> str:
    """The groups as a text table (rows, accuracy, balanced accuracy), then the ECE."""
    lines = [f"{'group':<34}{'rows':>6}{'accuracy':>10}{'balanced':>10}"]
    for title, key in (
        ("first word", "by_first_word"),
        ("passage", "by_passage_length"),
        ("question words in passage", "by_question_words_in_passage"),
    ):
        lines.append(f"{title}:")
        for name, g in analysis[key].items():
            lines.append(
                f"  {name:<32}{g['rows']:>6}{g['accuracy']:>10.4f}{g['balanced_accuracy']:>10.4f}"
            )
    ece = analysis["calibration"]["expected_calibration_error"]
    lines.append(f"expected calibration error: {ece:.4f}")
    return "\n".join(lines)
