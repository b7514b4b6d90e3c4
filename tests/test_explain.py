"""Word-level explanations (kboolq/explain.py): integrated gradients of P(yes) over the word
vectors, on a model planted to read one word, on every architecture and an ensemble, and
through predict --explain and serve's POST /explain."""

import json

import keras
import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ

from kboolq import predict
from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.data.boolq import read_rows
from kboolq.data.layout import Layout
from kboolq.data.tokens import tokenize
from kboolq.errors import UserError
from kboolq.explain import GAP, STEPS, explain, integrated_gradients
from kboolq.models.architectures import ARCHITECTURES, build_model
from kboolq.models.averaging import average
from kboolq.runs.api import load_run

TORCH_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="explanations run on the torch backend (kboolq.explain.check_backend refuses jax)",
)


def test_other_backends_are_refused_with_the_way_round(monkeypatch, trained, capsys):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(UserError) as refused:
        integrated_gradients(_planted(2, 0), {"vectors": np.ones((1, 2, 2), np.float32),
                                              "lengths": np.array([[1, 1]], np.int32)})  # fmt: skip
    assert str(refused.value) == (
        "explanations need the torch backend (KERAS_BACKEND=jax); run the command with "
        "KERAS_BACKEND=torch: the run itself loads on either"
    )
    argv = [str(trained[0]), "--question", "a", "--passage", "b", "--explain", "--cache-dir",
            str(trained[1])]  # fmt: skip
    assert predict.run_command(predict.main, "kboolq.predict")(argv) == 2
    assert capsys.readouterr().err == f"kboolq.predict: error: {refused.value}\n"


def _planted(dim: int, word: int) -> keras.Model:
    """P(yes) = sigmoid(3 * (how much of word `word`'s one-hot vector the row holds) - 1): a
    model that reads that one word and nothing else."""
    vectors = keras.Input((None, dim), name="vectors")
    lengths = keras.Input((2,), name="lengths", dtype="int32")
    reads = keras.layers.Dense(1, use_bias=False, name="reads")
    found = keras.ops.sum(reads(vectors), axis=1)  # (B, 1)
    unused = 0.0 * keras.ops.cast(lengths[:, :1], "float32")
    model = keras.Model({"vectors": vectors, "lengths": lengths},
                        keras.ops.sigmoid(3.0 * found - 1.0 + unused))  # fmt: skip
    weights = np.zeros((dim, 1), np.float32)
    weights[word] = 1.0
    model.get_layer("reads").set_weights([weights])
    return model


@TORCH_ONLY
def test_the_word_a_planted_model_reads_is_ranked_first():
    dim, blue = 6, 3
    rows = np.eye(dim, dtype=np.float32)[[0, 1, 2, blue, 4, 5]][None]  # six words, "blue" 4th
    inputs = {"vectors": rows, "lengths": np.array([[3, 3]], np.int32)}
    scores, p_yes, baseline = integrated_gradients(_planted(dim, blue), inputs)
    assert int(np.argmax(scores)) == 3
    np.testing.assert_allclose(np.delete(scores, 3), 0.0, atol=1e-7)  # no other word counts
    assert p_yes == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-6)  # sigmoid(3 - 1)
    assert baseline == pytest.approx(1 / (1 + np.exp(1.0)), abs=1e-3)  # sigmoid(-1), approached
    assert scores.sum() == pytest.approx(p_yes - baseline, abs=1e-3)


def _fixture_inputs(model, rows=3):
    layout = Layout(q_max=3, p_max=5, separator=2, word_chars=2)
    rng = np.random.default_rng(0)
    from kboolq.data.layout import Lookup, Split

    table = rng.normal(size=(12, 4)).astype(np.float32)
    table[0] = 0
    ids = np.zeros((rows, layout.steps), np.int64)
    q_len, p_len = np.array([2, 3, 1]), np.array([5, 2, 4])
    for i in range(rows):
        ids[i, : q_len[i]] = rng.integers(1, 12, q_len[i])
        start = layout.passage_start
        ids[i, start : start + p_len[i]] = rng.integers(1, 12, p_len[i])
    chars = rng.integers(1, 5, (12, 2)).astype(np.int32)
    lookup = Lookup(table, np.arange(12, dtype=np.int32), chars)
    split = Split(ids, q_len.astype(np.int32), p_len.astype(np.int32), np.zeros(rows, np.int8))
    return Batches.for_model(model, split, lookup, layout, 1)


@TORCH_ONLY
@pytest.mark.parametrize("arch", [*ARCHITECTURES, "ensemble"])
def test_every_architecture_and_an_ensemble_is_explained_within_the_gap(arch):
    layout = Layout(q_max=3, p_max=5, separator=2, word_chars=2)

    def model_of(name, seed):
        keras.utils.set_random_seed(seed)
        chars = 3 if name in ("bigru", "esim") else 0
        return build_model(Config(arch=name, hidden_size=4, chars=chars), layout, 4)

    if arch == "ensemble":
        model = average([model_of("bigru", 0), model_of("esim", 1)])
    else:
        model = model_of(arch, 0)
    batches = _fixture_inputs(model)
    for index in range(len(batches)):
        inputs, _ = batches[index]
        scores, p_yes, baseline = integrated_gradients(model, inputs)
        assert np.isfinite(scores).all()
        assert abs(scores.sum() - (p_yes - baseline)) <= GAP, arch


@TORCH_ONLY
def test_explain_a_trained_run_word_by_word(trained):
    run = load_run(*trained)
    rows = read_rows(FIXTURE_BOOLQ / "train.jsonl")[:4]
    found = explain(run, rows)
    np.testing.assert_allclose([f["p_yes"] for f in found], run.predict(rows), atol=1e-5)
    for row, f in zip(rows, found, strict=True):
        assert f["steps"] == STEPS and abs(f["completeness_gap"]) <= GAP
        words = [w["word"] for w in f["question"]]
        assert words == [
            t for t in row.question.lower().rstrip("?").split() if t in run.glove.index
        ]
        total = sum(w["score"] for w in [*f["question"], *f["passage"]])
        assert total == pytest.approx(f["p_yes"] - f["baseline_p_yes"] + f["completeness_gap"])


@TORCH_ONLY
def test_predict_explain_prints_each_words_score(trained, capsys):
    run_dir, cache = trained
    run = load_run(*trained)
    row = read_rows(FIXTURE_BOOLQ / "train.jsonl")[1]
    argv = [str(run_dir), "--question", row.question, "--passage", row.passage, "--explain",
            "--cache-dir", str(cache)]  # fmt: skip
    assert predict.main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    explanation = answer["explanation"]
    accents = run.info.data.accents
    assert [w["word"] for w in explanation["question"]] == [
        t for t in tokenize(row.question, accents) if t in run.glove.index
    ]
    passage = [t for t in tokenize(row.passage, accents) if t in run.glove.index]
    p_max = run.info.layout.p_max
    if len(passage) > p_max:  # the layout's last position averages the rest
        passage = [*passage[: p_max - 1], f"(the last {len(passage) - p_max + 1} words, averaged)"]
    assert [w["word"] for w in explanation["passage"]] == passage
    assert explanation["p_yes"] == pytest.approx(answer["p_yes"], abs=1e-5)
