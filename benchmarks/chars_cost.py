"""What --chars costs a training step, against the same model without it, in one run.

Both models train on the same data encoded with characters (unknown words keep their places,
so the rows are as long as the character model sees them) and on the plain encoding the
default reads; steps are timed after warm-up batches, median of --repeats rounds.

    python benchmarks/chars_cost.py --data DIR --glove kumo50 [--chars 50] [--steps 20]
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import dataclasses
import statistics
import time

import keras
import numpy as np

from kboolq.cli import add_source_arguments, cache_dir, data_settings
from kboolq.inputs import load_inputs
from kboolq.config import Config, add_config_arguments, config_from_args
from kboolq.data.batches import Batches
from kboolq.data.layout import WORD_CHARS
from kboolq.models.architectures import build_model
from kboolq.training import compile_model


def step_seconds(config: Config, prepared, steps: int, repeats: int) -> float:
    keras.utils.set_random_seed(config.seed)
    model = compile_model(build_model(config, prepared.layout, prepared.lookup.dim), config)
    batches = Batches.for_model(
        model, prepared.splits["train"], prepared.lookup, config.batch_size, shuffle=True
    )
    data = [batches[i] for i in range(steps + 2)]
    for inputs, labels in data[:2]:  # warm-up
        model.train_on_batch(inputs, labels)
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for inputs, labels in data[2:]:
            model.train_on_batch(inputs, labels)
        rounds.append((time.perf_counter() - start) / steps)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_arguments(parser)
    add_config_arguments(parser, skip=("chars",))
    parser.add_argument("--chars", type=int, default=50, help="character CNN size timed")
    parser.add_argument("--steps", type=int, default=20, help="training steps a round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median is shown")
    args = parser.parse_args()
    base = dataclasses.replace(config_from_args(args), chars=0)
    plain = load_inputs(data_settings(args), cache_dir(args)).prepared
    with_chars = load_inputs(data_settings(args), cache_dir(args), WORD_CHARS).prepared
    train = with_chars.splits["train"]
    unknown = np.isin(train.ids, np.flatnonzero(~with_chars.lookup.vectors.any(axis=1))[1:])
    real = train.q_len.sum() + train.p_len.sum()
    print(
        f"train positions: {real} real, {unknown.sum()} of them unknown words "
        f"({unknown.sum() / real:.2%}), which only the character encoding keeps"
    )
    rows = [
        ("plain encoding, no chars (the default)", base, plain),
        ("character encoding, no chars", base, with_chars),
        (f"character encoding, --chars {args.chars}", dataclasses.replace(base, chars=args.chars),
         with_chars),
    ]  # fmt: skip
    reference = None
    for name, config, prepared in rows:
        seconds = step_seconds(config, prepared, args.steps, args.repeats)
        reference = reference or seconds
        print(f"{name:45s} {seconds * 1000:8.1f} ms a step  {seconds / reference:5.2f}x")


if __name__ == "__main__":
    main()
