"""The run directory's format: model.keras plus config.json, and which files are kboolq's.

config.json (format FORMAT) holds the hyperparameters, the data settings, the layout, the vectors'
fingerprint, and what a run learned from besides its labels (a teacher) or without (a held-out
fold); read_info reads it into a RunInfo (kboolq.runs.migration brings an older run's config.json to
today's format first), load_model reads model.keras and check_fits proves the two belong
together. kboolq.runs.api opens a run for use; kboolq.runs.outputs guards what a command may write.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import keras

import kboolq
from kboolq.config import Config, DataSettings, misfits
from kboolq.data.batches import CHARS, STEMS, WORDS
from kboolq.data.layout import Layout
from kboolq.errors import UserError
from kboolq.files import atomic_path, write_json
from kboolq.models import gru, layers  # noqa: F401  (register the custom layers for loading)
from kboolq.models.averaging import average
from kboolq.runs.migration import FORMAT, migrate_run
from kboolq.runs.outputs import Kind
from kboolq.runs.staging import is_temporary

# Every file kboolq writes into a run directory, named once here.
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"  # one row per epoch
CURVES_FILE = "learning_curves.png"
METRICS_FILE = "metrics.json"  # the finished run's reports per split (its absence: unfinished)
CARD_FILE = "README.md"  # the model card
REPORT_FILE = "report.json"  # kboolq.evaluate's reports
MEMBERS_FILE = "members.json"  # an ensemble's member runs
SEEDS_FILE = "seeds.json"  # fit --seeds / --train-folds: the members' spread
REFIT_FILE = "refit.json"  # fit --refit: the run it refit, its epochs and learning rates
RUN_FILES = (
    MODEL_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE, REPORT_FILE, MEMBERS_FILE, SEEDS_FILE,
    CURVES_FILE, CARD_FILE, REFIT_FILE,
)  # fmt: skip
# evaluate's plots and its most confident wrong answers, per split
PLOT_FILES = re.compile(r"(valid|test)_(confusion_matrix|roc|pr|calibration)\.png")
ERRORS_FILES = re.compile(r"(valid|test)_errors\.jsonl")
MEMBERS_DIR = "members"  # fit --seeds / --train-folds: the member runs
RESUME_DIR = "resume"  # an unfinished training's state after its last epoch (kboolq.resume)
RUN_DIRS = (MEMBERS_DIR, RESUME_DIR)


@dataclass(frozen=True)
class Vectors:
    source: str
    dim: int
    fingerprint: str


@dataclass(frozen=True)
class Distillation:
    """fit --distill: the train rows' labels were mixed with a teacher run's P(yes)."""

    teacher: str  # the teacher run directory, absolute
    weight: float  # label = (1 - weight) * answer + weight * teacher's P(yes)


@dataclass(frozen=True)
class HeldOut:
    """fit --train-folds: the run trained on the train rows outside fold `fold` of `folds`
    (kboolq.data.layout.train_folds), so its answers for that fold's rows are out of fold."""

    fold: int
    folds: int

    def __post_init__(self) -> None:
        if not 0 <= self.fold < self.folds:
            raise ValueError(f"fold {self.fold} is not in 0..{self.folds - 1}")


@dataclass(frozen=True)
class RunInfo:
    config: Config
    data: DataSettings  # data = the resolved source: hub, tfds or an absolute directory
    layout: Layout
    vectors: Vectors
    preprocess_fingerprint: str | None = None
    distillation: Distillation | None = None
    held_out: HeldOut | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kboolq_version": kboolq.__version__,
            "hyperparameters": self.config.to_dict(),
            "layout": asdict(self.layout),
            "embeddings": asdict(self.vectors),
            "data": {
                "source": self.data.source,
                "valid_size": self.data.valid_size,
                "passage_percentile": self.data.passage_percentile,
                "question_percentile": self.data.question_percentile,
                "accents": self.data.accents,
                "preprocess_fingerprint": self.preprocess_fingerprint,
            },
            "distillation": None if self.distillation is None else asdict(self.distillation),
            "held_out": None if self.held_out is None else asdict(self.held_out),
        }


def write_info(run_dir: Path, info: RunInfo) -> None:
    write_json(Path(run_dir) / CONFIG_FILE, info.to_dict())


def save_model(model: keras.Model, run_dir: Path) -> None:
    with atomic_path(Path(run_dir) / MODEL_FILE) as tmp:
        model.save(tmp)


