"""What one kboolq.fit costs: seconds per epoch, data time against step time, peak GPU memory.

Runs exactly the training of `python -m kboolq.fit` (same flags, kboolq.training.train_model)
into a temporary run directory, with one more callback that times every training batch: the
step (forward, backward, optimizer; on a GPU closed by torch.cuda.synchronize(), which adds a
little to each step), the gap before it (the batch generator, the copy to the device and
Keras's own work) and each epoch's validation pass. The batch generator alone is timed over
one epoch too, for reference.

    python benchmarks/fit_cost.py --data DIR --glove kumo50 [any kboolq.fit hyperparameter flag]
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras
import torch

from kboolq.data.batches import Batches
from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.inputs import load_inputs
from kboolq.config import add_config_arguments, config_from_args
from kboolq.training import train_model


class StepTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.cuda = torch.cuda.is_available()
        self.epochs: list[dict[str, float]] = []

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = self.last_end = self._now()
        self.step = self.gap = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.begin = self._now()
        self.gap += self.begin - self.last_end

    def on_train_batch_end(self, batch, logs=None):
        self.last_end = self._now()
        self.step += self.last_end - self.begin

    def on_epoch_end(self, epoch, logs=None):
        total = self._now() - self.epoch_start
        self.epochs.append(
            {
                "total": total,
                "step": self.step,
                "gap": self.gap,
                "valid": total - self.step - self.gap,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_arguments(parser)
    add_config_arguments(parser)
    args = parser.parse_args()
    config = config_from_args(args)
    inputs = load_inputs(data_settings(args), cache_dir(args))
    prepared = inputs.prepared
    cuda = torch.cuda.is_available()
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}, keras {keras.__version__}")
    print(f"data ready in {inputs.seconds:.1f} s; T = {prepared.layout.steps}; {config}")
    train = Batches(prepared.splits["train"], prepared.lookup, config.batch_size, shuffle=True)
    start = time.perf_counter()
    for index in range(len(train)):
        train[index]
    generator = time.perf_counter() - start
    print(f"batch generator alone: {generator:.2f} s for {len(train)} batches")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        _, checkpoint = train_model(config, prepared, Path(run_dir), [timer], verbose=2)
        seconds = time.perf_counter() - started
    epochs = timer.epochs
    print(f"{'epoch':>5} {'total s':>8} {'steps s':>8} {'gap s':>8} {'valid s':>8}")
    for number, e in enumerate(epochs, 1):
        print(f"{number:>5} {e['total']:8.2f} {e['step']:8.2f} {e['gap']:8.2f} {e['valid']:8.2f}")
    median = {key: statistics.median(e[key] for e in epochs) for key in epochs[0]}
    print(
        f"fit: {seconds:.1f} s, {len(epochs)} epochs (best {checkpoint.best_epoch}, valid "
        f"balanced accuracy {checkpoint.best:.4f}); median epoch {median['total']:.2f} s = "
        f"steps {median['step']:.2f} s + data/gap {median['gap']:.2f} s + "
        f"validation {median['valid']:.2f} s; {len(train)} batches of {config.batch_size}, "
        f"{median['step'] / len(train) * 1000:.1f} ms a step"
    )
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        reserved = torch.cuda.max_memory_reserved() / 2**20
        print(f"peak GPU memory: {peak:.0f} MiB allocated, {reserved:.0f} MiB reserved")


if __name__ == "__main__":
    main()
