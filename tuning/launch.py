"""`python -m tuning.grid ... --workers N`: one command runs the grid on a chief and N local
workers (the distributed mode of tuning/distributed.py, on 127.0.0.1).

The launcher picks a free port and a fresh grid secret, starts the chief and the workers with
the user's other arguments, gives each worker its share of the CPU threads and a GPU taken
round-robin from CUDA_VISIBLE_DEVICES (several workers may share one), and prints every
process's output in one stream, each line tagged with its process. A worker that dies (a crash,
a kill) is replaced, and its trial runs again through the lease; Ctrl-C or SIGTERM stops every
process (each finishes its batch first); the command ends when the chief does, with its status.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import torch

from kboolq.errors import Interrupted, UserError
from kboolq.threads import available_cores
from tuning.auth import SECRET_ENV

REPLACEMENTS = 3  # per worker slot: a worker that keeps dying is a problem to report, not retry
STOP_GRACE = 60.0  # seconds a process gets to finish its batch after SIGTERM before SIGKILL
DONE_GRACE = 5.0  # seconds the workers get to end on their own once the chief has ended
ORPHAN_GRACE = 30.0  # seconds a grid process outlives its launcher at most (follow_launcher)
LAUNCHER_ENV = "KBOOLQ_GRID_LAUNCHER"  # the launcher's pid, in the environment of its children


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without(argv: Sequence[str], flags: Sequence[str]) -> list[str]:
    """argv without the given flags and their values (`--flag V` and `--flag=V`)."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in flags:
            skip = "=" not in word
            continue
        kept.append(word)
    return kept


def gpus() -> list[str]:
    """The GPUs to hand out: CUDA_VISIBLE_DEVICES's entries, else every visible CUDA device,
    else none (a CPU machine)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def worker_threads(threads: int | None, workers: int) -> int:
    """Each worker's share of the threads: --threads (or every core) split among the workers."""
    return max(1, (threads or available_cores()) // workers)


class Launcher:
    """The chief and its workers as child processes, their output merged into one stream."""

    def __init__(self, argv: Sequence[str], workers: int, threads: int | None) -> None:
        self.base = without(argv, ("--workers", "--threads", "--chief", "--worker"))
        self.workers, self.address = workers, f"127.0.0.1:{free_port()}"
        self.threads = worker_threads(threads, workers)
        self.gpus = gpus()
        self.env = {**os.environ, SECRET_ENV: os.environ.get(SECRET_ENV) or _new_secret()}
        self.lock = threading.Lock()
        self.readers: list[threading.Thread] = []
        self.replaced = [0] * workers

    def _start(self, name: str, role: str, threads: int, gpu: str | None) -> subprocess.Popen:
        command = [sys.executable, "-m", "tuning.grid", *self.base, f"--{role}", self.address]
        env = {**self.env, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        env[LAUNCHER_ENV] = str(os.getpid())
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        process = subprocess.Popen(
            [*command, "--threads", str(threads)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            errors="replace",
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops each in turn
            preexec_fn=_die_with_parent,
        )
        where = f" on GPU {gpu}" if gpu is not None else ""
        self.say(f"[launcher] {name}: pid {process.pid}, {threads} threads{where}")
        reader = threading.Thread(target=self._relay, args=(name, process), daemon=True)
        reader.start()
        self.readers.append(reader)
        return process

    def _relay(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.say(f"[{name}] {line.rstrip()}")

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)

    def _worker(self, index: int) -> subprocess.Popen:
        gpu = self.gpus[index % len(self.gpus)] if self.gpus else None
        return self._start(f"worker {index + 1}", "worker", self.threads, gpu)

    def run(self) -> int:
        gpus = f", GPUs {','.join(self.gpus)} round-robin" if self.gpus else ""
        self.say(
            f"[launcher] a chief and {self.workers} workers on {self.address}, "
            f"{self.threads} threads each{gpus}"
        )
        chief = self._start("chief", "chief", 1, None)
        workers = [self._worker(i) for i in range(self.workers)]
        processes = [chief, *workers]
        try:
            while chief.poll() is None:
                time.sleep(0.2)
                for index, worker in enumerate(workers):
                    code = worker.poll()
                    if code is None or code == 0:
                        continue
                    if code == 2:  # a user error: every worker would say the same
                        raise UserError(f"worker {index + 1} stopped (see its lines above)")
                    if self.replaced[index] >= REPLACEMENTS:
                        raise UserError(
                            f"worker {index + 1} died {REPLACEMENTS + 1} times (last: "
                            f"{_status(code)}); stopping the grid (it resumes when run again)"
                        )
                    self.replaced[index] += 1
                    self.say(
                        f"[launcher] worker {index + 1} (pid {worker.pid}) died ({_status(code)});"
                        " starting another: its trial runs again once its lease runs out"
                    )
                    workers[index] = self._worker(index)
                    processes.append(workers[index])
            # The chief told the workers it talks to that the grid is done; one still loading
            # its data (a resumed grid that was already done) waits for a chief that is gone.
            deadline = time.monotonic() + DONE_GRACE
            while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
                time.sleep(0.2)
            waiting = [w for w in workers if w.poll() is None]
            if waiting:
                self.say(f"[launcher] the chief is done; stopping {len(waiting)} worker"
                         f"{'s' * (len(waiting) != 1)} that did not hear it")  # fmt: skip
                stop(waiting)
        except KeyboardInterrupt as exc:
            self.say("[launcher] stopping the chief and every worker")
            stop(processes)
            raise Interrupted(
                "interrupted: every grid process stopped; run the same command to resume",
                getattr(exc, "signum", signal.SIGINT),
            ) from None
        except BaseException:
            stop(processes)
            raise
        finally:
            for reader in self.readers:
                reader.join(timeout=5)
        if chief.returncode != 0:
            stop(processes)
            raise UserError(f"the chief stopped ({_status(chief.returncode)}; see above)")
        return 0


def stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every process still running (they finish their batch), SIGKILL the ones that
    are still there after STOP_GRACE seconds."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _status(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _die_with_parent() -> None:
    """In the child: SIGTERM when the launcher dies, even by SIGKILL (Linux's parent-death
    signal), so that no grid process outlives the command; elsewhere nothing. follow_launcher
    is the backstop."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def follow_launcher() -> None:
    """In a process that the launcher started: a thread that ends it at most ORPHAN_GRACE
    seconds after the launcher is gone. The parent-death signal normally stops it sooner (it
    finishes its batch); this catches what that misses: a launcher that died before the signal
    was armed, a system without it, or a process that does not stop on it in time. An orphan
    that gets as far as Python's exit handlers ends there, before the interpreter's teardown,
    where the thread can no longer run (a hang there, such as in gRPC's clean-up, would be
    final)."""
    value = os.environ.pop(LAUNCHER_ENV, None)
    if value is None or not value.isdigit():
        return
    launcher = int(value)

    def end_orphan() -> None:
        if os.getppid() != launcher:
            os._exit(128 + signal.SIGTERM)

    atexit.register(end_orphan)

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(0.5)
        time.sleep(ORPHAN_GRACE)
        with contextlib.suppress(OSError):  # stderr is most often the dead launcher's pipe
            os.write(2, f"tuning.grid: the launcher (pid {launcher}) is gone; stopping\n".encode())
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="follow-launcher", daemon=True).start()


def _new_secret() -> str:
    return secrets.token_urlsafe(32)
