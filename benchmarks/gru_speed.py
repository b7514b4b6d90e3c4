"""How fast the project's GRU trains against keras.layers.GRU and plain PyTorch, in one run.

For each (embedding dim, hidden) pair (--pairs): median train-step (forward, backward, AdamW) and
inference times of
  (a) the notebook model with keras.layers.GRU and the layout mask (Keras's masked path),
  (b) the project's model (FastGRU), compiled exactly as kboolq.fit compiles it,
  (c) plain torch.nn.GRU over the batch trimmed to its longest row, reading each row's output
      at its last real position (the fastest padding-correct PyTorch model), and
  (c') the same with pack_padded_sequence, for reference;
then ratios b/c and a/c, the batch generator's time per batch, and an end-to-end epoch of
kboolq's training loop against a plain-torch loop over the same batches.

Row lengths come from the real BoolQ train split when ../shared/data/boolq (or --data) is there,
with kumo50 vectors; other dims use random vectors over the same lengths.

    python benchmarks/gru_speed.py [--repeats 7] [--epoch-steps N] [--epoch-rounds 5] [--data DIR]
                                   [--batch 64] [--pairs 300/256,50/128,4/4] [--glove kumo50]

On a CUDA GPU every contender runs there (Keras places its tensors on the GPU by itself; the
plain-torch models are moved), each timed step ends with torch.cuda.synchronize(), and (c) is
cuDNN's GRU. Warnings raised while timing (e.g. cuDNN compacting weights at every call) are
printed once at the end.
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import statistics
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import torch
from torch import nn

from kboolq.files import default_cache_dir
from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.data.boolq import load_boolq
from kboolq.data.vectors import load_glove
from kboolq.data.layout import Layout, Lookup, Split, prepare
from kboolq.evaluation import training_metrics
from kboolq.models.architectures import build_model
from kboolq.models.layers import LayoutMask
from kboolq.training import compile_model

BATCH = 64
PAIRS = "300/256,50/128,4/4"  # 4/4: next to no arithmetic, so the step is all framework overhead
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def synchronize() -> None:
    """Wait for queued GPU work, so that a step's time is the time of its kernels too."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class TorchSeed(nn.Module):
    """The notebook architecture in plain PyTorch, fed right-padded question+separator+passage."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(dim, hidden, num_layers=2, batch_first=True)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, packed: bool = False) -> torch.Tensor:
        if packed:
            sequence = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            _, h = self.gru(sequence)
            last = h[-1]
        else:
            outputs, _ = self.gru(x)
            last = outputs[torch.arange(len(lengths), device=x.device), lengths.to(x.device) - 1]
        return torch.sigmoid(self.out(torch.relu(self.dense(last)))).squeeze(-1)


def keras_gru_model(layout: Layout, dim: int, hidden: int) -> keras.Model:
    vectors = keras.Input((layout.steps, dim), name="vectors")
    lengths = keras.Input((2,), dtype="int32", name="lengths")
    mask = LayoutMask(layout.q_max, layout.separator)(vectors, lengths)
    h = keras.layers.GRU(hidden, return_sequences=True)(vectors, mask=mask)
    h = keras.layers.GRU(hidden)(h, mask=mask)
    h = keras.layers.Dense(hidden, activation="relu")(h)
    model = keras.Model(
        {"vectors": vectors, "lengths": lengths}, keras.layers.Dense(1, "sigmoid")(h)
    )
    model.compile(
        keras.optimizers.AdamW(1e-3, weight_decay=0.0),
        "binary_crossentropy",
        metrics=training_metrics(),
    )
    return model


def contiguous(inputs: dict, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded question + separator + passage, trimmed to the batch's longest row."""
    vectors, lengths = inputs["vectors"], inputs["lengths"]
    total = lengths[:, 0] + layout.separator + lengths[:, 1]
    out = np.zeros((len(vectors), int(total.max()), vectors.shape[2]), np.float32)
    for i, (q, p) in enumerate(lengths):
        out[i, : q + layout.separator + p] = np.concatenate(
            [vectors[i, :q], vectors[i, layout.q_max : layout.passage_start + p]]
        )
    return torch.from_numpy(out).to(DEVICE), torch.from_numpy(total.astype(np.int64))


