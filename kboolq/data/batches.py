"""Batches of GloVe vectors gathered on the fly from compact ids: never the whole float dataset.

12.7k rows x 303 steps x 300 dims would be 4.6 GB of float32; the ids are 15 MB and one gather
per batch costs milliseconds.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kboolq.data.layout import Layout, Lookup, Split

STEMS = "stems"  # the input of models that compare stems (--exact-match stem)
CHARS = "chars"  # the inputs of models that read characters (--chars): each distinct word's
WORDS = "words"  # characters, and which of those words each position holds


def takes_stems(model: keras.Model) -> bool:
    """Whether `model` has the stems input, so its batches must carry each word's stem class."""
    return any(tensor.name == STEMS for tensor in model.inputs)


def takes_chars(model: keras.Model) -> bool:
    """Whether `model` has the chars input, so its batches must carry each word's characters."""
    return any(tensor.name == CHARS for tensor in model.inputs)


BATCHINGS = ("length", "random")  # --batching: how training rows are dealt into batches
LENGTH_NOISE = 0.1  # length-grouped batches sort by passage length x U(0.9, 1.1) (AllenNLP's)
STEP_MULTIPLE = 8  # a cut batch's passage part is a multiple of this: fewer shapes to compile


def fixed_steps(model: keras.Model) -> int | None:
    """The model's fixed sequence length T, or None for a model that takes any T per batch
    (every model built since batches are cut to their rows; older saved models have a T)."""
    return next(tensor.shape[1] for tensor in model.inputs if tensor.name == "vectors")


class Batches(keras.utils.PyDataset):
    """Yields ({"vectors": (B, T, D) float32, "lengths": (B, 2) int32}, labels (B,) float32),
    and "stems": (B, T) int32 (each position's stem class) for a model that takes them
    (`stems`: takes_stems of the model the batches are for), and for a model that reads
    characters (`chars`: takes_chars) "chars": (U, word_chars) int32, the character ids of the
    batch's U distinct table rows, and "words": (B, T) int32, each position's row of "chars".
    Two positions have the same "words" value exactly when they hold the same word.

    Given the `layout`, each batch is cut on the host to its own longest passage (rounded up to
    STEP_MULTIPLE, at most p_max): T = q_max + separator + that, so padding beyond the batch's
    rows is never computed. Without it, or with `steps` (a saved model's fixed T), every batch
    has the split's whole T.

    `lengths` holds each row's real question and passage lengths, from which the model builds
    its padding mask. Training order (`shuffle`) is dealt again every epoch from (seed, epoch):
    with `batching` "length", rows of similar passage length (with a little noise) share a
    batch and the batches come in random order; with "random", rows are shuffled alone. Without
    `shuffle` the rows are taken by passage length (cut batches) or in the split's own order
    (fixed `steps`); `order` says which rows came in which position, so that callers answer in
    the split's order.
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
        *,
        layout: Layout | None = None,
        batching: str = "length",
        steps: int | None = None,
    ) -> None:
        super().__init__()
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
        if steps is not None and steps != split.ids.shape[1]:
            raise ValueError(f"the model takes {steps} steps, the data has {split.ids.shape[1]}")
        self.split = split
        self.layout = layout
        self.table = np.ascontiguousarray(lookup.vectors, dtype=np.float32)
        self.stems = np.asarray(lookup.stems, dtype=np.int32) if stems else None
        if chars and lookup.chars is None:
            raise ValueError("the model reads characters, but the data was encoded without them")
        self.chars = np.asarray(lookup.chars, dtype=np.int32) if chars else None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.batching = batching
        self.cut = layout is not None and steps is None
        self.epoch = 0
        self.lengths = np.stack([split.q_len, split.p_len], axis=1).astype(np.int32)
        self.labels = split.labels.astype(np.float32)
        self.batches = self._deal()

    @classmethod
    def for_model(
        cls,
        model: keras.Model,
        split: Split,
        lookup: Lookup,
        layout: Layout,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        batching: str = "length",
    ) -> Batches:
        """Batches with every input `model` takes: the stems and characters only if it reads
        them, cut to each batch's rows unless the model has a fixed T."""
        return cls(
            split,
            lookup,
            batch_size,
            shuffle,
            seed,
            stems=takes_stems(model),
            chars=takes_chars(model),
            layout=layout,
            batching=batching,
            steps=fixed_steps(model),
        )

    @property
    def order(self) -> np.ndarray:
        """The split's row at each position of the batches, in batch order."""
        return np.concatenate(self.batches) if self.batches else np.zeros(0, np.int64)

    def _deal(self) -> list[np.ndarray]:
        rows, size = len(self.split), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.split.p_len, kind="stable") if self.cut else np.arange(rows)
            return [order[i : i + size] for i in range(0, rows, size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.batching == "random":
            order = rng.permutation(rows)
            return [order[i : i + size] for i in range(0, rows, size)]
        noisy = self.split.p_len * rng.uniform(1 - LENGTH_NOISE, 1 + LENGTH_NOISE, rows)
        order = np.argsort(noisy, kind="stable")
        batches = [order[i : i + size] for i in range(0, rows, size)]
        return [batches[k] for k in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def steps_of(self, rows: np.ndarray) -> int:
        """T for a batch of `rows`: the layout's whole T, or cut to its longest passage."""
        if not self.cut:
            return self.split.ids.shape[1]
        longest = int(self.split.p_len[rows].max()) if len(rows) else 1
        passage = min(-(-max(longest, 1) // STEP_MULTIPLE) * STEP_MULTIPLE, self.layout.p_max)
        return self.layout.passage_start + passage

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        rows = self.batches[index]
        ids = self.split.ids[rows, : self.steps_of(rows)]
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
        self.batches = self._deal()

    def start_at(self, epoch: int) -> None:
        """Deal the rows as for `epoch` (0 is the first): a resumed training's order."""
        self.epoch = epoch
        self.batches = self._deal()
