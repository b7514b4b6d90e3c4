"""Who may write a directory: one kboolq command at a time (a lock), and only into a new or empty
directory or one of its own kind (the output guard every command passes before it writes).

`claimed` is the one output protocol that fit, ensemble, export and the grid's best/ follow:
a symlink's target, the lock, a parked run put back, the claim, kboolq's own leftovers removed;
its `Claim.staged()` then writes the new output beside the old one and swaps it in whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kboolq.errors import UserError
from kboolq.runs.staging import is_temporary, recover, remove_leftovers, staged, write_target

LOCKS = Path(tempfile.gettempdir()) / "kboolq-locks"


def lock_path(path: Path) -> Path:
    return LOCKS / f"{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:32]}.lock"


@contextlib.contextmanager
def lock_output(path: Path) -> Iterator[None]:
    """Only one kboolq command writes `path` at a time: an exclusive lock, taken without
    waiting, on a file named after the path's absolute form in the machine's temporary folder
    (nothing is added to the user's folders). The operating system drops the lock when its
    process ends, however it ends, so a killed command never leaves a stale lock behind."""
    path = Path(path)
    LOCKS.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path(path), "a+")  # noqa: SIM115 (held until the end)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserError(
            f"{path}: in use by pid {holder} (another kboolq command is writing it); "
            "wait for it or choose another directory"
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def claim_output(
    path: Path,
    kind: str,
    is_kind,
    overwrite: bool = False,
    protect: Sequence[Path] = (),
    flag: str = "--out",
) -> bool:
    """The one guard before a command writes a directory of its own `kind` ("run", "grid",
    "dataset"): a new or empty directory is fine; one of that kind only with `overwrite` (the
    grid passes it always: it resumes its own directory); anything else, or a directory that
    is or holds one of the `protect`ed inputs (resolved: through symlinks and ".."), is refused.

    Returns whether `path` already holds a directory of that kind.
    """
    path = Path(path)
    for other in protect:
        given, other = Path(other), Path(other).resolve()  # through symlinks and ".."
        if path.resolve() == other:
            raise UserError(
                f"{flag} {path}: is one of this command's inputs; choose a new directory"
            )
        if path.resolve() in other.parents:
            raise UserError(
                f"{flag} {path}: holds {given}, one of this command's inputs; choose a "
                "directory outside it"
            )
    if not path.exists():
        return False
    if not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a directory")
    entries = sorted(p.name for p in path.iterdir() if not is_temporary(p.name))
    if not entries:
        return False
    if is_kind(path):
        if overwrite:
            return True
        raise UserError(
            f"{flag} {path}: already holds a kboolq {kind}; pass --overwrite to replace it"
        )
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise UserError(
        f"{flag} {path}: not empty ({shown}) and not a kboolq {kind}; refusing to write there, "
        "choose a new or empty directory"
    )


@dataclass(frozen=True)
class Kind:
    """A kind of output: its name in messages, how to tell a directory of that kind, and which
    entries of one kboolq writes (the others are the user's, carried into a replacement)."""

    name: str
    is_kind: Callable[[Path], bool]
    is_ours: Callable[[str], bool]


@dataclass(frozen=True)
class Claim:
    """An output directory this command holds: `path` (a symlink's target) and whether it
    already `held` one of its kind (being replaced or resumed)."""

    path: Path
    held: bool
    kind: Kind

    def staged(self) -> contextlib.AbstractContextManager[Path]:
        """A staging directory that becomes `path` whole when the block ends (runs.staging)."""
        return staged(self.path, self.kind.is_ours)


@contextlib.contextmanager
def claimed(
    path: Path,
    kind: Kind,
    overwrite: bool = False,
    protect: Sequence[Path] = (),
    flag: str = "--out",
    resumable: Callable[[Path], bool] | None = None,
) -> Iterator[Claim]:
    """Hold `path` for writing a `kind` for as long as the block runs: written through a
    symlink, locked against other kboolq commands, a run parked by a killed swap put back,
    claimed (claim_output: a directory of that kind only with `overwrite`, or when
    `resumable` says this command may take it over), then kboolq's own leftovers removed."""
    out = write_target(path)  # a symlinked output is written through, never replaced
    with lock_output(out):
        recover(out)
        take = overwrite or (resumable is not None and resumable(out))
        held = claim_output(out, kind.name, kind.is_kind, take, protect, flag)
        remove_leftovers(out)  # kboolq's own, and only once the output is claimed
        yield Claim(out, held, kind)