def interleaved_times(steps: dict, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds of each step, timed in rounds (a, b, c, a, b, c, ...) so that drifts in machine
    load hit every contender alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(steps: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    times = interleaved_times(steps, repeats, warmup)
    return {name: statistics.median(values) for name, values in times.items()}


def real_lengths(
    data: Path | None, glove: str = "kumo50"
) -> tuple[Layout, Split | None, np.ndarray | None]:
    if data is not None and data.is_dir():
        prepared, _ = prepare(
            load_boolq(str(data)), load_glove(glove, default_cache_dir()), default_cache_dir()
        )
        return prepared.layout, prepared.splits["train"], prepared.lookup.vectors
    rng = np.random.default_rng(0)
    rows = 640
    layout = Layout(q_max=21, p_max=274)
    q_len = rng.integers(4, 22, rows).astype(np.int32)
    p_len = np.minimum(rng.gamma(3.0, 40.0, rows).astype(np.int32) + 20, 274).astype(np.int32)
    ids = np.zeros((rows, layout.steps), np.int32)
    split = Split(ids, q_len, p_len, (rng.random(rows) < 0.62).astype(np.int8))
    print("no real data found: synthetic lengths")
    return layout, split, None


def notebook_model(hidden: int, layout: Layout, dim: int) -> keras.Model:
    """The notebook architecture, the one plain PyTorch mirrors here, whatever fit's default is,
    compiled as kboolq.fit compiles it."""
    config = Config(arch="notebook", hidden_size=hidden, dropout=0.0, embedding_dropout=0.0)
    return compile_model(build_model(config, layout, dim), config)


def bench_pair(
    dim: int, hidden: int, layout: Layout, split: Split, repeats: int, batch: int
) -> dict:
    rng = np.random.default_rng(1)
    table = rng.normal(size=(5000, dim)).astype(np.float32)
    table[0] = 0
    ids = rng.integers(1, 5000, split.ids.shape).astype(np.int32)
    ids[split.ids == 0] = 0
    batches = Batches(
        Split(ids, split.q_len, split.p_len, split.labels),
        Lookup(table, np.zeros(len(table), np.int32)),
        batch,
    )
    inputs, labels = batches[0]
    keras.utils.set_random_seed(0)
    keras_model = keras_gru_model(layout, dim, hidden)
    project = notebook_model(hidden, layout, dim)
    torch_model = TorchSeed(dim, hidden).to(DEVICE)
    optimizer = torch.optim.AdamW(torch_model.parameters(), lr=1e-3, weight_decay=0.0)
    x, lengths = contiguous(inputs, layout)
    x = x.cpu()
    y = torch.from_numpy(labels).to(DEVICE)

    def torch_step(packed: bool):
        def step():  # the batch comes from the host, as Keras's does
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy(torch_model(x.to(DEVICE), lengths, packed), y)
            loss.backward()
            optimizer.step()

        return step

    def torch_infer():
        with torch.no_grad():
            torch_model(x.to(DEVICE), lengths)

    result = interleaved_medians(
        {
            "a_train": lambda: keras_model.train_on_batch(inputs, labels),
            "b_train": lambda: project.train_on_batch(inputs, labels),
            "c_train": torch_step(False),
            "packed_train": torch_step(True),
            "a_infer": lambda: keras_model.predict_on_batch(inputs),
            "b_infer": lambda: project.predict_on_batch(inputs),
            "c_infer": torch_infer,
        },
        repeats,
    )
    real_table = rng.normal(size=(41316, dim)).astype(np.float32)  # the real table's size
    generator = Batches(
        split, Lookup(real_table, np.zeros(len(real_table), np.int32)), batch, shuffle=True
    )
    result.update(interleaved_medians({"batch": lambda: generator[3]}, repeats * 5))
    return result


def bench_epoch(
    layout: Layout, split: Split, table: np.ndarray, steps: int, rounds: int, batch: int
) -> dict[str, list[float]]:
    """Seconds of each epoch of `steps` batches: kboolq's training loop (model.fit) vs a
    plain-torch loop over the same batches, alternating so that load drifts hit both alike."""
    subset = Split(
        *(a[: steps * batch] for a in (split.ids, split.q_len, split.p_len, split.labels))
    )
    batches = Batches(subset, Lookup(table, np.zeros(len(table), np.int32)), batch, shuffle=True)
    dim, hidden = table.shape[1], 128
    keras.utils.set_random_seed(0)
    project = notebook_model(hidden, layout, dim)
    project.fit(batches, epochs=1, verbose=0, steps_per_epoch=2)  # warm up
    torch_model = TorchSeed(dim, hidden).to(DEVICE)
    optimizer = torch.optim.AdamW(torch_model.parameters(), lr=1e-3, weight_decay=0.0)

    def torch_epoch() -> None:
        for index in range(len(batches)):
            inputs, labels = batches[index]
            x, lengths = contiguous(inputs, layout)
            optimizer.zero_grad()
            nn.functional.binary_cross_entropy(
                torch_model(x, lengths), torch.from_numpy(labels).to(DEVICE)
            ).backward()
            optimizer.step()

    return interleaved_times(
        {"kboolq": lambda: project.fit(batches, epochs=1, verbose=0), "torch": torch_epoch},
        rounds,
        warmup=0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).parents[1] / "../shared/data/boolq",
        help="BoolQ directory for the end-to-end epoch (default: ../shared/data/boolq)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per measurement")
    parser.add_argument(
        "--epoch-steps",
        type=int,
        default=None,
        help="batches in the end-to-end comparison (default: one whole training epoch; 0 skips)",
    )
    parser.add_argument(
        "--epoch-rounds",
        type=int,
        default=5,
        help="end-to-end epochs timed for each loop, alternating; the median is reported "
        "(the epoch time of one loop varies by 15 %% on a shared 2-core machine)",
    )
    parser.add_argument(
        "--glove", default="kumo50", help="vectors for the real data (default: kumo50)"
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per batch (default: 64)")
    parser.add_argument(
        "--pairs",
        default=PAIRS,
        help="embedding dim/hidden pairs to time (default: %(default)s; 4/4 measures the "
        "per-step overhead of each framework, with next to no arithmetic)",
    )
    args = parser.parse_args()
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} ({where}, {torch.get_num_threads()} CPU threads), "
        f"keras {keras.__version__}, batch {args.batch}"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        measure(args)
    for message in sorted({f"{w.category.__name__}: {w.message}" for w in caught}):
        print(f"warning while timing: {message}")


def measure(args: argparse.Namespace) -> None:
    layout, split, table = real_lengths(args.data, args.glove)
    print(f"T = {layout.steps}; a step = forward + backward + AdamW; medians of {args.repeats}")
    header = (
        f"{'D/H':>8} {'keras+mask':>11} {'kboolq':>9} {'torch':>9} {'packed':>9} "
        f"{'b/c':>6} {'a/c':>6} | {'infer a':>8} {'infer b':>8} {'infer c':>8} {'b/c':>6}"
        f" | {'batch':>7} {'batch/b':>7}"
    )
    print(header)
    for pair in args.pairs.split(","):
        dim, hidden = (int(number) for number in pair.split("/"))
        r = bench_pair(dim, hidden, layout, split, args.repeats, args.batch)
        train = f"{r['a_train']:>10.3f}s {r['b_train']:>8.3f}s {r['c_train']:>8.3f}s"
        print(
            f"{dim:>4}/{hidden:<3} {train} {r['packed_train']:>8.3f}s "
            f"{r['b_train'] / r['c_train']:>6.2f} "
            f"{r['a_train'] / r['c_train']:>6.2f} | {r['a_infer']:>7.3f}s {r['b_infer']:>7.3f}s "
            f"{r['c_infer']:>7.3f}s {r['b_infer'] / r['c_infer']:>6.2f} | "
            f"{r['batch'] * 1000:>5.1f}ms {r['batch'] / r['b_train']:>7.1%}"
        )
    steps = args.epoch_steps if args.epoch_steps is not None else -(-len(split) // args.batch)
    if steps and table is not None:
        times = bench_epoch(layout, split, table, steps, args.epoch_rounds, args.batch)
        kboolq_s, torch_s = (statistics.median(times[name]) for name in ("kboolq", "torch"))
        print(
            f"end to end, {steps} real batches ({args.glove}, hidden 128), median of "
            f"{args.epoch_rounds} epochs each: kboolq fit {kboolq_s:.1f} s, plain torch loop "
            f"{torch_s:.1f} s, ratio {kboolq_s / torch_s:.2f}"
        )
        for name, values in times.items():
            print(f"  {name} epochs: " + ", ".join(f"{value:.1f} s" for value in values))


if __name__ == "__main__":
    main()
