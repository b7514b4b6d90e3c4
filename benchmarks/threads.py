"""Two trainings at once on one machine: how much slower is each, under each thread setting?

Runs the same small training workload (the default bigru, hidden 128 unless --hidden, batches
of 64 real BoolQ train rows with kumo50 vectors: forward, backward, AdamW) alone and as two
processes whose timed steps start together, for each setting:

  torch-default     what torch does by itself, and kboolq did before --threads: one OpenMP
                    thread per core, threads that spin while they wait
  passive           the same with OMP_WAIT_POLICY=PASSIVE (a waiting thread sleeps)
  kboolq-default    kboolq's default now: half the available cores (kboolq.threads)

and prints ms per step (median of the timed steps) and each setting's two-at-once / alone ratio.

    python benchmarks/threads.py [--steps 6] [--hidden 128] [--settings torch-default,...]
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.data.boolq import load_boolq
from kboolq.data.vectors import load_glove
from kboolq.data.layout import Layout, Lookup, Split, prepare
from kboolq.files import default_cache_dir
from kboolq.models.architectures import build_model
from kboolq.threads import set_threads
from kboolq.training import compile_model

SETTINGS = {  # name: (threads: "torch" = leave torch's count alone, None = kboolq's default, env)
    "torch-default": ("torch", {}),
    "passive": ("torch", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "kboolq-default": (None, {}),
}


def training_data(data: Path) -> tuple[Layout, Batches]:
    """Real BoolQ train batches (kumo50 vectors) when `data` is there, else synthetic rows of the
    same shape."""
    if data.is_dir():
        cache = default_cache_dir()
        prepared, _ = prepare(load_boolq(str(data)), load_glove("kumo50", cache), cache)
        train = prepared.splits["train"]
        return prepared.layout, Batches(train, prepared.lookup, 64, shuffle=True, seed=0)
    rng = np.random.default_rng(0)
    layout, rows = Layout(q_max=21, p_max=273), 64 * 20
    q_len = rng.integers(4, 22, rows).astype(np.int32)
    p_len = np.minimum(rng.gamma(3.0, 40.0, rows).astype(np.int32) + 20, 273).astype(np.int32)
    ids = rng.integers(1, 5000, (rows, layout.steps)).astype(np.int32)
    table = rng.normal(size=(5000, 50)).astype(np.float32)
    labels = (rng.random(rows) < 0.6).astype(np.int8)
    return layout, Batches(
        Split(ids, q_len, p_len, labels), Lookup(table, np.zeros(len(table), np.int32)), 64
    )


def wait_for_all(barrier: Path, processes: int) -> None:
    """Start timing only when every process is ready, so the steps really overlap."""
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < processes:
        time.sleep(0.02)


def worker(threads: str | None, steps: int, hidden: int, data: Path, barrier: Path, n: int):
    if threads != "torch":
        set_threads(threads)
    layout, batches = training_data(data)
    keras.utils.set_random_seed(0)
    config = Config(hidden_size=hidden)
    model = compile_model(build_model(config, layout, batches.table.shape[1]), config)
    wait_for_all(barrier, n)
    times = []
    for index in range(steps + 1):  # the first step warms up
        inputs, labels = batches[index]
        start = time.perf_counter()
        model.train_on_batch(inputs, labels)
        times.append(time.perf_counter() - start)
    print(json.dumps({"ms": statistics.median(times[1:]) * 1000}))


def run(setting: str, processes: int, steps: int, hidden: int, data: Path) -> list[float]:
    _, extra = SETTINGS[setting]
    barrier = Path(tempfile.mkdtemp(prefix="kboolq-threads-"))
    command = [sys.executable, __file__, "--worker", setting, "--steps", str(steps)]
    command += ["--hidden", str(hidden), "--data", str(data), "--barrier", str(barrier)]
    command += ["--processes", str(processes)]
    unset = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in unset} | extra
    started = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)
    ]
    results = []
    for process in started:
        out, _ = process.communicate(timeout=3600)
        results.append(json.loads(out.strip().splitlines()[-1])["ms"])
    shutil.rmtree(barrier, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="which settings to run")
    parser.add_argument("--hidden", type=int, default=128, help="bigru hidden size")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).parents[1] / "../shared/data/boolq",
        help="BoolQ directory for real batches (default: ../shared/data/boolq; synthetic rows "
        "of the same shape when it is missing)",
    )
    parser.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(
            SETTINGS[args.worker][0], args.steps, args.hidden, args.data, args.barrier,
            args.processes,
        )  # fmt: skip
        return
    print(
        f"{os.cpu_count()} CPUs; bigru hidden {args.hidden}, batch 64; "
        f"{args.steps} timed steps per process"
    )
    real = args.data.is_dir()
    if real:  # converted once here, so the timed processes only read the cache
        training_data(args.data)
    print(f"batches: {'real BoolQ train rows, kumo50' if real else 'synthetic rows'}")
    print(f"{'setting':<16} {'alone ms/step':>14} {'two at once ms/step':>22} {'ratio':>7}")
    for setting in args.settings.split(","):
        alone = run(setting, 1, args.steps, args.hidden, args.data)[0]
        both = run(setting, 2, args.steps, args.hidden, args.data)
        ratio = statistics.mean(both) / alone
        pair = " / ".join(f"{ms:.0f}" for ms in both)
        print(f"{setting:<16} {alone:>14.0f} {pair:>22} {ratio:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
