"""Train a plan's runs side by side, one thread each, and keep every run that finishes.

    python benchmarks/train_queue.py benchmarks/plans/PLAN.txt [--data data/boolq-pt]
        [--slots 2] [--runs runs] [--kept benchmarks/results/kept]

Each line of the plan is `GROUP/NAME FIT_FLAGS` (`#` starts a comment). A line becomes `python
-m kboolq.fit --data DATA --threads 1 FIT_FLAGS --out RUNS/GROUP/NAME`, run in the plan's order
with at most --slots at a time. A line already kept in KEPT/GROUP/NAME is skipped; an unfinished
run directory goes on where it stopped (kboolq/resume.py); a finished one is only kept. Each run
is kept (benchmarks/keep_scores.py) as soon as it finishes, so a session's end loses at most the
unfinished epochs. The plan is read again before each new training. A queue holds
RUNS/GROUP/NAME.lock while it trains a line, and another queue over the same plan skips a locked
line: two queues can share a plan. Ctrl-C or SIGTERM stops the trainings the way kboolq.fit
stops (each saves its last finished epoch) and waits for them. Logs: RUNS/GROUP/NAME.log."""

from __future__ import annotations

import argparse
import fcntl
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from run_scores import keep

from kboolq.runs.rundir import METRICS_FILE
from kboolq.threads import set_threads


def read_plan(path: Path) -> list[tuple[str, list[str]]]:
    """(GROUP/NAME, fit flags) per line; a line without a GROUP/NAME is refused with its number."""
    plan = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0].count("/") != 1 or words[0].startswith("-"):
            raise SystemExit(f"{path}:{number}: a line starts with GROUP/NAME, not {words[0]!r}")
        plan.append((words[0], words[1:]))
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, help="the plan: one `GROUP/NAME FIT_FLAGS` a line")
    parser.add_argument(
        "--data", default="data/boolq-pt", help="fit's --data (default: %(default)s)"
    )
    parser.add_argument("--slots", type=int, default=2, help="trainings at a time (default: 2)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where runs are trained")
    parser.add_argument(
        "--kept", type=Path, default=Path("benchmarks/results/kept"), help="where runs are kept"
    )
    args = parser.parse_args()
    set_threads(1)
    plan = read_plan(args.plan)
    kept = sum((args.kept / name).exists() for name, _ in plan)
    print(f"{kept} of {len(plan)} runs kept already", flush=True)
    running: dict[str, tuple[subprocess.Popen, IO]] = {}  # name -> (training, its lock)
    tried: set[str] = set()  # lines this queue has started or found locked: not taken again
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in running.values():
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        while not stopping and len(running) < args.slots:
            taken = take(args, tried)
            if taken is None:
                break
            name, flags, lock = taken
            out = args.runs / name
            command = [sys.executable, "-m", "kboolq.fit", "--data", args.data, "--threads", "1"]
            command += [*flags, "--out", str(out)]
            print(f"{time.strftime('%H:%M:%S')} start {name}: {shlex.join(command)}", flush=True)
            with open(f"{out}.log", "a") as log:
                running[name] = (
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT),
                    lock,
                )
        if not running:
            break
        time.sleep(5)
        for name, (process, lock) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            print(f"{time.strftime('%H:%M:%S')} end {name}: exit {process.returncode}", flush=True)
            if process.returncode == 0:
                finished(name, args.runs / name, args.kept / name)
            lock.close()


def take(args: argparse.Namespace, tried: set[str]) -> tuple[str, list[str], IO] | None:
    """The plan's first line to train now, with its lock held: the plan is read again each time,
    so lines added to it meanwhile are taken. Finished runs met on the way are kept."""
    try:
        plan = read_plan(args.plan)
    except SystemExit as error:  # the plan was edited badly meanwhile: take nothing new
        print(error, flush=True)
        return None
    for name, flags in plan:
        out = args.runs / name
        if name in tried or (args.kept / name).exists():
            continue
        tried.add(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{out}.lock", "w")  # noqa: SIM115 (held until the training ends)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"skip {name}: another queue trains it", flush=True)
            lock.close()
            continue
        if (out / METRICS_FILE).is_file():
            finished(name, out, args.kept / name)
            lock.close()
            continue
        return name, flags, lock
    return None


def finished(name: str, run: Path, into: Path) -> None:
    keep(run, into)
    print(f"{time.strftime('%H:%M:%S')} kept {name} in {into}", flush=True)


if __name__ == "__main__":
    main()
