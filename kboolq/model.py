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

    def compute_output_shape(self, vectors_shape, lengths_shape):
        return vectors_shape[:2]

    def get_config(self) -> dict:
        return {**super().get_config(), "q_max": self.q_max, "separator": self.separator}


def _inputs(layout: Layout, dim: int):
    vectors = keras.Input(shape=(layout.steps, dim), name="vectors")
    lengths = keras.Input(shape=(2,), dtype="int32", name="lengths")
    mask = LayoutMask(layout.q_max, layout.separator, name="layout_mask")(vectors, lengths)
    return vectors, lengths, mask


def build_seed(config: Config, layout: Layout, dim: int) -> keras.Model:
    """The notebook's design, fed sequences: GRU -> GRU -> Dense(relu) -> Dense(sigmoid)."""
    vectors, lengths, mask = _inputs(layout, dim)
    hidden = FastGRU(config.hidden_size, return_sequences=True, dropout=config.dropout)(
        vectors, mask=mask
    )
    hidden = FastGRU(config.hidden_size, dropout=config.dropout)(hidden, mask=mask)
    hidden = layers.Dense(config.hidden_size, activation="relu")(hidden)
    output = layers.Dense(1, activation="sigmoid", name="p_yes")(hidden)
    return keras.Model({"vectors": vectors, "lengths": lengths}, output, name=config.arch)


BUILDERS = {"seed": build_seed}


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
