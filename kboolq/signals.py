"""Ctrl-C and SIGTERM that cannot be lost: every one a command receives is recorded here.

A signal handler raises its exception wherever Python happens to be, and some of those places
swallow it: a bare `except:` inside a library (Keras, building a model), or a `__del__`, whose
exceptions Python only prints. The command would then run on and replace a run it was told to
leave whole. So the handlers record each signal before they raise (`received`), and a command
checks the record where it matters (`raise_if_received`): before training starts, and before
a staged run is swapped in (kboolq.runs.staging), with the signals held during the swap itself
(`held`). A handler that finds itself inside a `__del__` records the signal without raising
there; the next check raises it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from kboolq.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_command = [False]  # whether a command runs (kboolq.cli): only its signals are recorded


def received() -> int | None:
    """The last signal the running command received, or None."""
    return _received[-1] if _received else None


def record(signum: int) -> None:
    if _command[0]:
        _received.append(signum)


def begin() -> None:
    """A command starts: nothing received yet, and from now on every signal is recorded."""
    _received.clear()
    _command[0] = True


def end() -> None:
    """The command is over: its signals were acted on; the library alone records nothing."""
    _received.clear()
    _command[0] = False


def raise_if_received() -> None:
    if _received:
        raise Interrupted(signum=_received[-1])


def in_finalizer(frame) -> bool:
    """Whether `frame` runs inside a `__del__`, where a raised exception is only printed."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def raising_handler(signum, frame) -> None:
    """Record the signal, then raise Interrupted, except inside a __del__ (see the module)."""
    record(signum)
    if not in_finalizer(frame):
        raise Interrupted(signum=signum)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM only recorded in the block, in the main thread; one that arrives
    meanwhile is raised as Interrupted at the block's end, so the block itself (a swap of two
    renames) is never cut in half. Elsewhere a plain block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def record_only(signum, frame) -> None:
        came.append(signum)
        record(signum)

    previous = {}
    try:
        for signum in SIGNALS:
            handler = signal.getsignal(signum)
            if handler is not signal.SIG_IGN:  # started ignored (nohup): it stays so
                previous[signum] = signal.signal(signum, record_only)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if came:
        raise Interrupted(signum=came[-1])
