"""The layout's building blocks: masks and parts from the row lengths, pooling, a bias baseline.

Every layer is registered under the package name "kboolq", so a saved `.keras` model finds it
once kboolq.models.layers is imported (kboolq.runs.rundir.load_model does that).
"""

from __future__ import annotations

import keras
from keras import layers, ops


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
        # one gather of whole rows of the flattened batch: 3x faster, forward and backward,
        # than take_along_axis, which gathers every feature of every step by its own index
        batch, features = ops.shape(vectors)[0], ops.shape(vectors)[2]
        rows = source + ops.expand_dims(ops.arange(batch, dtype="int32") * steps, 1)
        flat = ops.reshape(vectors, (-1, features))
        moved = ops.reshape(ops.take(flat, ops.reshape(rows, (-1,)), axis=0), ops.shape(vectors))
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
    """One part of the layout (question or passage) and its padding mask, from the row lengths:
    `steps` positions from `start`, or (steps None) all the rest of the batch's T."""

    def __init__(self, start: int, steps: int | None, column: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start, self.steps, self.column = start, steps, column

    def call(self, vectors, lengths):
        end = None if self.steps is None else self.start + self.steps
        part = vectors[:, self.start : end]
        positions = ops.expand_dims(ops.arange(ops.shape(part)[1], dtype="int32"), 0)
        return part, positions < ops.cast(lengths, "int32")[:, self.column : self.column + 1]

    def compute_output_spec(self, vectors, lengths):
        batch, total, features = vectors.shape
        steps = self.steps
        if steps is None and total is not None:
            steps = total - self.start
        return (
            keras.KerasTensor((batch, steps, features), dtype=vectors.dtype),
            keras.KerasTensor((batch, steps), dtype="bool"),
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


@keras.saving.register_keras_serializable(package="kboolq")
class ExactMatch(layers.Layer):
    """For each real word of one part, 1.0 when the same word occurs among the other part's
    real words: the exact-match feature that reading-comprehension models without pre-training
    give their encoders (DrQA). Words are compared by their vectors, which are equal exactly
    when the lower-cased words are (tokens are lower-cased and each word has one GloVe vector).

    Args:
        tolerance: largest squared distance, relative to the squared norms, still counted as
            the same vector (float rounding of the distance, far below two words' distance).

    Call: (a (B, A, D), a_mask (B, A), b (B, N, D), b_mask (B, N)) ->
        (a in b (B, A, 1), b in a (B, N, 1)), 0.0 at padding.
    """

    def __init__(self, tolerance: float = 1e-5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tolerance = tolerance

    def call(self, a, a_mask, b, b_mask):
        a_norm = ops.sum(a * a, axis=-1)[:, :, None]  # (B, A, 1)
        b_norm = ops.sum(b * b, axis=-1)[:, None, :]  # (B, 1, N)
        distance = a_norm + b_norm - 2.0 * ops.matmul(a, ops.transpose(b, (0, 2, 1)))  # (B, A, N)
        real = ops.cast(a_mask, "bool")[:, :, None] & ops.cast(b_mask, "bool")[:, None, :]
        same = (distance <= self.tolerance * (a_norm + b_norm)) & real
        same = ops.cast(same, a.dtype)
        return ops.max(same, axis=2)[:, :, None], ops.max(same, axis=1)[:, :, None]

    def compute_output_spec(self, a, a_mask, b, b_mask):
        return (
            keras.KerasTensor((*a.shape[:2], 1), dtype=a.dtype),
            keras.KerasTensor((*b.shape[:2], 1), dtype=b.dtype),
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "tolerance": self.tolerance}


@keras.saving.register_keras_serializable(package="kboolq")
class SameCode(layers.Layer):
    """For each real position of one part, 1.0 when the same integer code (a stem class) occurs
    at a real position of the other part: ExactMatch for words that share a stem, which their
    vectors cannot show ("runs" and "running" have different GloVe vectors).

    Call: (a (B, A, 1) int, a_mask (B, A), b (B, N, 1) int, b_mask (B, N)) ->
        (a in b (B, A, 1), b in a (B, N, 1)) float, 0.0 at padding.
    """

    def call(self, a, a_mask, b, b_mask):
        same = ops.equal(a, ops.transpose(b, (0, 2, 1)))  # (B, A, 1) == (B, 1, N) -> (B, A, N)
        real = ops.cast(a_mask, "bool")[:, :, None] & ops.cast(b_mask, "bool")[:, None, :]
        same = ops.cast(same & real, self.compute_dtype)
        return ops.max(same, axis=2)[:, :, None], ops.max(same, axis=1)[:, :, None]

    def compute_output_spec(self, a, a_mask, b, b_mask):
        return (
            keras.KerasTensor((*a.shape[:2], 1), dtype=self.compute_dtype),
            keras.KerasTensor((*b.shape[:2], 1), dtype=self.compute_dtype),
        )


def _masked_softmax(logits, mask, axis: int = -1):
    """Softmax over the positions where `mask` is True; a row with none gets zeros."""
    mask = ops.cast(mask, "bool")
    weights = ops.softmax(ops.where(mask, logits, -1e9), axis=axis)
    return weights * ops.cast(mask, weights.dtype)


@keras.saving.register_keras_serializable(package="kboolq")
class HighwayGate(layers.Layer):
    """A highway connection around a recurrent layer (Clark et al. 2019, BoolQ's recurrent
    model): from the layer's input x, a gate g = sigmoid(x W_g + b_g) and a transform
    t = tanh(x W_t + b_t), both of the layer's output width; the output is g * h + (1 - g) * t,
    so each unit can pass on the recurrent state h or a direct reading of the input.

    Call: (x (B, L, D), h (B, L, H)) -> (B, L, H).
    """

    def build(self, x_shape, h_shape) -> None:
        units = h_shape[-1]
        self.kernel = self.add_weight(
            shape=(x_shape[-1], 2 * units), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(2 * units,), initializer="zeros", name="bias")

    def call(self, x, h):
        gate, transform = ops.split(ops.matmul(x, self.kernel) + self.bias, 2, axis=-1)
        gate = ops.sigmoid(gate)
        return gate * h + (1.0 - gate) * ops.tanh(transform)

    def compute_output_shape(self, x_shape, h_shape):
        return tuple(h_shape)


@keras.saving.register_keras_serializable(package="kboolq")
class BiAttention(layers.Layer):
    """Attention both ways between two parts with trilinear scores (BiDAF's similarity):
    s(i, j) = a_i . w_a + b_j . w_b + (a_i * w_ab) . b_j, over real positions only.

    Call: (a (B, A, H), a_mask (B, A), b (B, N, H), b_mask (B, N)) ->
        (each a_i's summary of b (B, A, H), each b_j's summary of a (B, N, H)).
    """

    def build(self, a_shape, a_mask_shape, b_shape, b_mask_shape) -> None:
        dim = a_shape[-1]
        self.w_a = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="w_a")
        self.w_b = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="w_b")
        self.w_ab = self.add_weight(
            shape=(dim,), initializer=keras.initializers.Constant(1.0 / dim), name="w_ab"
        )

    def call(self, a, a_mask, b, b_mask):
        scores = ops.matmul(a * self.w_ab, ops.transpose(b, (0, 2, 1)))  # (B, A, N)
        scores = scores + ops.expand_dims(ops.matmul(a, self.w_a), 2)
        scores = scores + ops.expand_dims(ops.matmul(b, self.w_b), 1)
        real = ops.cast(a_mask, "bool")[:, :, None] & ops.cast(b_mask, "bool")[:, None, :]
        a_reads_b = ops.matmul(_masked_softmax(scores, real, axis=2), b)  # (B, A, H)
        b_reads_a = ops.matmul(
            ops.transpose(_masked_softmax(scores, real, axis=1), (0, 2, 1)), a
        )  # (B, N, H)
        return a_reads_b, b_reads_a

    def compute_output_spec(self, a, a_mask, b, b_mask):
        return (
            keras.KerasTensor((*a.shape[:2], b.shape[-1]), dtype=a.dtype),
            keras.KerasTensor((*b.shape[:2], a.shape[-1]), dtype=b.dtype),
        )


@keras.saving.register_keras_serializable(package="kboolq")
class AttentionPooling(layers.Layer):
    """A learned weighted mean over the real steps: softmax(h_t . w) over t, then sum of h_t.

    Call: (sequence (B, L, H), real (B, L)) -> (B, H).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, *args, **kwargs):
        return None

    def build(self, sequence_shape, real_shape) -> None:
        self.w = self.add_weight(shape=(sequence_shape[-1],), initializer="glorot_uniform")

    def call(self, sequence, real):
        weights = _masked_softmax(ops.matmul(sequence, self.w), real, axis=1)  # (B, L)
        return ops.sum(sequence * ops.expand_dims(weights, -1), axis=1)

    def compute_output_shape(self, sequence_shape, real_shape):
        return (sequence_shape[0], sequence_shape[2])


@keras.saving.register_keras_serializable(package="kboolq")
class CharCNN(layers.Layer):
    """One learned vector per word from its characters (the character CNN of Kim et al. 2016,
    which the BoolQ paper's recurrent model also uses): character embeddings, a 1-D convolution
    along the word, ReLU, and the maximum over the word's characters. It gives rare names,
    numbers and words GloVe does not know a vector that training can shape.

    The CNN reads each distinct word of the batch once (a batch's 19,200 positions hold about
    3,000 distinct words, padding included) and its vectors are then placed at every position.

    Args:
        vocabulary: character ids (0 pads a word and embeds as zeros).
        filters: the size of each word's vector.
        char_dim: the size of each character's embedding.
        width: the convolution's width in characters.

    Call: (chars (U, W) int: the batch's distinct words' characters, words (B, T) int: each
    position's row of chars) -> (B, T, filters). A word without characters (padding, the
    separator, an averaged tail) gets ReLU(bias).
    """

    def __init__(
        self, vocabulary: int, filters: int, char_dim: int = 16, width: int = 5, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.vocabulary, self.filters = vocabulary, filters
        self.char_dim, self.width = char_dim, width

    def build(self, chars_shape, words_shape) -> None:
        self.embedding = self.add_weight(
            shape=(self.vocabulary, self.char_dim),
            initializer=keras.initializers.RandomUniform(-0.5, 0.5),
            name="embedding",
        )
        self.kernel = self.add_weight(
            shape=(self.width, self.char_dim, self.filters),
            initializer="glorot_uniform",
            name="kernel",
        )
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, chars, words):
        chars = ops.cast(chars, "int32")
        embedded = ops.take(self.embedding, chars, axis=0)  # (U, W, E)
        embedded = embedded * ops.cast(ops.expand_dims(chars > 0, -1), embedded.dtype)
        convolved = ops.conv(embedded, self.kernel, padding="same") + self.bias  # (U, W, F)
        vectors = ops.max(ops.relu(convolved), axis=1)  # (U, F)
        return ops.take(vectors, ops.cast(words, "int32"), axis=0)  # (B, T, F)

    def compute_output_shape(self, chars_shape, words_shape):
        return (*words_shape, self.filters)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "vocabulary": self.vocabulary,
            "filters": self.filters,
            "char_dim": self.char_dim,
            "width": self.width,
        }
