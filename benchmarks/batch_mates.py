"""How often a row's batch-mates are again its batch-mates in the next epoch, per --batching.

    python benchmarks/batch_mates.py --data DIR --glove kumo50 [--batch-size 64] [--epochs 4]

Over the train split's batches as kboolq.data.batches deals them (seed 0), for the first 8 rows
of each batch: the share of its batch-mates that shared its batch in the epoch before, averaged
over rows and epochs. Counts, not timings.
"""

from __future__ import annotations

import argparse

import numpy as np

import kboolq  # noqa: F401  (the backend first)
from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.data.batches import BATCHINGS, Batches
from kboolq.inputs import load_inputs


def kept_mates(batches: Batches, rows: int, epochs: int) -> float:
    shares, before = [], None
    for _ in range(epochs):
        where = np.empty(rows, np.int64)
        for k, batch in enumerate(batches.batches):
            where[batch] = k
        if before is not None:
            for batch in batches.batches:
                for row in batch[:8]:
                    mates = batch[batch != row]
                    shares.append(np.mean(before[mates] == before[row]))
        before = where
        batches.on_epoch_end()
    return float(np.mean(shares))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_arguments(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args()
    prepared = load_inputs(data_settings(args), cache_dir(args)).prepared
    train = prepared.splits["train"]
    print("| --batching | batch-mates kept from one epoch to the next |")
    print("|---|---:|")
    for batching in BATCHINGS:
        dealt = Batches(train, prepared.lookup, args.batch_size, shuffle=True, seed=0,
                        layout=prepared.layout, batching=batching)  # fmt: skip
        print(f"| {batching} | {100 * kept_mates(dealt, len(train), args.epochs):.1f} % |")


if __name__ == "__main__":
    main()
