"""A finished trial's run directory sent from a worker to the chief: packed into one message,
checked (only a run's own files, within a size cap), unpacked beside the trial and moved in
once the grid's own check (`trial_check`: the model loads and fits the grid) has passed."""

from __future__ import annotations

import io
import json
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt

from kboolq.config import Config
from kboolq.data.layout import Prepared
from kboolq.errors import UserError
from kboolq.files import write_bytes
from kboolq.runs.rundir import (
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    check_fits,
    load_model,
    read_info,
)

MAX_UPLOAD = 256 << 20  # bytes of one trial's files, unpacked; a larger upload is refused


NOT_SENT = {"trial.json"}  # the chief's own file in a trial directory


# The files of a run directory that a worker may send (what train_model and write_info write).
RUN_UPLOAD = {MODEL_FILE, CONFIG_FILE, HISTORY_FILE, CURVES_FILE, METRICS_FILE}


class UploadRejected(ValueError):
    """A worker's files that cannot count: the one-line reason is the trial's message."""


def pack_files(run_dir: Path, trial_id: str) -> bytes:
    """One message: a JSON header line, then a zip of the trial's run directory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(Path(run_dir).iterdir()):
            if path.is_file() and path.name not in NOT_SENT and not path.name.startswith("."):
                archive.write(path, path.name)
    header = {
        "trial_id": trial_id,
        "host": socket.gethostname(),
        "dir": str(Path(run_dir).resolve()),
    }
    return json.dumps(header).encode() + b"\n" + buffer.getvalue()


def read_header(message: bytes) -> dict[str, Any]:
    try:
        header = json.loads(message.partition(b"\n")[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or not all(
        isinstance(header.get(k), str) for k in ("trial_id", "host", "dir")
    ):
        raise UploadRejected("the upload's header is not a kboolq trial header")
    return header


def unpack_files(message: bytes, target: Path) -> Path | None:
    """Check a worker's upload and unpack it into a new hidden directory beside `target` (the
    chief's trial directory); None when the worker's directory is the chief's (a shared
    filesystem: nothing travels). Only a run's own file names, no paths, at most MAX_UPLOAD
    bytes unpacked; anything else raises UploadRejected and nothing is kept."""
    header = read_header(message)
    body = message.partition(b"\n")[2]
    target = Path(target).resolve()
    if header["host"] == socket.gethostname() and Path(header["dir"]) == target:
        return None
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile:
        raise UploadRejected("the upload is not a zip archive") from None
    with archive:
        members = archive.infolist()
        for member in members:
            if member.filename not in RUN_UPLOAD:
                allowed = ", ".join(sorted(RUN_UPLOAD))
                raise UploadRejected(
                    f"the upload holds {member.filename!r}, not a run's file ({allowed})"
                )
        size = sum(member.file_size for member in members)
        if size > MAX_UPLOAD:
            raise UploadRejected(f"the upload unpacks to {size} bytes, over {MAX_UPLOAD}")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".upload-{target.name}-", dir=target.parent))
        try:
            for member in members:
                data = archive.read(member)
                if len(data) > member.file_size:
                    raise UploadRejected(f"{member.filename}: larger than its zip entry says")
                (staging / member.filename).write_bytes(data)
        except (UploadRejected, zipfile.BadZipFile, OSError, EOFError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, UploadRejected):
                raise
            raise UploadRejected(f"the upload cannot be unpacked ({exc})") from None
    return staging


def move_in(staging: Path, target: Path) -> list[str]:
    """Move the checked files of an upload into the trial directory, each file atomically."""
    written = []
    for path in sorted(staging.iterdir()):
        write_bytes(target / path.name, path.read_bytes())
        written.append(path.name)
    shutil.rmtree(staging, ignore_errors=True)
    return written


def trial_check(config_of: Callable[[kt.HyperParameters], Config], prepared: Prepared):
    """The chief's check of a trial's files before they count: config.json holds the trial's
    own grid point (`config_of` its hyperparameters) and the grid's layout and vectors, and
    model.keras loads and takes them. Returns accept(trial, directory) -> None, or the
    one-line reason the trial fails."""
    layout, dim = prepared.layout, prepared.lookup.dim

    def accept(trial, directory: Path) -> str | None:
        try:
            info = read_info(directory)
            if info.config != config_of(trial.hyperparameters.copy()):
                return "config.json holds other hyperparameters than the trial's grid point"
            if info.layout != layout or info.vectors.dim != dim:
                return "config.json's layout or vector size is not the grid's"
            check_fits(load_model(directory), info, directory)
        except UserError as exc:
            return str(exc).splitlines()[0].replace(str(directory), "the uploaded run")
        return None

    return accept
