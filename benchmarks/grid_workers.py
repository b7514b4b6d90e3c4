"""Wall time of one grid run by 1 and by 2 workers (the same trials), and the chief's CPU time.

    python benchmarks/grid_workers.py --data ../shared/data/boolq --glove kumo50

Takes the first --rows rows of DATA/train.jsonl (real BoolQ), runs the same 8-point grid
(hidden x lr x dropout, --epochs each) four ways on 127.0.0.1, one after another, each into a
fresh directory with a shared, warmed cache: one process alone (no chief) with all cores; a chief
and 1 worker with all cores; a chief and 1 worker with half of them; a chief and 2 workers with
half each (the README's launch). Prints wall times, the ratio to "1 worker, half the cores", the
chief's CPU time while serving (from its own last line) and whether every mode found the same
scores. With --launcher it compares the one-command launcher instead (`--workers 1` with its
default threads, `--workers 1 --threads CORES`, `--workers 2`), as ratios to `--workers 1`.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["--hidden", "16,32", "--lr", "1e-3,3e-3", "--dropout", "0,0.2", "--weight-decay", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(args, out: Path, threads: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "tuning.grid", "--data", str(args.slice), "--glove", args.glove,
        "--valid-size", str(args.valid_size), "--cache-dir", str(args.cache), "--out", str(out),
        "--epochs", str(args.epochs), "--patience", str(args.epochs), "--verbose", "0",
        "--threads", str(threads), *GRID, *extra,
    ]  # fmt: skip


def run_mode(args, name: str, workers: int, threads: int, root: Path) -> dict:
    out = root / name.replace(" ", "_").replace(",", "").replace("-", "")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    logs = root / f"{out.name}.log"
    started = time.perf_counter()
    if name.startswith("--workers"):  # the one-command launcher
        extra = name.split()  # e.g. "--workers 2" or "--workers 1 --threads 2"
        cmd = _without_threads(command(args, out, threads)) + extra
        with open(logs, "w") as log:
            subprocess.run(cmd, stdout=log, stderr=log, env=os.environ.copy(), check=True)
        chief_cpu = None
    elif workers == 0:
        with open(logs, "w") as log:
            subprocess.run(command(args, out, threads), stdout=log, stderr=log, env=env, check=True)
        chief_cpu = None
    else:
        address = f"127.0.0.1:{free_port()}"
        with open(logs, "w") as log:
            chief = subprocess.Popen(
                command(args, out, threads, "--chief", address), stdout=log, stderr=log, env=env
            )
            members = [
                subprocess.Popen(
                    command(args, out, threads, "--worker", address),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
                for _ in range(workers)
            ]
            for process in [*members, chief]:
                if process.wait() != 0:
                    raise SystemExit(f"{name}: a process failed; see {logs}")
        found = re.search(r"using ([0-9.]+) s of CPU time", logs.read_text())
        chief_cpu = float(found.group(1)) if found else None
    wall = time.perf_counter() - started
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    scores = {
        (r["hidden_size"], r["learning_rate"], r["dropout"]): float(r["val_balanced_accuracy"])
        for r in rows
    }
    return {"name": name, "wall": wall, "chief_cpu": chief_cpu, "scores": scores}


def _without_threads(words: list[str]) -> list[str]:
    at = words.index("--threads")
    return words[:at] + words[at + 2 :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory with train.jsonl")
    parser.add_argument("--glove", default="kumo50")
    parser.add_argument("--rows", type=int, default=1500, help="first rows of train.jsonl")
    parser.add_argument("--valid-size", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to use")
    parser.add_argument(
        "--launcher",
        action="store_true",
        help="compare the one-command launcher instead: --workers 1 (its default threads), "
        "--workers 1 --threads CORES, --workers 2 (threads split)",
    )
    args = parser.parse_args()
    cores = args.cores
    root = Path(tempfile.mkdtemp(prefix="grid-workers-"))
    args.slice, args.cache = root / "data", root / "cache"
    args.slice.mkdir()
    with open(args.data / "train.jsonl") as source:
        lines = [next(source) for _ in range(args.rows)]
    (args.slice / "train.jsonl").write_text("".join(lines))
    subprocess.run(
        [sys.executable, "-m", "kboolq.preprocess", "--data", str(args.slice), "--glove",
         args.glove, "--valid-size", str(args.valid_size), "--cache-dir", str(args.cache)],
        stdout=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    half = max(1, cores // 2)
    modes = [
        (f"one process, {cores} threads", 0, cores),
        (f"chief + 1 worker, {cores} threads", 1, cores),
        (f"chief + 1 worker, {half} threads", 1, half),
        (f"chief + 2 workers, {half} threads each", 2, half),
    ]
    if args.launcher:
        modes = [
            ("--workers 1", 1, half),
            (f"--workers 1 --threads {cores}", 1, cores),
            ("--workers 2", 2, half),
        ]
    results = [run_mode(args, *mode, root) for mode in modes]
    reference = results[0 if args.launcher else 2]["wall"]
    print(f"8-trial grid, {args.rows} real BoolQ rows ({args.valid_size} valid), {args.epochs} "
          f"epochs per trial, {cores} cores; files in {root}")  # fmt: skip
    print(f"{'mode':<40}{'wall':>9}  {'vs ' + results[0 if args.launcher else 2]['name']:>22}"
          f"{'chief CPU':>11}")  # fmt: skip
    for r in results:
        cpu = "-" if r["chief_cpu"] is None else f"{r['chief_cpu']:.2f} s"
        print(f"{r['name']:<40}{r['wall']:>8.1f}s  {r['wall'] / reference:>22.2f}{cpu:>11}")
    first = results[0]["scores"]
    same = all(r["scores"].keys() == first.keys() for r in results)
    largest = max(abs(r["scores"][k] - first[k]) for r in results for k in first) if same else None
    print(f"same 8 grid points in every mode: {same}; largest score difference: {largest}")


if __name__ == "__main__":
    main()
