"""Epoch time of kboolq.fit's training with --batching random (rows shuffled alone, each batch
cut to its longest passage: what a CPU computed before length grouping) against --batching
length (rows grouped by passage length), in one process, alternating, for each --arch given.

Each measurement is one whole epoch (training steps and the validation pass) of
kboolq.training.train_model with the default hyperparameters otherwise; the model is built and
compiled before the clock starts. Prints a markdown table with the ratio length / random.

    python benchmarks/epoch_time.py --data DIR --glove kumo50 --archs bigru,notebook --repeats 2
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import keras

from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.inputs import load_inputs
from kboolq.config import Config
from kboolq.threads import set_threads
from kboolq.training import train_model


class EpochClock(keras.callbacks.Callback):
    """Seconds from the first training batch's start to the end of the epoch (with validation)."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_arguments(parser)
    parser.add_argument("--archs", default="bigru,notebook")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    inputs = load_inputs(data_settings(args), cache_dir(args), 0)
    rows = len(inputs.prepared.splits["train"].labels)
    print(f"{rows} train rows, {threads} threads, {args.repeats} epochs of each")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for arch in args.archs.split(","):
            for batching in ("random", "length"):
                config = dataclasses.replace(
                    Config(arch=arch), batching=batching, max_epochs=1, min_epochs=0
                )
                clock = EpochClock()
                with tempfile.TemporaryDirectory() as work:
                    train_model(config, inputs.prepared, Path(work), [clock], verbose=0)
                results.setdefault((arch, batching), []).append(clock.seconds)
                print(f"{arch} {batching}: {clock.seconds:.1f} s", flush=True)
    print("\n| arch | random: s per epoch | length: s per epoch | length / random |")
    print("|---|---:|---:|---:|")
    for arch in args.archs.split(","):
        before = statistics.median(results[(arch, "random")])
        after = statistics.median(results[(arch, "length")])
        print(f"| {arch} | {before:.1f} | {after:.1f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
