"""How a command replaces a run directory without ever leaving half of one.

The new run is written in a hidden staging directory beside RUN_DIR (`.NAME.kboolq-staging-*`,
marked inside by a `.kboolq-staging` file) and swapped in with two renames once it is complete:
a crash, Ctrl-C, SIGTERM or SIGKILL at any moment leaves the old run whole or the new one
complete. The user's own files in RUN_DIR (anything kboolq does not write) are carried into the
new run. Only directories with kboolq's own names and marks are ever removed, and only after
the command has claimed its output; a symlinked RUN_DIR is written through to its target.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from kboolq.errors import Interrupted
from kboolq.files import _umask, remove_stale_temporaries
from kboolq.signals import held, raise_if_received

STAGING = "kboolq-staging"
OLD = "kboolq-old"
MARK = ".kboolq-staging"  # the file that marks a staging or parked directory as kboolq's own
TEMPORARY = ".*.tmp*"  # what files.atomic_path leaves when killed mid-write


def is_temporary(name: str) -> bool:
    """A file kboolq leaves only when killed mid-write: never the user's content."""
    return fnmatch.fnmatch(name, TEMPORARY) or name == MARK


def write_target(path: Path) -> Path:
    """The directory a command writes for `path`: a symlink's target (the link stays a link)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def _ours(run_dir: Path, kind: str) -> list[Path]:
    """kboolq's own STAGING or OLD directories beside RUN_DIR: its name and its mark (or, with
    its name, empty: what a kill leaves between remove_marked's last two steps)."""
    run_dir = Path(run_dir)
    return sorted(
        path
        for path in run_dir.parent.glob(f".{run_dir.name}.{kind}-*")
        if path.is_dir()
        and not path.is_symlink()
        and ((path / MARK).is_file() or not any(path.iterdir()))
    )


def remove_marked(path: Path) -> None:
    """Remove a marked directory, its mark last, so that a kill at any moment leaves it marked
    (or empty) and a later command still knows it for kboolq's own."""
    for entry in path.iterdir():
        if entry.name != MARK:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (path / MARK).unlink(missing_ok=True)
    path.rmdir()


def new_staging(run_dir: Path) -> Path:
    """A new, uniquely named, marked staging directory beside RUN_DIR (never one the user made)."""
    name = f".{Path(run_dir).name}.{STAGING}-"
    path = Path(tempfile.mkdtemp(prefix=name, dir=Path(run_dir).parent))
    os.chmod(path, 0o777 & ~_umask())  # mkdtemp makes 0700; a run directory follows umask
    (path / MARK).touch()
    return path


def recover(run_dir: Path) -> None:
    """After a kill between a swap's two renames, put the parked old run back; deletes
    nothing (leftovers go only once the output is claimed: remove_leftovers)."""
    run_dir = Path(run_dir)
    parked = _ours(run_dir, OLD)
    if parked and not run_dir.exists() and not run_dir.is_symlink():
        os.replace(parked[-1], run_dir)
        (run_dir / MARK).unlink(missing_ok=True)


def remove_leftovers(run_dir: Path) -> list[Path]:
    """kboolq's own leftovers of an interrupted command: its marked staging and parked
    directories beside RUN_DIR and its temporary files inside. Call only after the output is
    claimed."""
    removed = [*_ours(run_dir, STAGING), *_ours(run_dir, OLD)]
    for path in removed:
        remove_marked(path)
    run_dir = Path(run_dir)
    if run_dir.is_dir() and not run_dir.is_symlink():
        removed += remove_stale_temporaries(run_dir)
        if (run_dir / MARK).is_file():  # marked just before a swap that never happened
            (run_dir / MARK).unlink()
            removed.append(run_dir / MARK)
    return removed


@contextlib.contextmanager
def staged(run_dir: Path, is_ours: Callable[[str], bool]) -> Iterator[Path]:
    """Yield an empty staging directory; when the block ends normally, swap it in for RUN_DIR
    (carrying over RUN_DIR's entries that `is_ours` does not claim); when it raises, remove it
    and leave RUN_DIR as it was. A Ctrl-C or SIGTERM received at any time before the swap (even
    one that a library swallowed: kboolq.signals) leaves RUN_DIR as it was too; one received
    during the swap ends the command after it, with RUN_DIR holding the new run."""
    Path(run_dir).parent.mkdir(parents=True, exist_ok=True)
    staging = new_staging(run_dir)
    try:
        yield staging
        with held():
            raise_if_received()
            swap(staging, Path(run_dir), is_ours)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and not staging.exists():  # swapped, then stopped
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(f"{run_dir} holds the new run (the signal came as it was "
                              "swapped in)", signum) from None  # fmt: skip
        shutil.rmtree(staging, ignore_errors=True)
        raise


def swap(staging: Path, run_dir: Path, is_ours: Callable[[str], bool]) -> None:
    """Two renames: RUN_DIR parked aside (marked first), staging in, the parked one removed
    last. A kill in between leaves the parked run for recover()."""
    if run_dir.exists():
        for entry in sorted(run_dir.iterdir()):
            if not is_ours(entry.name) and not (staging / entry.name).exists():
                _link_copy(entry, staging / entry.name)
        old = run_dir.parent / f".{run_dir.name}.{OLD}-{secrets.token_hex(4)}"
        (run_dir / MARK).touch()
        os.replace(run_dir, old)
        os.replace(staging, run_dir)
        remove_marked(old)
    else:
        os.replace(staging, run_dir)
    (run_dir / MARK).unlink(missing_ok=True)


def _link_copy(source: Path, target: Path) -> None:
    """The user's file in the new run too: a hard link (no copy, no second disk), a copy where
    links are not possible; the original stays where it is until the swap is done."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=link)
    else:
        link(str(source), str(target))
