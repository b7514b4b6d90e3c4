"""Batches of GloVe vectors gathered on the fly from compact ids: never the whole float dataset.

12.7k rows x 303 steps x 300 dims would be 4.6 GB of float32; the ids are 15 MB and one gather
per batch costs milliseconds.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kboolq.data.layout import Lookup, Split

STEMS = "stems"  # the input of models that compare stems (--exact-match stem)
CHARS = "chars"  # the inputs of models that read characters (--chars): each distinct word's
WORDS = "words"  # characters, and which of those words each position holds


def takes_stems(model: keras.Model) -> bool:
    """Whether `model` has the stems input, so its batches must carry each word's stem class."""
    return any(tensor.name == STEMS for tensor in model.inputs)


def takes_chars(model: keras.Model) -> bool:
    """Whether `model` has the chars input, so its batches must carry each word's characters."""
    return any(tensor.name == CHARS for tensor in model.inputs)


class Batches(keras.utils.PyDataset):
    """Yields ({"vectors": (B, T, D) float32, "lengths": (B, 2) int32}, labels (B,) float32),
    and "stems": (B, T) int32 (each position's stem class) for a model that takes them
    (`stems`: takes_stems of the model the batches are for), and for a model that reads
    characters (`chars`: takes_chars) "chars": (U, word_chars) int32, the character ids of the
    batch's U distinct table rows, and "words": (B, T) int32, each position's row of "chars".
    Two positions have the same "words" value exactly when they hold the same word.

    `lengths` holds each row's real question and passage lengths, from which the model builds
    its padding mask. Training order is reshuffled every epoch from (seed, epoch); without
    `shuffle` the order is the split's own, for reproducible evaluation.
    """

    def __init__(
        self,
        split: Split,
        lookup: Lookup,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        stems: bool = False,
        chars: bool = False,
    ) -> None:
        super().__init__()
        self.split = split
        self.table = np.ascontiguousarray(lookup.vectors, dtype=np.float32)
        self.stems = np.asarray(lookup.stems, dtype=np.int32) if stems else None
        if chars and lookup.chars is None:
            raise ValueError("the model reads characters, but the data was encoded without them")
        self.chars = np.asarray(lookup.chars, dtype=np.int32) if chars else None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.lengths = np.stack([split.q_len, split.p_len], axis=1).astype(np.int32)
        self.labels = split.labels.astype(np.float32)
        self.order = self._order()

    @classmethod
    def for_model(
        cls,
        model: keras.Model,
        split: Split,
        lookup: Lookup,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ) -> Batches:
        """Batches with every input `model` takes: the stems and characters only if it reads
        them."""
        return cls(
            split,
            lookup,
            batch_size,
            shuffle,
            seed,
            stems=takes_stems(model),
            chars=takes_chars(model),
        )

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.split))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.split))

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        ids = self.split.ids[rows]
        inputs = {"vectors": np.take(self.table, ids, axis=0), "lengths": self.lengths[rows]}
        if self.stems is not None:
            inputs[STEMS] = np.take(self.stems, ids)
        if self.chars is not None:
            distinct, where = np.unique(ids, return_inverse=True)
            inputs[CHARS] = np.take(self.chars, distinct, axis=0)
            inputs[WORDS] = where.reshape(ids.shape).astype(np.int32)
        return inputs, self.labels[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
