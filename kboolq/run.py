"""A run directory: model.keras plus config.json, everything needed to reuse the model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras

import kboolq
from kboolq.config import Config
from kboolq.errors import UserError
from kboolq.files import atomic_path, write_json
from kboolq.preprocess import Layout

FORMAT = 1
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RunInfo:
    config: Config
    layout: Layout
    glove: dict[str, Any]  # source, dim, fingerprint
    data: dict[str, Any]  # source, valid_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "kboolq_version": kboolq.__version__,
            "hyperparameters": self.config.to_dict(),
            "layout": asdict(self.layout),
            "embeddings": self.glove,
            "data": self.data,
        }


def write_info(run_dir: Path, info: RunInfo) -> None:
    write_json(Path(run_dir) / CONFIG_FILE, info.to_dict())


def save_model(model: keras.Model, run_dir: Path) -> None:
    with atomic_path(Path(run_dir) / MODEL_FILE) as tmp:
        model.save(tmp)


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
    try:
        layout = Layout(**raw["layout"])
        glove, data = raw["embeddings"], raw["data"]
        missing = [k for k in ("source", "dim", "fingerprint") if k not in glove]
        missing += [k for k in ("source", "valid_size") if k not in data]
        if missing:
            raise KeyError(", ".join(missing))
        config = Config.from_dict(raw["hyperparameters"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path}: incomplete or incompatible config ({exc})") from None
    return RunInfo(config, layout, glove, data)


def load_model(run_dir: Path) -> keras.Model:
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise UserError(f"{run_dir}: no {MODEL_FILE} (the run did not finish a first epoch?)")
    import kboolq.model  # noqa: F401 - registers the custom layers and metrics for loading

    try:
        model = keras.models.load_model(path)
    except Exception as exc:  # keras raises many types for truncated or foreign archives
        raise UserError(
            f"{path}: not a readable kboolq model ({type(exc).__name__}: {exc})"
        ) from None
    names = sorted(getattr(tensor, "name", "") for tensor in model.inputs)
    if names != ["lengths", "vectors"] or tuple(model.outputs[0].shape) != (None, 1):
        raise UserError(f"{path}: a Keras model, but not a kboolq one (inputs {names})")
    return model
