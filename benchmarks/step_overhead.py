"""The training step's remaining overheads, side by side in one process (issue #33 item 3):
today's step against the same step with the EMA of the weights updated in place with torch's
foreach ops (inplace_ema below), and against Keras's jit_compile=True (torch.compile). Keras's
AdamW on torch already updates all variables with foreach ops (TorchParallelOptimizer).

Each variant trains a fresh model from the same seed for --steps steps of the same
length-grouped batches (Keras fit, the EMA on as kboolq's default recipe has it), after --warmup
steps that are not timed; the variants alternate over --repeats rounds and the median seconds a
step are printed with the ratio to today's, and the largest difference in the loss history
(exactness: the same seed must give the same numbers).

    python benchmarks/step_overhead.py --data DIR --glove kumo50 [--hidden 256] [--repeats 3]
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import statistics
import time

import keras
import numpy as np

from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.inputs import load_inputs
from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.models.architectures import build_model
from kboolq.threads import set_threads
from kboolq.training import compile_model


def inplace_ema(optimizer) -> None:
    """The weights' moving average with two foreach ops for all variables instead of Keras's
    five ops per variable (momentum 0 at the first step, as Keras's; no host read)."""
    import torch

    def update(trainable_variables) -> None:
        pairs = [(v.value, a.value) for v, a in
                 zip(trainable_variables, optimizer._model_variables_moving_average, strict=True)
                 if a is not None]  # fmt: skip
        with torch.no_grad():
            started = (optimizer.iterations.value != 0).to(pairs[0][0].dtype)
            momentum = started * optimizer.ema_momentum
            averages = [a for _, a in pairs]
            torch._foreach_mul_(averages, momentum)
            torch._foreach_add_(averages, torch._foreach_mul([v for v, _ in pairs], 1 - momentum))

    optimizer._update_model_variables_moving_average = update


class Clock(keras.callbacks.Callback):
    def __init__(self, warmup: int) -> None:
        super().__init__()
        self.warmup, self.losses = warmup, []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs.get("loss", float("nan"))))  # none with epoch metrics

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def run(config, prepared, variant, steps, warmup):
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, prepared.layout, prepared.lookup.dim)
    compile_model(model, config)
    if variant == "ema in place":
        inplace_ema(model.optimizer)
    if variant == "jit_compile":
        model.jit_compile = True
        model.make_train_function(force=True)
    batches = Batches.for_model(model, prepared.splits["train"], prepared.lookup,
                                prepared.layout, config.batch_size, shuffle=True,
                                seed=config.seed, batching="length")  # fmt: skip
    clock = Clock(warmup)
    model.fit(batches, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[clock])
    return clock.seconds / steps, clock.losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_source_arguments(parser)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--arch", default="bigru")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="today,ema in place,jit_compile")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    inputs = load_inputs(data_settings(args), cache_dir(args), 0)
    config = Config(arch=args.arch, hidden_size=args.hidden)
    variants = args.variants.split(",")
    print(f"{args.arch} hidden {args.hidden}, dim {inputs.glove.dim}, {threads} threads, "
          f"{args.steps} steps after {args.warmup}, {args.repeats} rounds")  # fmt: skip
    seconds, losses = {v: [] for v in variants}, {}
    for _ in range(args.repeats):
        for variant in variants:
            try:
                step, history = run(config, inputs.prepared, variant, args.steps, args.warmup)
            except Exception as exc:  # noqa: BLE001  (a variant that cannot run is reported)
                print(f"{variant}: failed ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
                seconds[variant].append(float("nan"))
                continue
            seconds[variant].append(step)
            losses[variant] = np.array(history)
            print(f"{variant}: {step * 1000:.1f} ms a step", flush=True)
    reference = statistics.median(seconds[variants[0]])
    print("\n| variant | ms a step | vs today | largest loss difference from today |")
    print("|---|---:|---:|---:|")
    for variant in variants:
        median = statistics.median(seconds[variant])
        gap = (
            float(np.abs(losses[variant] - losses[variants[0]]).max())
            if variant in losses and variants[0] in losses
            else float("nan")
        )
        print(f"| {variant} | {median * 1000:.1f} | {median / reference:.2f} | {gap:.1e} |")


if __name__ == "__main__":
    main()
