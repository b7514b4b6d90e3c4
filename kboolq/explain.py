"""Which words drove an answer: integrated gradients (Sundararajan et al., 2017) of P(yes) over
the input word vectors, against the padding vector (zeros) at every position.

A word's score is (its vector - the baseline) . the mean gradient of P(yes) along the straight
path from the baseline to the row (STEPS midpoints); the scores sum to P(yes) - P(yes at the
baseline) up to the completeness gap, which is reported with them. Only the word vectors move
along the path: lengths, stem classes and characters stay the row's own. So do exact matches:
a model computes them from the vectors, scaled vectors keep them, but zero vectors would all
match each other, a jump at the very end of the path. The baseline's P(yes) is therefore taken
where the path starts, at BASELINE_SCALE of the row's vectors. An ensemble is one model
averaging its members, so it is explained the same way. An ensemble whose members read
different vectors (an OpenMix) is explained member by member: a word's score is the weighted
sum of the scores its members give it (0 from a member that does not read it; a member's
averaged passage tail shares its score equally among the words it averages), so the scores
still sum to P(yes) - P(yes at the baseline), both the members' weighted means.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import torch

from kboolq.data.batches import Batches
from kboolq.data.boolq import Row, parse_row
from kboolq.data.layout import Layout
from kboolq.data.tokens import tokenize
from kboolq.errors import UserError
from kboolq.runs.api import OpenMix, OpenRun, leaves

STEPS = 64  # path midpoints: the gap stayed within GAP on 20 real valid rows (max 0.015)
GAP = 0.02  # the completeness tolerance stated (and tested) for STEPS steps
BASELINE_SCALE = 1e-4  # the path's start: the padding vector, approached (see the module)
VECTORS = "vectors"


def check_explainable(run: OpenRun | OpenMix) -> None:
    """What explain cannot do, refused before any row is read: an ensemble whose members
    tokenize differently (their words do not line up; a fault of the run, so named first on any
    backend), then the jax backend (check_backend)."""
    if isinstance(run, OpenMix):
        accents = {member.info.data.accents for member, _ in leaves(run)}
        if len(accents) > 1:
            raise UserError(
                f"{run.path.name}: its members tokenize with --accents "
                f"{' and '.join(sorted(accents))}, so their words do not line up; explain one "
                "of its members (members.json lists them)"
            )
    check_backend()


def check_backend() -> None:
    """Explanations run on the torch backend: on jax, a GRU's gradient compiles for about a
    minute a row on this CPU, so it is refused with the way round it."""
    if keras.backend.backend() != "torch":
        raise UserError(
            f"explanations need the torch backend (KERAS_BACKEND={keras.backend.backend()}); "
            "run the command with KERAS_BACKEND=torch: the run itself loads on either"
        )


def _gradients(model: keras.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """d sum(P(yes)) / d inputs["vectors"] for a batch (the torch backend)."""
    tensors = {k: torch.as_tensor(v) for k, v in inputs.items()}
    vectors = tensors[VECTORS].clone().requires_grad_(True)
    with torch.enable_grad():
        total = model({**tensors, VECTORS: vectors}, training=False).sum()
        # a model that reads no vector (the majority baseline): every gradient zero
        (grad,) = torch.autograd.grad(total, vectors, allow_unused=True, materialize_grads=True)
    return grad.detach().cpu().numpy()


def _p_yes(model: keras.Model, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(inputs, training=False)).reshape(-1)


def integrated_gradients(
    model: keras.Model, inputs: dict[str, np.ndarray], steps: int = STEPS
) -> tuple[np.ndarray, float, float]:
    """(score per position (T,), P(yes), P(yes) at the baseline) for one row's inputs (batch 1):
    the baseline is the zero (padding) vector at every position, approached (BASELINE_SCALE)."""
    check_backend()
    vectors = np.asarray(inputs[VECTORS], np.float32)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)[:, None, None]
    path = {k: np.repeat(np.asarray(v), steps, axis=0) for k, v in inputs.items()}
    path[VECTORS] = alphas * vectors  # baseline + alpha * (row - baseline), baseline zeros
    grads = np.zeros_like(vectors[0])
    for start in range(0, steps, 8):  # 8 path points per call: memory stays that of 8 rows
        part = {k: v[start : start + 8] for k, v in path.items()}
        grads += _gradients(model, part).sum(axis=0)
    scores = (vectors[0] * grads / steps).sum(axis=-1)
    p_yes = float(_p_yes(model, inputs)[0])
    baseline = float(_p_yes(model, {**inputs, VECTORS: vectors * BASELINE_SCALE})[0])
    return scores, p_yes, baseline


def _kept(text: str, run: OpenRun) -> list[str]:
    """The tokens of `text` the layout keeps, in order (the encoder's rule): known words, and
    unknown ones too for a run that reads characters."""
    tokens = tokenize(text, run.info.data.accents)
    if run.info.layout.word_chars:
        return tokens
    return [t for t in tokens if t in run.glove.index]


def _words(row: Row, run: OpenRun, layout: Layout, scores: np.ndarray, q_len: int, p_len: int):
    """(question words, passage words), each [{"word", "score"}] in the row's order; a
    passage longer than the layout ends in one averaged position, named for the words it holds."""
    question = _kept(row.question, run)[: layout.q_max]
    passage = _kept(row.passage, run)
    if len(passage) > layout.p_max:
        tail = len(passage) - layout.p_max + 1
        passage = [*passage[: layout.p_max - 1], f"(the last {tail} words, averaged)"]
    start = layout.passage_start
    return (
        [{"word": w, "score": float(scores[i])} for i, w in enumerate(question[:q_len])],
        [{"word": w, "score": float(scores[start + i])} for i, w in enumerate(passage[:p_len])],
    )


def explain(run: OpenRun | OpenMix, rows: Sequence[Row | dict], steps: int = STEPS) -> list[dict]:
    """Per row: P(yes), P(yes) at the baseline, the steps, the completeness gap and each
    question and passage word's score (integrated gradients, see the module)."""
    if isinstance(run, OpenMix):
        return _explain_mix(run, rows, steps)
    encoded = run.encode(rows)
    split = encoded.splits["rows"]
    batches = Batches.for_model(run.model, split, encoded.lookup, encoded.layout, 1)
    parsed = [
        row if isinstance(row, Row) else parse_row(row, f"row {i}", labelled=False)
        for i, row in enumerate(rows)
    ]  # as OpenRun.encode parses them
    found: list[dict] = [{} for _ in rows]
    for index in range(len(batches)):
        inputs, _ = batches[index]
        (row_index,) = batches.batches[index]
        scores, p_yes, baseline = integrated_gradients(run.model, inputs, steps)
        question, passage = _words(
            parsed[row_index], run, encoded.layout, scores,
            int(split.q_len[row_index]), int(split.p_len[row_index]),
        )  # fmt: skip
        found[row_index] = {
            "p_yes": p_yes,
            "baseline_p_yes": baseline,
            "steps": steps,
            "completeness_gap": float(scores.sum() - (p_yes - baseline)),
            "question": question,
            "passage": passage,
        }
    return found


def _explain_mix(run: OpenMix, rows: Sequence[Row | dict], steps: int) -> list[dict]:
    """explain for an ensemble whose members read different vectors (see the module)."""
    parsed = [
        row if isinstance(row, Row) else parse_row(row, f"row {i}", labelled=False)
        for i, row in enumerate(rows)
    ]
    accents = run.info.data.accents
    found: list[dict] = []
    each = [(member, weight, explain(member, parsed, steps)) for member, weight in leaves(run)]
    for index, row in enumerate(parsed):
        answer = {"p_yes": 0.0, "baseline_p_yes": 0.0, "steps": steps}
        for part, text in (("question", row.question), ("passage", row.passage)):
            tokens = tokenize(text, accents)
            scores, read = np.zeros(len(tokens)), np.zeros(len(tokens), bool)
            for member, weight, explained in each:
                own = explained[index][part]
                reads_all = bool(member.info.layout.word_chars)  # unknown words too
                kept = [i for i, t in enumerate(tokens) if reads_all or t in member.glove.index]
                for place, entry in enumerate(own):
                    covers = kept[place : place + 1]
                    if part == "passage" and place == len(own) - 1 and len(kept) > len(own):
                        covers = kept[place:]  # the averaged tail: an equal share each
                    scores[covers] += weight * entry["score"] / len(covers)
                    read[covers] = True
            answer[part] = [
                {"word": t, "score": float(scores[i])} for i, t in enumerate(tokens) if read[i]
            ]
        for _, weight, explained in each:
            answer["p_yes"] += weight * explained[index]["p_yes"]
            answer["baseline_p_yes"] += weight * explained[index]["baseline_p_yes"]
        total = sum(w["score"] for part in ("question", "passage") for w in answer[part])
        answer["completeness_gap"] = total - (answer["p_yes"] - answer["baseline_p_yes"])
        found.append(answer)
    return found
