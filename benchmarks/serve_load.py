"""Requests per second and latency of `python -m kboolq.serve` on this machine, against the same
rows scored in-process with kboolq.load_run(...).predict (the reference, measured in the same run).

    python benchmarks/serve_load.py RUN_DIR --rows tests/data/boolq-real/rows.jsonl [--seconds 20]

Starts the server as its own process on a free local port and talks to it with urllib over a
real socket. Two loads: single rows (1 client one after another, then 8 clients at once) and
batches of 64 rows (1 client). Prints, per load, requests/s, rows/s, p50 and p99 latency, and the
ratio of the p50 to the in-process time of the same request.
"""

import kboolq  # noqa: F401, I001  (first: selects the torch backend before keras loads)
import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from kboolq.runs.api import load_run
from kboolq.data.boolq import read_rows


def _post(url: str, payload: bytes) -> float:
    request = urllib.request.Request(
        url, data=payload, headers={"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
    return time.perf_counter() - start


def _load(url: str, payloads: list[bytes], clients: int, seconds: float) -> list[float]:
    """Each client posts payloads round-robin until `seconds` passed; every latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            took = _post(url, payloads[i % len(payloads)])
            with lock:
                latencies.append(took)
            i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rows", type=Path, default=Path("tests/data/boolq-real/rows.jsonl"))
    parser.add_argument("--seconds", type=float, default=20.0, help="per load")
    args = parser.parse_args()
    rows = [{"question": r.question, "passage": r.passage} for r in read_rows(args.rows)]
    run = load_run(args.run_dir)
    run.predict(rows[:64])  # warm
    direct_one = statistics.median(
        _timed(lambda i=i: run.predict([rows[i % len(rows)]])) for i in range(50)
    )
    direct_64 = statistics.median(_timed(lambda: run.predict(rows[:64])) for _ in range(10))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "kboolq.serve", str(args.run_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/predict"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _post(url, json.dumps(rows[0]).encode())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        singles = [json.dumps(row).encode() for row in rows]
        batches = [json.dumps(rows[i : i + 64]).encode() for i in range(0, len(rows) - 63, 64)]
        print(
            f"{args.run_dir} ({run.info.config.arch}); in-process: 1 row "
            f"{direct_one * 1e3:.1f} ms, 64 rows {direct_64 * 1e3:.1f} ms"
        )
        print("| load | clients | requests/s | rows/s | p50 ms | p99 ms | p50 / in-process |")
        print("|---|---|---|---|---|---|---|")
        for name, payloads, clients, per, direct in (
            ("single rows", singles, 1, 1, direct_one),
            ("single rows", singles, 8, 1, direct_one),
            ("batches of 64", batches, 1, 64, direct_64),
        ):
            start = time.monotonic()
            latencies = _load(url, payloads, clients, args.seconds)
            rate = len(latencies) / (time.monotonic() - start)
            p50, p99 = _quantile(latencies, 0.5), _quantile(latencies, 0.99)
            print(
                f"| {name} | {clients} | {rate:.1f} | {rate * per:.0f} | {p50 * 1e3:.1f} | "
                f"{p99 * 1e3:.1f} | {p50 / direct:.2f} |"
            )
    finally:
        server.terminate()
        server.wait(timeout=60)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