def shared_inputs(infos: list[RunInfo]) -> bool:
    """Whether runs read the same input: the same vectors, layout and tokenizer settings, so one
    model.keras can average them over one encoding."""
    first = infos[0]
    return all(
        info.vectors.fingerprint == first.vectors.fingerprint
        and info.layout == first.layout
        and info.data.accents == first.data.accents
        for info in infos[1:]
    )


def save_ensemble(
    work: Path,
    models: list[keras.Model | None],
    members: list[Path],
    run_dir: Path,
    infos: list[RunInfo],
) -> keras.Model | None:
    """The one way an ensemble is saved (fit --seeds and kboolq.ensemble): members.json lists
    the member runs as paths relative to RUN_DIR (where `work`, a staging directory, ends up),
    e.g. "members/seed_3" or "../runs/a". Members that read the same input (shared_inputs) are
    averaged into one model.keras, which is returned as read back from `work`; members that read
    different vectors or layouts keep their own models, members.json says "inputs": "own", and
    None is returned: open `work` with kboolq.runs.api.open_run (an OpenMix). A member given as
    None (a model) is such a mix itself, so the ensemble is one too."""
    final = Path(run_dir).resolve()
    listed = [os.path.relpath(Path(member).resolve(), final) for member in members]
    if any(model is None for model in models) or not shared_inputs(infos):
        write_json(Path(work) / MEMBERS_FILE, {"members": listed, "inputs": "own"})
        return None
    write_json(Path(work) / MEMBERS_FILE, {"members": listed})
    save_model(average(models), work)
    return load_model(work)


def _members_json(run_dir: Path) -> dict:
    path = Path(run_dir) / MEMBERS_FILE
    try:
        found = json.loads(path.read_text())
        if not isinstance(found["members"], list) or found.get("inputs", "shared") not in (
            "shared",
            "own",
        ):
            raise ValueError("'members' is not a list, or 'inputs' not \"shared\" or \"own\"")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    return found


def reads_own_inputs(run_dir: Path) -> bool:
    """Whether RUN_DIR is an ensemble whose members read their own inputs (no model.keras)."""
    if not (Path(run_dir) / MEMBERS_FILE).exists():
        return False
    return _members_json(run_dir).get("inputs") == "own"


def answering_file(run_dir: Path) -> Path:
    """The file whose replacement means RUN_DIR answers differently: model.keras, or
    members.json for an ensemble whose members read their own inputs (it has no model.keras)."""
    return Path(run_dir) / (MEMBERS_FILE if reads_own_inputs(run_dir) else MODEL_FILE)


def ensemble_members(run_dir: Path) -> list[Path]:
    """An ensemble's member runs (members.json, paths relative to RUN_DIR); [] for one model."""
    if not (Path(run_dir) / MEMBERS_FILE).exists():
        return []
    return [(Path(run_dir) / member).resolve() for member in _members_json(run_dir)["members"]]


def run_and_members(run_dir: Path) -> list[Path]:
    """RUN_DIR and every run it reads: its ensemble's members, theirs, and so on (what an
    output must never be or hold)."""
    found: list[Path] = []
    todo = [Path(run_dir)]
    while todo:
        run = todo.pop()
        if run.resolve() in {f.resolve() for f in found}:
            continue
        found.append(run)
        if (run / MEMBERS_FILE).is_file():
            todo += ensemble_members(run)
    return found


def _section(raw: dict, path: Path, name: str) -> dict:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise UserError(f"{path}: key '{name}' is missing or not an object")
    return value


def _key(section: dict, path: Path, where: str, key: str) -> Any:
    if key in section:
        return section[key]
    raise UserError(f"{path}: key '{f'{where}.' if where else ''}{key}' is missing")


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
    raw = migrate_run(raw, path)
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
            source=_key(data, path, "data", "source"),
            glove=vectors.source,
            **{
                key: _key(data, path, "data", key)
                for key in ("valid_size", "passage_percentile", "question_percentile", "accents")
            },
        )
    except TypeError as exc:
        raise UserError(f"{path}: incomplete or incompatible config ({exc})") from None
    except UserError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise UserError(f"{path}: {_keys_for_flags(str(exc))}") from None
    distilled = _key(raw, path, "", "distillation")
    try:
        distillation = None if distilled is None else Distillation(**distilled)
    except TypeError as exc:
        raise UserError(f"{path}: key 'distillation' is not a teacher and weight ({exc})") from None
    held = _key(raw, path, "", "held_out")
    try:
        held_out = None if held is None else HeldOut(**held)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: key 'held_out' is not a fold and fold count ({exc})") from None
    fingerprint = data.get("preprocess_fingerprint")
    for where, value in (
        ("embeddings", vectors),
        ("distillation", distillation),
        ("held_out", held_out),
    ):
        _check_types(value, path, where)
    if not isinstance(fingerprint, str | None):
        raise UserError(f"{path}: 'data.preprocess_fingerprint': expected str, got {fingerprint!r}")
    return RunInfo(config, settings, layout, vectors, fingerprint, distillation, held_out)


