import keras
import numpy as np
import pytest

from kboolq import fit
from kboolq.config import Config
from kboolq.data.batches import takes_chars, takes_stems
from kboolq.data.layout import Layout
from kboolq.errors import UserError
from kboolq.models.architectures import ARCHITECTURES, build_model
from kboolq.models.layers import (
    AttentionPooling,
    BiAttention,
    Compact,
    ExactMatch,
    HighwayGate,
    LayoutMask,
    SameCode,
)

pytestmark = pytest.mark.backend

LAYOUT = Layout(q_max=3, p_max=5, separator=2, word_chars=2)  # only --chars models read chars
DIM = 4


# every registered architecture, each one that reads --exact-match with both channels, and
# each one that reads --chars (with exact match, which then also compares characters)
MATCHING = ["bigru", "attention", "esim", "biattention"]  # the ones that read --exact-match
READING_CHARS = [name for name, architecture in ARCHITECTURES.items() if architecture.chars]
ARCHS = [
    *ARCHITECTURES,
    *(f"{name}+{match}" for name in MATCHING for match in ("match", "stem")),
    *(f"{name}+chars" for name in READING_CHARS),
]


def _model(**overrides):
    arch, _, match = overrides.pop("arch", "bigru").partition("+")
    if match == "chars":
        overrides["chars"] = 3
    overrides.setdefault(
        "exact_match", {"": "off", "match": "on", "stem": "stem", "chars": "on"}[match]
    )
    config = Config(hidden_size=8, arch=arch, **overrides)
    return build_model(config, LAYOUT, DIM)


def _inputs(rows=4, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, LAYOUT.steps, DIM)).astype(np.float32)
    lengths = np.stack([rng.integers(1, 4, rows), rng.integers(1, 6, rows)], axis=1).astype(
        np.int32
    )
    for i, (q, p) in enumerate(lengths):  # padding and separator hold zeros, as in real batches
        vectors[i, q : LAYOUT.passage_start] = 0
        vectors[i, LAYOUT.passage_start + p :] = 0
    return vectors, lengths


def _predict(model, vectors, lengths, stems=None):
    """P(yes); a model that compares stems gets `stems`, by default a two-class code from the
    sign of each vector's first feature (so noise at padding changes the codes there too)."""
    inputs = {"vectors": vectors, "lengths": lengths}
    if takes_stems(model) and stems is None:
        stems = np.where(vectors[..., 0] > 0, 1, 2).astype("int32")
    if takes_stems(model):
        inputs["stems"] = stems
    if takes_chars(model):  # six words, picked by the first feature (noise at padding too)
        inputs["words"] = (np.floor(np.abs(vectors[..., 0]) * 3) % 6).astype("int32")
        inputs["chars"] = np.array([[k + 1, k % 3 + 1] for k in range(6)], "int32")
    return keras.ops.convert_to_numpy(model(inputs)).ravel()


def test_layout_mask_by_hand():
    mask = LayoutMask(q_max=3, separator=2)(
        np.zeros((2, 10, 1), "float32"), np.array([[1, 2], [3, 5]])
    )
    assert keras.ops.convert_to_numpy(mask).astype(int).tolist() == [
        [1, 0, 0, 1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ]


def test_exact_match_by_hand():
    w1, w2, w3 = np.eye(3, dtype=np.float32) * 0.7  # three words' vectors
    a = np.stack([w1, w2, w3])[None]  # question: w1 w2, then padding that happens to hold w3
    b = np.stack([w2, w3, w1, np.zeros(3, np.float32)])[None]  # passage: w2 w3 w1, padding
    a_mask, b_mask = np.array([[1, 1, 0]], bool), np.array([[1, 1, 1, 0]], bool)
    a_in_b, b_in_a = ExactMatch()(a, a_mask, b, b_mask)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a_in_b)[0, :, 0], [1, 1, 0])
    # w3 occurs in the question only as padding: no match
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(b_in_a)[0, :, 0], [1, 0, 1, 0])


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_highway_gate_by_hand():
    gate = HighwayGate()
    x = np.array([[[1.0, 2.0]]], np.float32)  # (1, 1, 2)
    h = np.array([[[0.5]]], np.float32)  # one unit
    gate.build(x.shape, h.shape)
    gate.kernel.assign([[1.0, 0.0], [0.0, 0.5]])  # gate logit x0 = 1, transform logit x1/2 = 1
    gate.bias.assign([0.0, 0.0])
    g = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(_numpy(gate(x, h)), [[[g * 0.5 + (1 - g) * np.tanh(1.0)]]], 1e-6)


