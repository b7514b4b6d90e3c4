"""Positions computed per real word: how much padding each way of making batches computes.

    python benchmarks/positions.py --data DIR --glove kumo50 [--batch-size 64] [--epochs 3]

For each split it counts, over the batches that kboolq.data.batches makes, B x T positions
(every GRU step of the layout) against the rows' real question and passage words. Rows:
  whole T          every batch padded to the layout's T (a saved model with a fixed T)
  random, cut      training order shuffled, each batch cut to its longest passage
  length, cut      rows grouped by passage length (--batching length), each batch cut
  by length, cut   evaluation, predict and serve: rows taken by length, each batch cut
The question part stays q_max long in every batch (the model finds the passage at a fixed
position, so no device read is needed); "ideal" counts the real words and the separator only.
Nothing is timed: the counts are exact and the same on any machine.
"""

from __future__ import annotations

import argparse

import kboolq  # noqa: F401  (the backend first)
from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.data.batches import Batches
from kboolq.inputs import load_inputs


def positions(batches: Batches, epochs: int) -> int:
    total = 0
    for _ in range(epochs):
        total += sum(len(rows) * batches.steps_of(rows) for rows in batches.batches)
        batches.on_epoch_end()
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_arguments(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="training epochs averaged")
    args = p.parse_args()
    inputs = load_inputs(data_settings(args), cache_dir(args))
    prepared, size = inputs.prepared, args.batch_size
    layout, lookup = prepared.layout, prepared.lookup
    print(f"layout: q_max {layout.q_max} + separator {layout.separator} + p_max {layout.p_max}")
    print("| split | rows | real words a row | whole T | random, cut | length, cut | "
          "by length, cut | ideal (words + separator) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, split in prepared.splits.items():
        words = int(split.q_len.sum() + split.p_len.sum())
        ideal = (words + len(split) * layout.separator) / words

        def make(split=split, **kw):
            return Batches(split, lookup, size, layout=layout, **kw)

        whole = len(split) * layout.steps / words
        cells = [f"{whole:.2f}"]
        if name == "train":
            for batching in ("random", "length"):
                dealt = make(shuffle=True, seed=0, batching=batching)
                cells.append(f"{positions(dealt, args.epochs) / (args.epochs * words):.2f}")
        else:
            cells += ["—", "—"]
        cells.append(f"{positions(make(), 1) / words:.2f}")
        print(f"| {name} | {len(split)} | {words / len(split):.1f} | " + " | ".join(cells)
              + f" | {ideal:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
