"""Keras functional models over the preprocessed layout; `--arch` picks one of ARCHITECTURES."""

from __future__ import annotations

import keras
from keras import layers, ops

from kboolq.config import Config
from kboolq.gru import FastGRU
from kboolq.metrics import training_metrics
from kboolq.preprocess import Layout


@keras.saving.register_keras_serializable(package="kboolq")
class LayoutMask(layers.Layer):
    """True at real question words, the separator and real passage words; False at padding.

    Masking(0.0) would also hide the all-zero separator vectors, so the mask is built from the
    row lengths and the layout instead of from the vectors.
    """

    def __init__(self, q_max: int, separator: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.q_max = q_max
        self.separator = separator

    def call(self, vectors, lengths):
        positions = ops.expand_dims(ops.arange(ops.shape(vectors)[1], dtype="int32"), 0)
        lengths = ops.cast(lengths, "int32")
        question = positions < lengths[:, :1]
        passage_end = self.q_max + self.separator + lengths[:, 1:2]
        return question | ((positions >= self.q_max) & (positions < passage_end))

    def compute_output_spec(self, vectors, lengths):
        return keras.KerasTensor(vectors.shape[:2], dtype="bool")

    def get_config(self) -> dict:
        return {**super().get_config(), "q_max": self.q_max, "separator": self.separator}


@keras.saving.register_keras_serializable(package="kboolq")
class Compact(layers.Layer):
    """The layout's real steps moved to the front: question, separator, passage, then padding.

    A masked GRU skips padding, so reading the compacted rows with a trailing-padding mask is
    the same computation as reading the layout with LayoutMask's gapped mask; the fused kernel
    then reads each row's prefix without any gathers in the gradient path.
    """

    def __init__(self, q_max: int, separator: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.q_max = q_max
        self.separator = separator

    def call(self, vectors, lengths):
        steps = ops.shape(vectors)[1]
        positions = ops.expand_dims(ops.arange(steps, dtype="int32"), 0)
        lengths = ops.cast(lengths, "int32")
        question = lengths[:, :1]
        source = ops.where(positions < question, positions, positions - question + self.q_max)
        source = ops.minimum(source, steps - 1)
        real = positions < question + self.separator + lengths[:, 1:2]
        moved = ops.take_along_axis(vectors, ops.expand_dims(source, -1), axis=1)
        return moved * ops.cast(ops.expand_dims(real, -1), vectors.dtype), real

    def compute_output_spec(self, vectors, lengths):
        return (
            keras.KerasTensor(vectors.shape, dtype=vectors.dtype),
            keras.KerasTensor(vectors.shape[:2], dtype="bool"),
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "q_max": self.q_max, "separator": self.separator}


@keras.saving.register_keras_serializable(package="kboolq")
class Segment(layers.Layer):
    """One part of the layout (question or passage) and its padding mask, from the row lengths."""

    def __init__(self, start: int, steps: int, column: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start, self.steps, self.column = start, steps, column

    def call(self, vectors, lengths):
        part = vectors[:, self.start : self.start + self.steps]
        positions = ops.expand_dims(ops.arange(self.steps, dtype="int32"), 0)
        return part, positions < ops.cast(lengths, "int32")[:, self.column : self.column + 1]

    def compute_output_spec(self, vectors, lengths):
        batch, _, features = vectors.shape
        return (
            keras.KerasTensor((batch, self.steps, features), dtype=vectors.dtype),
            keras.KerasTensor((batch, self.steps), dtype="bool"),
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "start": self.start,
            "steps": self.steps,
            "column": self.column,
        }


@keras.saving.register_keras_serializable(package="kboolq")
class MaskedPooling(layers.Layer):
    """Max and mean over the real steps only, concatenated: padding never enters the summary."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True  # consumes the mask; the pooled output has none

    def compute_mask(self, *args, **kwargs):
        return None

    def call(self, sequence, real):
        weights = ops.cast(ops.expand_dims(real, -1), sequence.dtype)
        count = ops.sum(weights, axis=1)
        mean = ops.sum(sequence * weights, axis=1) / ops.maximum(count, 1.0)
        highest = ops.max(ops.where(weights > 0, sequence, -1e9), axis=1)
        highest = ops.where(count > 0, highest, 0.0)
        return ops.concatenate([highest, mean], axis=-1)

    def compute_output_shape(self, sequence_shape, real_shape):
        return (sequence_shape[0], 2 * sequence_shape[2])


@keras.saving.register_keras_serializable(package="kboolq")
class Bias(layers.Layer):
    """A learned constant P(yes) for every row: the majority-class baseline in the same harness."""

    def build(self, lengths_shape) -> None:
        self.logit = self.add_weight(shape=(1,), initializer="zeros", name="logit")

    def call(self, lengths):
        return ops.sigmoid(ops.zeros_like(ops.cast(lengths[:, :1], "float32")) + self.logit)

    def compute_output_shape(self, lengths_shape):
        return (lengths_shape[0], 1)


def _inputs(layout: Layout, dim: int):
    vectors = keras.Input(shape=(layout.steps, dim), name="vectors")
    lengths = keras.Input(shape=(2,), dtype="int32", name="lengths")
    return vectors, lengths


def _word_dropout(config: Config, layout: Layout, vectors):
    """Drops whole word vectors (all their features at once) while training."""
    if config.embedding_dropout == 0:
        return vectors
    rate, shape = config.embedding_dropout, (None, layout.steps, 1)
    return layers.Dropout(rate, noise_shape=shape, name="word_dropout")(vectors)


def _model(config: Config, vectors, lengths, features) -> keras.Model:
    hidden = layers.Dropout(config.dropout)(features) if config.dropout else features
    hidden = layers.Dense(config.hidden_size, activation="relu")(hidden)
    output = layers.Dense(1, activation="sigmoid", name="p_yes")(hidden)
    return keras.Model({"vectors": vectors, "lengths": lengths}, output, name=config.arch)


def build_seed(config: Config, layout: Layout, dim: int) -> keras.Model:
    """The notebook's design, fed sequences: GRU -> GRU -> Dense(relu) -> Dense(sigmoid)."""
    vectors, lengths = _inputs(layout, dim)
    compact, mask = Compact(layout.q_max, layout.separator, name="compact")(vectors, lengths)
    hidden = FastGRU(config.hidden_size, return_sequences=True, dropout=config.dropout)(
        _word_dropout(config, layout, compact), mask=mask
    )
    hidden = FastGRU(config.hidden_size, dropout=config.dropout)(hidden, mask=mask)
    hidden = layers.Dense(config.hidden_size, activation="relu")(hidden)
    output = layers.Dense(1, activation="sigmoid", name="p_yes")(hidden)
    return keras.Model({"vectors": vectors, "lengths": lengths}, output, name=config.arch)


def _encoded_parts(config: Config, layout: Layout, dim: int):
    """Question and passage, each read by one shared bidirectional GRU."""
    vectors, lengths = _inputs(layout, dim)
    dropped = _word_dropout(config, layout, vectors)
    question, q_mask = Segment(0, layout.q_max, 0, name="question")(dropped, lengths)
    passage, p_mask = Segment(layout.passage_start, layout.p_max, 1, name="passage")(
        dropped, lengths
    )
    units = max(config.hidden_size // 2, 1)
    encoder = layers.Bidirectional(FastGRU(units, return_sequences=True), name="encoder")
    return (
        vectors,
        lengths,
        encoder(question, mask=q_mask),
        q_mask,
        encoder(passage, mask=p_mask),
        p_mask,
    )


def build_bigru(config: Config, layout: Layout, dim: int) -> keras.Model:
    """Shared BiGRU encoders, max+mean pooling, then [q; p; q*p; |q-p|] into a dense head."""
    vectors, lengths, question, q_mask, passage, p_mask = _encoded_parts(config, layout, dim)
    q = MaskedPooling(name="question_pool")(question, q_mask)
    p = MaskedPooling(name="passage_pool")(passage, p_mask)
    absolute = layers.Maximum()([layers.Subtract()([q, p]), layers.Subtract()([p, q])])  # |q-p|
    features = layers.Concatenate()([q, p, layers.Multiply()([q, p]), absolute])
    return _model(config, vectors, lengths, features)


def build_attention(config: Config, layout: Layout, dim: int) -> keras.Model:
    """BiGRU encoders, passage-to-question attention fused as [p; a; p*a], a second BiGRU over
    the fused passage, and max+mean pooling of both sides."""
    vectors, lengths, question, q_mask, passage, p_mask = _encoded_parts(config, layout, dim)
    attended = layers.Attention(name="cross_attention")([passage, question], mask=[p_mask, q_mask])
    fused = layers.Concatenate()([passage, attended, layers.Multiply()([passage, attended])])
    fused = layers.Dense(config.hidden_size, activation="relu", name="fuse")(fused)
    units = max(config.hidden_size // 2, 1)
    modelled = layers.Bidirectional(FastGRU(units, return_sequences=True), name="modeller")(
        fused, mask=p_mask
    )
    features = layers.Concatenate()(
        [MaskedPooling()(modelled, p_mask), MaskedPooling()(question, q_mask)]
    )
    return _model(config, vectors, lengths, features)


def build_question_only(config: Config, layout: Layout, dim: int) -> keras.Model:
    """Baseline that never reads the passage: how much the question alone gives away."""
    vectors, lengths, question, q_mask, _, _ = _encoded_parts(config, layout, dim)
    return _model(config, vectors, lengths, MaskedPooling()(question, q_mask))


def build_majority(config: Config, layout: Layout, dim: int) -> keras.Model:
    """Baseline that reads nothing: one learned bias, i.e. the training base rate."""
    vectors, lengths = _inputs(layout, dim)
    output = Bias(name="p_yes")(lengths)
    return keras.Model({"vectors": vectors, "lengths": lengths}, output, name=config.arch)


BUILDERS = {
    "seed": build_seed,
    "bigru": build_bigru,
    "attention": build_attention,
    "question_only": build_question_only,
    "majority": build_majority,
}


def build_model(config: Config, layout: Layout, dim: int) -> keras.Model:
    """A compiled model; weights are drawn from the global Keras seed (set it first)."""
    model = BUILDERS[config.arch](config, layout, dim)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=config.learning_rate, weight_decay=config.weight_decay
        ),
        loss="binary_crossentropy",
        metrics=training_metrics(),
    )
    return model
