"""CPU threads: how many each kboolq process computes with.

torch starts one OpenMP thread per core, and its threads spin while they wait for each other.
Two such processes on one machine oversubscribe it: on a 2-core machine each of two trainings
ran 4.5-5.8x slower than alone (more than the 2x of sharing; benchmarks/threads.py; a
first-run report measured 73x on another workload). kboolq therefore computes with half the
available cores by default, so two processes never oversubscribe the machine (one alone loses
21-27 % per step here, the recurrent steps being small); --threads N sets the count (N = all
cores is fastest for a process that has the machine to itself). Sleeping instead of spinning
(OMP_WAIT_POLICY=PASSIVE) was measured too: it made a training alone 2.3x slower, so it is
not used.
"""

from __future__ import annotations

import os
import sys

import torch

from kboolq.errors import UserError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    return max(1, available_cores() // 2)


def set_threads(threads: int | None) -> int:
    """Compute with `threads` CPU threads (None: half the available cores); returns the count."""
    if threads is None:
        threads = default_threads()
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    cores = available_cores()
    if threads > cores:  # more threads than cores only oversubscribe (and 100,000 crash torch)
        print(
            f"kboolq: --threads {threads} is more than the {cores} cores available; using {cores}",
            file=sys.stderr,
        )
        threads = cores
    torch.set_num_threads(threads)
    return threads
