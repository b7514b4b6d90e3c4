"""Count reads of torch tensor values back to the host (`.item()`, `float(t)`, `int(t)`,
`bool(t)`, `t.numpy()`, `np.asarray(t)`, `t.tolist()`).

On a GPU each such read waits for all queued work, so launch and compute stop overlapping; on a
CPU they cost nothing, which is why they are counted rather than timed. Used by the tests and
benchmarks/host_reads.py; nothing in training calls it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

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
