"""A run directory: model.keras plus config.json, everything needed to reuse the model.

config.json (format 1) holds the hyperparameters, the data settings, the layout and the vectors'
fingerprint; open_run gives evaluate, predict and ensemble the model with the vectors and
layout to encode new rows exactly as training did. claim_output is the one guard every command
passes before it writes a directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import keras
import numpy as np

import kboolq
from kboolq.config import Config, DataSettings
from kboolq.data.batches import STEMS
from kboolq.data.boolq import Row, parse_row
from kboolq.data.glove import Glove, load_glove
from kboolq.data.layout import Encoded, Layout, encode
from kboolq.errors import UserError
from kboolq.evaluation import predict_split  # also registers the metrics models compile with
from kboolq.files import atomic_path, default_cache_dir, write_json
from kboolq.models import gru, layers  # noqa: F401  (register the custom layers for loading)
from kboolq.models.averaging import average
from kboolq.staging import MARK

FORMAT = 1
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
RUN_FILES = (
    MODEL_FILE, CONFIG_FILE, "history.csv", "metrics.json", "report.json", "members.json",
    "seeds.json", "learning_curves.png",
)  # fmt: skip
PLOT_FILES = re.compile(r"(valid|test)_(confusion_matrix|roc|pr)\.png")  # evaluate's plots
RUN_DIRS = ("members",)  # a seed ensemble's member runs
TEMPORARY = ".*.tmp*"  # what files.atomic_path leaves when killed mid-write


@dataclass(frozen=True)
class Vectors:
    source: str
    dim: int
    fingerprint: str


@dataclass(frozen=True)
class RunInfo:
    config: Config
    data: DataSettings  # data = the resolved source: hub, tfds or an absolute directory
    layout: Layout
    vectors: Vectors
    preprocess_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kboolq_version": kboolq.__version__,
            "hyperparameters": self.config.to_dict(),
            "layout": asdict(self.layout),
            "embeddings": asdict(self.vectors),
            "data": {
                "source": self.data.data,
                "valid_size": self.data.valid_size,
                "passage_percentile": self.data.passage_percentile,
                "question_percentile": self.data.question_percentile,
                "accents": self.data.accents,
                "preprocess_fingerprint": self.preprocess_fingerprint,
            },
        }


def write_info(run_dir: Path, info: RunInfo) -> None:
    write_json(Path(run_dir) / CONFIG_FILE, info.to_dict())


def save_model(model: keras.Model, run_dir: Path) -> None:
    with atomic_path(Path(run_dir) / MODEL_FILE) as tmp:
        model.save(tmp)


def save_ensemble(
    work: Path, models: list[keras.Model], members: list[Path], run_dir: Path
) -> keras.Model:
    """The one way an ensemble is saved (fit --seeds and kboolq.ensemble): model.keras averages
    the members' P(yes), members.json lists the member runs as paths relative to RUN_DIR (where
    `work`, a staging directory, ends up), e.g. "members/seed_3" or "../runs/a". Returns the
    ensemble read back from `work`."""
    final = Path(run_dir).resolve()
    listed = [os.path.relpath(Path(member).resolve(), final) for member in members]
    write_json(Path(work) / "members.json", {"members": listed})
    save_model(average(models), work)
    return load_model(work)


def _section(raw: dict, path: Path, name: str) -> dict:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise UserError(f"{path}: key '{name}' is missing or not an object")
    return value


def _key(section: dict, path: Path, where: str, key: str, default: Any = ...) -> Any:
    if key in section:
        return section[key]
    if default is not ...:
        return default
    raise UserError(f"{path}: key '{where}.{key}' is missing")


def read_info(run_dir: Path) -> RunInfo:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    if not path.exists():
        raise UserError(
            f"{run_dir}: not a run directory (no {CONFIG_FILE}); train one with kboolq.fit"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else None
        raise UserError(f"{path}: run format {found!r}, this kboolq reads format {FORMAT}")
    hyper = _section(raw, path, "hyperparameters")
    layout_raw, glove, data = (_section(raw, path, n) for n in ("layout", "embeddings", "data"))
    try:
        config = Config.from_dict(hyper)
        layout = Layout(**layout_raw)
        if not all(isinstance(v, int) and v >= 0 for v in asdict(layout).values()):
            raise UserError(f"layout sizes must be whole numbers, got {asdict(layout)}")
        vectors = Vectors(
            *(_key(glove, path, "embeddings", k) for k in ("source", "dim", "fingerprint"))
        )
        settings = DataSettings(
            data=_key(data, path, "data", "source"),
            glove=vectors.source,
            valid_size=_key(data, path, "data", "valid_size"),
            passage_percentile=_key(data, path, "data", "passage_percentile", 99.0),
            question_percentile=_key(data, path, "data", "question_percentile", 100.0),
            accents=_key(data, path, "data", "accents", "drop"),  # runs before the setting
        )
    except TypeError as exc:
        raise UserError(f"{path}: incomplete or incompatible config ({exc})") from None
    except UserError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise UserError(f"{path}: {_keys_for_flags(str(exc))}") from None
    return RunInfo(config, settings, layout, vectors, data.get("preprocess_fingerprint"))


def _keys_for_flags(message: str) -> str:
    """A validation message in terms of config.json's keys instead of the command's flags."""
    keys = {f.metadata["flag"]: f"hyperparameters.{f.name}" for f in fields(Config)}
    keys |= {f.metadata["flag"]: f"data.{f.name}" for f in fields(DataSettings)}
    keys |= {"--data": "data.source", "--glove": "embeddings.source"}
    for flag in sorted(keys, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", f"'{keys[flag]}'", message)
    return message


def load_model(run_dir: Path) -> keras.Model:
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise UserError(f"{run_dir}: no {MODEL_FILE} (the run did not finish a first epoch?)")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: damaged (not a complete .keras archive); train the run again")
    try:
        model = keras.models.load_model(path)
    except Exception as exc:  # keras raises many types for truncated or foreign archives
        raise UserError(
            f"{path}: not a readable kboolq model ({type(exc).__name__}: {exc})"
        ) from None
    names = sorted(getattr(tensor, "name", "") for tensor in model.inputs)
    known = names in (["lengths", "vectors"], sorted(["lengths", "vectors", STEMS]))
    if not known or tuple(model.outputs[0].shape) != (None, 1):
        raise UserError(f"{path}: a Keras model, but not a kboolq one (inputs {names})")
    return model


def check_fits(model: keras.Model, info: RunInfo, run_dir: Path) -> None:
    """A UserError naming config.json's key when the run's recorded layout or vector size is
    not what its model takes (an edited or mismatched config.json)."""
    vectors = next(tensor for tensor in model.inputs if tensor.name == "vectors")
    steps, dim = tuple(vectors.shape[1:])
    config = Path(run_dir) / CONFIG_FILE
    if steps != info.layout.steps:
        raise UserError(
            f"{config}: key 'layout' gives {info.layout.steps} positions (q_max "
            f"{info.layout.q_max} + separator {info.layout.separator} + p_max "
            f"{info.layout.p_max}), but {MODEL_FILE} takes {steps}"
        )
    if dim != info.vectors.dim:
        raise UserError(
            f"{config}: key 'embeddings.dim' is {info.vectors.dim}, but {MODEL_FILE} takes "
            f"{dim}-d vectors"
        )


def load_vectors(info: RunInfo, cache_dir: Path) -> Glove:
    """The run's own vectors, refused if they changed since training."""
    glove = load_glove(info.vectors.source, cache_dir)
    if glove.fingerprint != info.vectors.fingerprint:
        raise UserError(
            f"the vectors behind {info.vectors.source} changed since this model was trained; "
            "restore the original file or train again"
        )
    return glove


