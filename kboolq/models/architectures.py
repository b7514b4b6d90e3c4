"""The architectures, one registry: `--arch` names, their help and their builders.

Every builder maps the layout's inputs {"vectors": (B, T, D), "lengths": (B, 2)} to P(yes) of
shape (B, 1); T = q_max + separator + the batch's own passage part (at most p_max, cut on the
host: kboolq.data.batches), so a model takes any T. With --exact-match stem the models that
match words take one more input, "stems": (B, T), each position's stem class; with --chars two more,
"chars": (U, layout.word_chars), the characters of the batch's U distinct words, and "words":
(B, T), each position's row of "chars" (see kboolq.data.batches). Builders draw weights from the
global Keras seed (set it first) and return an uncompiled model: kboolq.training compiles it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import keras
from keras import layers

from kboolq.data.batches import CHARS, STEMS, WORDS
from kboolq.data.layout import CHAR_VOCABULARY, Layout
from kboolq.models.gru import FastGRU
from kboolq.models.layers import (
    AttentionPooling,
    Bias,
    BiAttention,
    CharCNN,
    Compact,
    ExactMatch,
    HighwayGate,
    MaskedPooling,
    SameCode,
    Segment,
)


class Config(Protocol):
    """What a builder reads of kboolq.config.Config, which imports this module (it checks
    --arch against the registry below): importing it back would make a circle."""

    arch: str
    hidden_size: int
    dropout: float
    embedding_dropout: float
    exact_match: str
    chars: int


def _inputs(layout: Layout, dim: int, stems: bool = False, chars: bool = False) -> dict:
    inputs = {
        "vectors": keras.Input(shape=(None, dim), name="vectors"),  # (B, T, D), T per batch
        "lengths": keras.Input(shape=(2,), dtype="int32", name="lengths"),  # (B, 2): q, p
    }
    if stems:
        inputs[STEMS] = keras.Input(shape=(None,), dtype="int32", name=STEMS)  # (B, T)
    if chars:
        if not layout.word_chars:
            raise ValueError("--chars needs data encoded with characters (layout.word_chars)")
        # (U, W): not batch-sized, a row per distinct word of the batch
        inputs[CHARS] = keras.Input(shape=(layout.word_chars,), dtype="int32", name=CHARS)
        inputs[WORDS] = keras.Input(shape=(None,), dtype="int32", name=WORDS)  # (B, T)
    return inputs


def _word_dropout(config: Config, layout: Layout, vectors):
    """Drops whole word vectors (all their features at once) while training."""
    if config.embedding_dropout == 0:
        return vectors
    rate, shape = config.embedding_dropout, (None, None, 1)
    return layers.Dropout(rate, noise_shape=shape, name="word_dropout")(vectors)


def _head(config: Config, features, dropout: float = 0.0):
    """The shared classifier: (B, F) -> [dropout] -> Dense(hidden, relu) -> Dense(1, sigmoid)."""
    hidden = layers.Dropout(dropout)(features) if dropout else features
    hidden = layers.Dense(config.hidden_size, activation="relu")(hidden)  # (B, H)
    return layers.Dense(1, activation="sigmoid", name="p_yes")(hidden)  # (B, 1)


def _model(config: Config, inputs: dict, output) -> keras.Model:
    return keras.Model(inputs, output, name=config.arch)


def build_notebook(config: Config, layout: Layout, dim: int) -> keras.Model:
    """The notebook's design, fed sequences: GRU -> GRU -> Dense(relu) -> Dense(sigmoid).

    Its dropout is the GRUs' input dropout, as in the notebook; the head has none.
    """
    inputs = _inputs(layout, dim)
    vectors, lengths = inputs["vectors"], inputs["lengths"]
    # (B, T, D) with question, separator and passage moved to the front; mask (B, T)
    compact, mask = Compact(layout.q_max, layout.separator, name="compact")(vectors, lengths)
    hidden = FastGRU(config.hidden_size, return_sequences=True, dropout=config.dropout)(
        _word_dropout(config, layout, compact), mask=mask
    )  # (B, T, H)
    hidden = FastGRU(config.hidden_size, dropout=config.dropout)(hidden, mask=mask)  # (B, H)
    return _model(config, inputs, _head(config, hidden))


def _matching_inputs(config: Config, layout: Layout, dim: int) -> dict:
    """The inputs of a model that matches words: with the stems input for --exact-match stem,
    the chars input for --chars."""
    return _inputs(layout, dim, stems=config.exact_match == "stem", chars=config.chars > 0)


def _parts(layout: Layout, sequence, lengths, suffix: str = ""):
    """(B, T, F) -> question (B, Q, F), its mask (B, Q), passage (B, P, F), its mask (B, P)."""
    question, q_mask = Segment(0, layout.q_max, 0, name=f"question{suffix}")(sequence, lengths)
    passage, p_mask = Segment(layout.passage_start, None, 1, name=f"passage{suffix}")(
        sequence, lengths
    )  # the rest of the batch's T: up to p_max
    return question, q_mask, passage, p_mask


def _matched_parts(config: Config, layout: Layout, inputs: dict, match: bool = True):
    """Question (B, Q, F) and passage (B, P, F) word vectors after word dropout, with their masks
    (B, Q) and (B, P). With --exact-match on (and `match`) each word vector gets one more
    channel: does the word occur in the other part; with 'stem' a second one: does a word of the
    same stem (both computed before word dropout, so a dropped word still says it matched).
    With --chars each word vector is joined by its character CNN vector (B, T, --chars) first,
    and exact match compares the words themselves (unknown words share the zero vector)."""
    vectors, lengths = inputs["vectors"], inputs["lengths"]
    words = vectors
    if config.chars:
        char_vectors = CharCNN(CHAR_VOCABULARY, config.chars, name="char_cnn")(
            inputs[CHARS], inputs[WORDS]
        )
        words = layers.Concatenate(name="words_and_chars")([vectors, char_vectors])
    dropped = _word_dropout(config, layout, words)
    question, q_mask, passage, p_mask = _parts(layout, dropped, lengths)
    matchers = []  # (layer, what it compares (B, T, F), name suffix of its parts)
    if match and config.exact_match in ("on", "stem") and config.chars:
        codes = layers.Reshape((-1, 1), name="word_steps")(inputs[WORDS])  # (B, T, 1)
        matchers.append((SameCode(name="exact_match"), codes, "_words"))
    elif match and config.exact_match in ("on", "stem"):
        matchers.append((ExactMatch(name="exact_match"), vectors, "_words"))
    if match and config.exact_match == "stem":
        stems = layers.Reshape((-1, 1), name="stem_steps")(inputs[STEMS])  # (B, T, 1)
        matchers.append((SameCode(name="stem_match"), stems, "_stems"))
    for matcher, compared, suffix in matchers:  # one more channel each: (B, L, D + 1), ...
        q_compared, _, p_compared, _ = _parts(layout, compared, lengths, suffix)
        q_in_p, p_in_q = matcher(q_compared, q_mask, p_compared, p_mask)
        question = layers.Concatenate()([question, q_in_p])
        passage = layers.Concatenate()([passage, p_in_q])
    return question, q_mask, passage, p_mask


def _encoded_parts(config: Config, layout: Layout, inputs: dict, match: bool = True):
    """_matched_parts read by one shared bidirectional GRU of H/2 units a direction: question
    (B, Q, H) and passage (B, P, H) states with their masks."""
    question, q_mask, passage, p_mask = _matched_parts(config, layout, inputs, match)
    units = max(config.hidden_size // 2, 1)
    encoder = layers.Bidirectional(FastGRU(units, return_sequences=True), name="encoder")
    return encoder(question, mask=q_mask), q_mask, encoder(passage, mask=p_mask), p_mask


def build_bigru(config: Config, layout: Layout, dim: int) -> keras.Model:
    """Shared BiGRU encoders, max+mean pooling, then [q; p; q*p; |q-p|] into a dense head."""
    inputs = _matching_inputs(config, layout, dim)
    question, q_mask, passage, p_mask = _encoded_parts(config, layout, inputs)
    q = MaskedPooling(name="question_pool")(question, q_mask)  # (B, 2H): max and mean
    p = MaskedPooling(name="passage_pool")(passage, p_mask)  # (B, 2H)
    absolute = layers.Maximum()([layers.Subtract()([q, p]), layers.Subtract()([p, q])])  # |q-p|
    features = layers.Concatenate()([q, p, layers.Multiply()([q, p]), absolute])  # (B, 8H)
    return _model(config, inputs, _head(config, features, config.dropout))


def build_attention(config: Config, layout: Layout, dim: int) -> keras.Model:
    """BiGRU encoders, passage-to-question attention fused as [p; a; p*a], a second BiGRU over
    the fused passage, and max+mean pooling of both sides."""
    inputs = _matching_inputs(config, layout, dim)
    question, q_mask, passage, p_mask = _encoded_parts(config, layout, inputs)
    attended = layers.Attention(name="cross_attention")([passage, question], mask=[p_mask, q_mask])
    fused = layers.Concatenate()([passage, attended, layers.Multiply()([passage, attended])])
    fused = layers.Dense(config.hidden_size, activation="relu", name="fuse")(fused)  # (B, P, H)
    units = max(config.hidden_size // 2, 1)
    modelled = layers.Bidirectional(FastGRU(units, return_sequences=True), name="modeller")(
        fused, mask=p_mask
    )  # (B, P, H)
    features = layers.Concatenate()(
        [MaskedPooling()(modelled, p_mask), MaskedPooling()(question, q_mask)]
    )  # (B, 4H)
    return _model(config, inputs, _head(config, features, config.dropout))


def build_esim(config: Config, layout: Layout, dim: int) -> keras.Model:
    """ESIM (Chen et al. 2017) over the bigru encoders: soft alignment both ways, enhancement
    [a; b; a-b; a*b] projected to H, one composition BiGRU for both sides, max+mean pooling of
    both into the dense head; dropout (--dropout) before the projection and the head."""
    inputs = _matching_inputs(config, layout, dim)
    question, q_mask, passage, p_mask = _encoded_parts(config, layout, inputs)
    # each passage word's soft-aligned question summary, and the other way: (B, P, H), (B, Q, H)
    p_aligned = layers.Attention(name="align_passage")([passage, question], mask=[p_mask, q_mask])
    q_aligned = layers.Attention(name="align_question")([question, passage], mask=[q_mask, p_mask])
    project = layers.Dense(config.hidden_size, activation="relu", name="project")
    units = max(config.hidden_size // 2, 1)
    compose = layers.Bidirectional(FastGRU(units, return_sequences=True), name="composition")
    pooled = []
    for states, aligned, mask in ((passage, p_aligned, p_mask), (question, q_aligned, q_mask)):
        enhanced = layers.Concatenate()(
            [
                states,
                aligned,
                layers.Subtract()([states, aligned]),
                layers.Multiply()([states, aligned]),
            ]
        )  # (B, L, 4H)
        if config.dropout:
            enhanced = layers.Dropout(config.dropout)(enhanced)
        composed = compose(project(enhanced), mask=mask)  # (B, L, H)
        pooled.append(MaskedPooling()(composed, mask))  # (B, 2H)
    features = layers.Concatenate()(pooled)  # (B, 4H)
    return _model(config, inputs, _head(config, features, config.dropout))


def _locked_dropout(rate: float, sequence):
    """Locked (variational) dropout: one mask per row and feature, the same at every step."""
    if not rate:
        return sequence
    return layers.Dropout(rate, noise_shape=(None, 1, sequence.shape[-1]))(sequence)


def _highway_bigru(config: Config, name: str):
    """A shared BiGRU of H/2 units a direction behind a highway gate from its input:
    (x (B, L, F), mask (B, L)) -> (B, L, H)."""
    units = max(config.hidden_size // 2, 1)
    recurrent = layers.Bidirectional(FastGRU(units, return_sequences=True), name=name)
    gate = HighwayGate(name=f"{name}_highway")
    return lambda x, mask: gate(x, recurrent(x, mask=mask))


def build_biattention(config: Config, layout: Layout, dim: int) -> keras.Model:
    """The recurrent model of the BoolQ paper (Clark et al. 2019), with GRUs: a shared highway
    BiGRU encoder, bi-attention fusion [x; a; x*a] of both parts, a second shared highway BiGRU,
    attention pooling of both parts and a dense head. Locked dropout (--dropout) on the
    encoder's inputs and the second layer's outputs, plain dropout after the dense layer."""
    inputs = _matching_inputs(config, layout, dim)
    question, q_mask, passage, p_mask = _matched_parts(config, layout, inputs)
    encode = _highway_bigru(config, "encoder")
    question = encode(_locked_dropout(config.dropout, question), q_mask)  # (B, Q, H)
    passage = encode(_locked_dropout(config.dropout, passage), p_mask)  # (B, P, H)
    p_reads_q, q_reads_p = BiAttention(name="bi_attention")(passage, p_mask, question, q_mask)
    model = _highway_bigru(config, "modeller")
    pool = AttentionPooling(name="attention_pool")
    pooled = []
    for states, read, mask in ((passage, p_reads_q, p_mask), (question, q_reads_p, q_mask)):
        fused = layers.Concatenate()([states, read, layers.Multiply()([states, read])])  # 3H
        modelled = _locked_dropout(config.dropout, model(fused, mask))  # (B, L, H)
        pooled.append(pool(modelled, mask))  # (B, H)
    hidden = layers.Dense(config.hidden_size, activation="relu")(layers.Concatenate()(pooled))
    if config.dropout:
        hidden = layers.Dropout(config.dropout)(hidden)
    return _model(config, inputs, layers.Dense(1, activation="sigmoid", name="p_yes")(hidden))


def build_question_only(config: Config, layout: Layout, dim: int) -> keras.Model:
    """Baseline that never reads the passage: how much the question alone gives away."""
    inputs = _inputs(layout, dim, chars=config.chars > 0)
    question, q_mask, _, _ = _encoded_parts(config, layout, inputs, match=False)
    features = MaskedPooling()(question, q_mask)  # (B, 2H)
    return _model(config, inputs, _head(config, features, config.dropout))


def build_majority(config: Config, layout: Layout, dim: int) -> keras.Model:
    """Baseline that reads nothing: one learned bias, i.e. the training base rate."""
    inputs = _inputs(layout, dim)
    return _model(config, inputs, Bias(name="p_yes")(inputs["lengths"]))  # (B, 1)


@dataclass(frozen=True)
class Architecture:
    build: Callable[[Config, Layout, int], keras.Model]
    help: str
    chars: bool = False  # can read --chars (a character CNN vector joined to each word's)


ARCHITECTURES: dict[str, Architecture] = {
    "bigru": Architecture(
        build_bigru,
        "shared BiGRU encoders + pooling (the best on valid so far)",
        chars=True,
    ),
    "notebook": Architecture(build_notebook, "the notebook's 2-layer GRU over the whole layout"),
    "attention": Architecture(build_attention, "BiGRU + passage-to-question attention", chars=True),
    "esim": Architecture(
        build_esim,
        "ESIM: two-way soft alignment, enhancement, composition",
        chars=True,
    ),
    "biattention": Architecture(
        build_biattention,
        "the BoolQ paper's recurrent model: highway BiGRUs around bi-attention fusion, "
        "attention pooling",
        chars=True,
    ),
    "question_only": Architecture(build_question_only, "baseline: the question alone", chars=True),
    "majority": Architecture(build_majority, "baseline: the training base rate"),
}


def build_model(config: Config, layout: Layout, dim: int) -> keras.Model:
    """The uncompiled model for config.arch; weights come from the global Keras seed."""
    return ARCHITECTURES[config.arch].build(config, layout, dim)