def _check_types(section: Any, path: Path, where: str) -> None:
    """Refuse a key of config.json whose value has the wrong JSON type, naming the key."""
    for name, why in misfits(section) if section is not None else ():
        raise UserError(f"{path}: '{where}.{name}': {why}")


@contextlib.contextmanager
def sources_of(run_dir: Path) -> Iterator[None]:
    """Errors about the data or vectors RUN_DIR's config.json names, told by its keys: the user
    gave no --glove or --data flag, the run recorded them."""
    try:
        yield
    except UserError as exc:
        message = str(exc)
        if not message.startswith(("--glove ", "--data ")):
            raise
        for flag, key in (("--glove", "embeddings.source"), ("--data", "data.source")):
            message = re.sub(rf"(?m)^{flag} ", f"'{key}' ", message)
        raise UserError(f"{Path(run_dir) / CONFIG_FILE}: {message}") from None


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
    known = {"lengths", "vectors"} <= set(names) <= {"lengths", "vectors", STEMS, CHARS, WORDS}
    if not known or tuple(model.outputs[0].shape) != (None, 1):
        raise UserError(f"{path}: a Keras model, but not a kboolq one (inputs {names})")
    return model


def check_fits(model: keras.Model, info: RunInfo, run_dir: Path) -> None:
    """A UserError naming config.json's key when the run's recorded layout or vector size is
    not what its model takes (an edited or mismatched config.json)."""
    vectors = next(tensor for tensor in model.inputs if tensor.name == "vectors")
    steps, dim = tuple(vectors.shape[1:])
    config = Path(run_dir) / CONFIG_FILE
    layout = info.layout
    if steps is None:  # any T: the layers that find the parts say where the passage starts
        starts = _passage_starts(model)
        if starts - {layout.passage_start}:
            raise UserError(
                f"{config}: key 'layout' starts the passage at position {layout.passage_start} "
                f"(q_max {layout.q_max} + separator {layout.separator}), but {MODEL_FILE} "
                f"reads it from {min(starts - {layout.passage_start})}"
            )
    elif steps != info.layout.steps:
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
    chars = next((tensor for tensor in model.inputs if tensor.name == CHARS), None)
    if chars is not None and chars.shape[-1] != info.layout.word_chars:
        raise UserError(
            f"{config}: key 'layout.word_chars' is {info.layout.word_chars}, but {MODEL_FILE} "
            f"reads {chars.shape[-1]} characters a word"
        )


def _passage_starts(model: keras.Model) -> set[int]:
    """Where the layout layers of `model` (and of the models inside it) find the passage."""
    starts = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, layers.Segment) and layer.column == 1:
            starts.add(layer.start)
        elif isinstance(layer, layers.Compact | layers.LayoutMask):
            starts.add(layer.q_max + layer.separator)
    return starts


def is_kboolq_entry(name: str) -> bool:
    """Whether a run directory's entry is one kboolq writes: its files, plots, member runs and
    temporary files. Everything else in a run directory is the user's and is never removed."""
    return (
        name in RUN_FILES
        or name in RUN_DIRS
        or PLOT_FILES.fullmatch(name) is not None
        or ERRORS_FILES.fullmatch(name) is not None
        or is_temporary(name)
    )


def clear_run(run_dir: Path) -> None:
    """Remove the files kboolq writes into a run directory and a training's saved state (not
    its member runs), nothing else."""
    for path in Path(run_dir).iterdir():
        if path.is_file() and is_kboolq_entry(path.name) and path.name not in RUN_DIRS:
            path.unlink()
    shutil.rmtree(Path(run_dir) / RESUME_DIR, ignore_errors=True)


def is_run(directory: Path) -> bool:
    try:
        raw = json.loads((Path(directory) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and "format" in raw and "hyperparameters" in raw


RUN = Kind("run", is_run, is_kboolq_entry)  # what fit, refit, ensemble and the grid's best/ write
