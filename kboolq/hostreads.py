"""Count reads of torch tensor values back to the host (`.item()`, `float(t)`, `int(t)`,
`bool(t)`, `t.numpy()`, `np.asarray(t)`, `t.tolist()`).

On a GPU each such read waits for all queued work, so launch and compute stop overlapping; on a
CPU they cost nothing, which is why they are counted rather than timed. Used by the tests and
benchmarks/host_reads.py (StepReads tells reads inside steps from the others); nothing in
training calls it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import keras
import torch

READS = ("item", "__float__", "__int__", "__bool__", "numpy", "__array__", "tolist")


@contextlib.contextmanager
def count_host_reads() -> Iterator[Counter]:
    """Within the block, every read of a tensor value to the host is counted, by method."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name, original):
        def read(self, *args, **kwargs):
            counts[name] += 1
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


class StepReads(keras.callbacks.Callback):
    """Counts training steps, and the host reads (from a count_host_reads Counter) made
    between the start and the end of each training and validation step."""

    def __init__(self, counts: Counter) -> None:
        super().__init__()
        self.counts, self.steps, self.inside = counts, 0, 0

    def _begin(self, batch, logs=None) -> None:
        self.before = sum(self.counts.values())

    def _end(self, batch, logs=None) -> None:
        self.inside += sum(self.counts.values()) - self.before

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self.steps += 1
        self._begin(batch)

    on_train_batch_end = on_test_batch_end = _end
    on_test_batch_begin = _begin
