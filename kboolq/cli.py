"""What every command shares: the data/vector flags, the cache directory and error handling.

This is the command layer's own module: commands import it, the library never does.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import keras

from kboolq import signals
from kboolq.config import DataSettings, add_data_arguments, from_args
from kboolq.errors import UserError
from kboolq.files import default_cache_dir
from kboolq.threads import default_threads


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The DataSettings flags and --cache-dir."""
    add_data_arguments(parser)
    add_cache_argument(parser)


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where converted vectors and preprocessed data are cached "
        f"(default: $KBOOLQ_CACHE_DIR or {default_cache_dir()})",
    )


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="Keras output: 0 silent, 1 progress bar, 2 one line per epoch (default: 1 on a "
        "terminal, 2 when the output goes to a file or pipe, so logs hold no bar escapes)",
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for this process (default: half the available cores, here "
        f"{default_threads()}, so that two processes share the machine without slowing each "
        "other down; all cores is fastest for a process that has the machine to itself)",
    )


def verbosity(args: argparse.Namespace) -> int:
    if args.verbose is not None:
        return args.verbose
    return 1 if sys.stdout.isatty() else 2


def cache_dir(args: argparse.Namespace) -> Path:
    return args.cache_dir or default_cache_dir()


def data_settings(args: argparse.Namespace) -> DataSettings:
    return from_args(DataSettings, args)


def run_command(
    main: Callable[[list[str] | None], int | None], prog: str
) -> Callable[[list[str] | None], int]:
    """Wrap a command's main: user errors print one message and exit 2; Ctrl-C and SIGTERM
    (handled alike: what the command kept is said in one line) exit 130 and 143."""

    def wrapped(argv: list[str] | None = None) -> int:
        try:
            with terminate_as_interrupt():
                return main(argv) or 0
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # unwritable, read-only, missing or clashing paths
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"{prog}: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            said = str(exc) or f"interrupted ({signal.Signals(signum).name})"
            print(f"{prog}: {said}", file=sys.stderr)
            return 128 + signum

    return wrapped


class terminate_as_interrupt:  # noqa: N801 (a context manager, used as a statement)
    """SIGTERM raises Interrupted, as Ctrl-C raises KeyboardInterrupt, so that the same clean-up
    runs for both (training finishes its batch first: training.StopOnInterrupt). Both are
    recorded as they arrive (kboolq.signals), so one that a library swallows still stops the
    command before it replaces anything."""

    def __enter__(self) -> None:
        self.previous = {}
        signals.begin()
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in signals.SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup: stays ignored
                self.previous[signum] = signal.signal(signum, signals.raising_handler)

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        signals.end()  # the command is over: its signals were acted on


def on_backend(backend: str, module: str, argv: list[str] | None) -> int | None:
    """Run `python -m MODULE ARGV` with KERAS_BACKEND=`backend` in a child process, when Keras
    runs on another backend here (a run's .keras file loads on any backend); returns its exit
    status, or None when this process already runs on `backend`. Ctrl-C reaches the child from
    the terminal; a SIGTERM to this process is passed on, and the child's own exit status and
    one-line message are what the user sees."""
    here = keras.backend.backend()
    if here == backend:
        return None
    print(
        f"{module}: KERAS_BACKEND={here}; this command runs on the {backend} backend, so it "
        f"continues in a child process with KERAS_BACKEND={backend}",
        file=sys.stderr,
        flush=True,
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    env = {**os.environ, "KERAS_BACKEND": backend}
    child = subprocess.Popen([sys.executable, "-m", module, *argv], env=env)
    try:
        return child.wait()
    except KeyboardInterrupt as exc:  # Ctrl-C (the child has it too) or SIGTERM (pass it on)
        signum = getattr(exc, "signum", signal.SIGINT)
        if signum != signal.SIGINT:
            child.send_signal(signum)
        try:
            return child.wait()
        except KeyboardInterrupt:  # a second signal: end the child now
            child.kill()
            child.wait()
            raise exc from None
