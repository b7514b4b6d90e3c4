"""Two trainings at once on one machine: how much slower is each, under each thread setting?

Runs the same small training workload (the default bigru, hidden 128 here, batches of 64 real
BoolQ-shaped rows, T 302, 50d vectors: forward, backward, AdamW) alone and as two processes
started together, for each setting:

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
import subprocess
import sys
import time

import keras
import numpy as np

from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.data.layout import Layout, Split
from kboolq.models.architectures import build_model
from kboolq.threads import set_threads
from kboolq.training import compile_model

SETTINGS = {  # name: (threads: "torch" = leave torch's count alone, None = kboolq's default, env)
    "torch-default": ("torch", {}),
    "passive": ("torch", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "kboolq-default": (None, {}),
}


def worker(threads: str | None, steps: int, hidden: int) -> None:
    if threads != "torch":
        set_threads(threads)
    rng = np.random.default_rng(0)
    layout, rows = Layout(q_max=21, p_max=273), 64 * (steps + 1)
    q_len = rng.integers(4, 22, rows).astype(np.int32)
    p_len = np.minimum(rng.gamma(3.0, 40.0, rows).astype(np.int32) + 20, 273).astype(np.int32)
    ids = rng.integers(1, 5000, (rows, layout.steps)).astype(np.int32)
    table = rng.normal(size=(5000, 50)).astype(np.float32)
    batches = Batches(Split(ids, q_len, p_len, (rng.random(rows) < 0.6).astype(np.int8)), table, 64)
    keras.utils.set_random_seed(0)
    config = Config(hidden_size=hidden)
    model = compile_model(build_model(config, layout, 50), config)
    times = []
    for index in range(steps + 1):  # the first step warms up
        inputs, labels = batches[index]
        start = time.perf_counter()
        model.train_on_batch(inputs, labels)
        times.append(time.perf_counter() - start)
    print(json.dumps({"ms": statistics.median(times[1:]) * 1000}))


def run(setting: str, processes: int, steps: int, hidden: int) -> list[float]:
    _, extra = SETTINGS[setting]
    command = [sys.executable, __file__, "--worker", setting, "--steps", str(steps)]
    command += ["--hidden", str(hidden)]
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
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="which settings to run")
    parser.add_argument("--hidden", type=int, default=128, help="bigru hidden size")
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(SETTINGS[args.worker][0], args.steps, args.hidden)
        return
    print(
        f"{os.cpu_count()} CPUs; bigru hidden {args.hidden}, batch 64, T 302, 50d; "
        f"{args.steps} timed steps per process"
    )
    print(f"{'setting':<16} {'alone ms/step':>14} {'two at once ms/step':>22} {'ratio':>7}")
    for setting in args.settings.split(","):
        alone = run(setting, 1, args.steps, args.hidden)[0]
        both = run(setting, 2, args.steps, args.hidden)
        ratio = statistics.mean(both) / alone
        pair = " / ".join(f"{ms:.0f}" for ms in both)
        print(f"{setting:<16} {alone:>14.0f} {pair:>22} {ratio:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