@dataclass(frozen=True)
class OpenRun:
    """A saved run ready to score rows: its model, settings and vectors."""

    path: Path
    info: RunInfo
    model: keras.Model
    glove: Glove

    def encode(self, groups: dict[str, Sequence[Row]]) -> Encoded:
        """Rows in the run's own layout, over the run's vectors."""
        return encode(groups, self.glove, self.info.layout, accents=self.info.data.accents)

    def predict(self, rows: Sequence[Row | dict]) -> np.ndarray:
        """P(yes) for each row: a Row or a {"question": ..., "passage": ...} dict."""
        parsed = [
            row if isinstance(row, Row) else parse_row(row, f"row {i}", labelled=False)
            for i, row in enumerate(rows)
        ]
        encoded = self.encode({"rows": parsed})
        split, batch = encoded.splits["rows"], self.info.config.batch_size
        return predict_split(self.model, split, encoded.table, batch, encoded.stems)


def open_run(run_dir: Path, cache_dir: Path) -> OpenRun:
    info = read_info(run_dir)
    model = load_model(run_dir)
    check_fits(model, info, run_dir)
    return OpenRun(Path(run_dir), info, model, load_vectors(info, cache_dir))


def load_run(run_dir: str | Path, cache_dir: str | Path | None = None) -> OpenRun:
    """A run directory ready to answer questions from Python: `kboolq.load_run(path)`.

    Loading model.keras alone with keras.saving.load_model needs kboolq's layers registered
    first (import kboolq); this also brings the vectors and layout that new text must be
    encoded with, and checks that the vectors are the ones the model was trained on.
    """
    return open_run(Path(run_dir), Path(cache_dir) if cache_dir else default_cache_dir())


def is_temporary(name: str) -> bool:
    return fnmatch.fnmatch(name, TEMPORARY) or name == MARK


def is_kboolq_entry(name: str) -> bool:
    """Whether a run directory's entry is one kboolq writes: its files, plots, member runs and
    temporary files. Everything else in a run directory is the user's and is never removed."""
    return (
        name in RUN_FILES
        or name in RUN_DIRS
        or PLOT_FILES.fullmatch(name) is not None
        or is_temporary(name)
    )


def clear_run(run_dir: Path) -> None:
    """Remove the files kboolq writes into a run directory (not its member runs), nothing else."""
    for path in Path(run_dir).iterdir():
        if path.is_file() and is_kboolq_entry(path.name) and path.name not in RUN_DIRS:
            path.unlink()


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


def is_run(directory: Path) -> bool:
    try:
        raw = json.loads((Path(directory) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and "format" in raw and "hyperparameters" in raw


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
    grid passes it always: it resumes its own directory); anything else, or one of the
    `protect`ed inputs, is refused.

    Returns whether `path` already holds a directory of that kind.
    """
    path = Path(path)
    for other in protect:
        if path.resolve() == Path(other).resolve():
            raise UserError(
                f"{flag} {path}: is one of this command's inputs; choose a new directory"
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