def test_bi_attention_by_hand():
    """Scores from the dot term alone (w_a = w_b = 0, w_ab = 1): a softmax over real positions."""
    a = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)  # (1, 2, 2)
    b = np.array([[[2.0, 0.0], [0.0, 1.0], [9.0, 9.0]]], np.float32)  # last position: padding
    a_mask, b_mask = np.array([[1, 1]], bool), np.array([[1, 1, 0]], bool)
    attention = BiAttention()
    attention.build(a.shape, a_mask.shape, b.shape, b_mask.shape)
    attention.w_a.assign([0.0, 0.0])
    attention.w_b.assign([0.0, 0.0])
    attention.w_ab.assign([1.0, 1.0])
    a_reads_b, b_reads_a = attention(a, a_mask, b, b_mask)
    scores = np.array([[2.0, 0.0], [0.0, 1.0]])  # a_i . b_j over the real b_j

    def softmax(x, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    np.testing.assert_allclose(_numpy(a_reads_b)[0], softmax(scores, 1) @ b[0, :2], 1e-5)
    expected = softmax(scores, 0).T @ a[0]
    np.testing.assert_allclose(_numpy(b_reads_a)[0, :2], expected, 1e-5)
    np.testing.assert_allclose(_numpy(b_reads_a)[0, 2], [0.0, 0.0])  # padding reads nothing


def test_attention_pooling_by_hand():
    pooling = AttentionPooling()
    sequence = np.array([[[1.0, 0.0], [0.0, 2.0], [50.0, 50.0]]], np.float32)
    real = np.array([[1, 1, 0]], bool)
    pooling.build(sequence.shape, real.shape)
    pooling.w.assign([np.log(3.0), 0.0])  # logits log 3 and 0: weights 3/4 and 1/4
    np.testing.assert_allclose(_numpy(pooling(sequence, real)), [[0.75, 0.5]], 1e-6)


def test_exact_match_changes_what_bigru_reads():
    vectors, lengths = _inputs(rows=2)
    vectors[:, LAYOUT.passage_start] = vectors[
        :, 0
    ]  # the first passage word repeats the question's
    with_match = _model(arch="bigru+match")
    probe = keras.Model(with_match.input, with_match.get_layer("exact_match").output)
    in_passage, in_question = probe.predict({"vectors": vectors, "lengths": lengths}, verbose=0)
    # each row's first question word is its first passage word; no other real word repeats
    np.testing.assert_array_equal(in_passage[..., 0], [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(in_question[..., 0], [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    assert "exact_match" not in [layer.name for layer in _model(arch="bigru").layers]
    assert with_match.count_params() > _model(arch="bigru").count_params()  # one more channel
    assert (
        _model(arch="question_only", exact_match="on").count_params()
        == _model(arch="question_only").count_params()
    )  # the question-only baseline never sees the passage


def test_same_code_by_hand():
    a = np.array([[[7], [3], [5]]], "int32")  # question stems: 7 3, then padding holding 5
    b = np.array([[[3], [5], [9], [7]]], "int32")  # passage stems: 3 5 9, then padding holding 7
    a_mask, b_mask = np.array([[1, 1, 0]], bool), np.array([[1, 1, 1, 0]], bool)
    a_in_b, b_in_a = SameCode()(a, a_mask, b, b_mask)
    # 7 occurs in the passage only as padding; 5 in the question only as padding
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a_in_b)[0, :, 0], [0, 1, 0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(b_in_a)[0, :, 0], [1, 0, 0, 0])


def test_stem_match_reads_the_stems_input():
    model = _model(arch="bigru+stem")
    assert takes_stems(model) and not takes_stems(_model(arch="bigru+match"))
    names = [layer.name for layer in model.layers]
    assert "stem_match" in names and "exact_match" in names
    assert model.count_params() > _model(arch="bigru+match").count_params()  # a second channel
    assert not takes_stems(_model(arch="question_only", exact_match="stem"))
    vectors, lengths = _inputs(rows=3)
    distinct = np.arange(LAYOUT.steps, dtype="int32")[None].repeat(3, axis=0) + 1  # no match
    shared = np.ones_like(distinct)  # every word shares every other word's stem
    assert not np.allclose(
        _predict(model, vectors, lengths, distinct),
        _predict(model, vectors, lengths, shared),
        atol=1e-4,
    )


def test_compact_moves_real_steps_to_the_front_by_hand():
    vectors = np.arange(10, dtype="float32").reshape(1, 10, 1).repeat(2, axis=0) + 1
    compact, real = Compact(q_max=3, separator=2)(vectors, np.array([[1, 2], [3, 5]]))
    # row 0: question word 1, separator at layout steps 3-4, passage words at steps 5-6
    assert keras.ops.convert_to_numpy(compact)[..., 0].tolist() == [
        [1, 4, 5, 6, 7, 0, 0, 0, 0, 0],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ]
    assert keras.ops.convert_to_numpy(real).astype(int).tolist() == [[1] * 5 + [0] * 5, [1] * 10]


def test_notebook_equals_keras_gru_over_the_layout_mask():
    """The compacted notebook model computes what keras.layers.GRU does over the gapped layout."""
    model = _model(arch="notebook", dropout=0.0, embedding_dropout=0.0)
    vectors_in = keras.Input((LAYOUT.steps, DIM))
    lengths_in = keras.Input((2,), dtype="int32")
    mask = LayoutMask(LAYOUT.q_max, LAYOUT.separator)(vectors_in, lengths_in)
    hidden = keras.layers.GRU(8, return_sequences=True)(vectors_in, mask=mask)
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.GRU(8)(hidden, mask=mask))
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    reference = keras.Model({"vectors": vectors_in, "lengths": lengths_in}, output)
    reference.set_weights(model.get_weights())
    vectors, lengths = _inputs(rows=6)
    np.testing.assert_allclose(
        _predict(model, vectors, lengths), _predict(reference, vectors, lengths), atol=1e-6
    )


def test_every_architecture_is_offered_by_fit():
    choices = next(a.choices for a in fit.parser()._actions if a.dest == "arch")
    assert set(choices) == {*ARCHITECTURES, "seed"}


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_and_range(arch):
    model = _model(arch=arch, embedding_dropout=0.2, dropout=0.1)
    vectors, lengths = _inputs(rows=5)
    probabilities = _predict(model, vectors, lengths)
    assert probabilities.shape == (5,)
    assert np.all((probabilities > 0) & (probabilities < 1))


@pytest.mark.parametrize("arch", ARCHS)
def test_prediction_is_independent_of_other_rows_in_the_batch(arch):
    model = _model(arch=arch)
    vectors, lengths = _inputs(rows=6)
    together = _predict(model, vectors, lengths)
    picked = [0, 2, 5]  # three rows alone (each call compiles anew under jax: 3 s a call)
    alone = np.array([_predict(model, vectors[i : i + 1], lengths[i : i + 1])[0] for i in picked])
    # cuDNN picks its algorithm by batch size: on a GPU sums are ordered differently (2e-6 seen)
    np.testing.assert_allclose(together[picked], alone, atol=1e-5)
    other_vectors, other_lengths = _inputs(rows=6, seed=1)
    mixed_vectors = np.concatenate([vectors[:1], other_vectors[1:]])
    mixed_lengths = np.concatenate([lengths[:1], other_lengths[1:]])
    assert _predict(model, mixed_vectors, mixed_lengths)[0] == pytest.approx(together[0], abs=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_values_do_not_change_predictions(arch):
    model = _model(arch=arch)
    vectors, lengths = _inputs(rows=4)
    before = _predict(model, vectors, lengths)
    noisy = vectors.copy()
    rng = np.random.default_rng(5)
    for i, (q, p) in enumerate(lengths):
        noisy[i, q : LAYOUT.q_max] = rng.normal(size=(LAYOUT.q_max - q, DIM))
        noisy[i, LAYOUT.passage_start + p :] = rng.normal(size=(LAYOUT.p_max - p, DIM))
    np.testing.assert_allclose(_predict(model, noisy, lengths), before, atol=1e-6)


def test_the_seed_model_reads_the_separator():
    model = _model(arch="notebook")
    vectors, lengths = _inputs(rows=4)
    before = _predict(model, vectors, lengths)
    shifted = vectors.copy()
    shifted[:, LAYOUT.q_max : LAYOUT.passage_start] = 1.0  # separator positions are real steps
    assert not np.allclose(_predict(model, shifted, lengths), before, atol=1e-4)


def test_question_only_ignores_the_passage_and_majority_ignores_everything():
    vectors, lengths = _inputs(rows=4)
    other, _ = _inputs(rows=4, seed=9)
    mixed = vectors.copy()
    mixed[:, LAYOUT.passage_start :] = other[:, LAYOUT.passage_start :]
    question_only = _model(arch="question_only")
    np.testing.assert_allclose(
        _predict(question_only, mixed, lengths),
        _predict(question_only, vectors, lengths),
        atol=1e-6,
    )
    majority = _model(arch="majority")
    assert np.ptp(_predict(majority, vectors, lengths)) == 0
    assert majority.count_params() == 1


@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_load_keep_predictions(arch, tmp_path):
    model = _model(arch=arch)
    vectors, lengths = _inputs(rows=3)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(
        _predict(loaded, vectors, lengths), _predict(model, vectors, lengths), atol=1e-6
    )


def test_bad_hyperparameters_are_user_errors():
    with pytest.raises(UserError, match="--arch 'transformer'"):
        Config(arch="transformer")
    with pytest.raises(UserError, match=r"--dropout must be in \[0, 1\)"):
        Config(dropout=1.5)
    with pytest.raises(UserError, match="--hidden must be at least 1"):
        Config(hidden_size=0)
    with pytest.raises(UserError, match="unknown hyperparameters: colour"):
        Config.from_dict({"colour": "red"})


def test_the_old_name_seed_is_the_notebook_architecture():
    assert Config(arch="seed").arch == "notebook"
    assert Config(arch="seed") == Config(arch="notebook")
