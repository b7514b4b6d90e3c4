"""The Python API: a saved run ready to answer questions (`kboolq.load_run`), with the vectors
and layout it was trained with: an OpenRun (one model.keras: a model, or an ensemble of members
that read the same input), or an OpenMix (an ensemble whose members read different vectors or
layouts: each member encodes its own input, and the mix answers the mean of its members)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from kboolq.data.boolq import Row, parse_row
from kboolq.data.glove import Glove
from kboolq.data.layout import Prepared, encode, vocabulary_problem
from kboolq.data.vectors import load_glove
from kboolq.errors import UserError
from kboolq.evaluation import predict_split
from kboolq.files import default_cache_dir
from kboolq.runs.migration import any_steps
from kboolq.runs.rundir import (
    RunInfo,
    check_fits,
    ensemble_members,
    load_model,
    read_info,
    reads_own_inputs,
    sources_of,
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

    def encode(self, rows: Sequence[Row | dict]) -> Prepared:
        """Rows as predict takes them (a Row or a {"question": ..., "passage": ...} dict), in
        the run's own layout over the run's vectors: `.splits["rows"]` holds their word ids
        and lengths, `.lookup` the vector table, `.layout` where question and passage go."""
        parsed = [
            row if isinstance(row, Row) else parse_row(row, f"row {i}", labelled=False)
            for i, row in enumerate(rows)
        ]
        return self.encode_splits({"rows": parsed})

    def encode_splits(self, groups: dict[str, Sequence[Row]]) -> Prepared:
        """Named groups of rows (a data set's splits) encoded as `encode` does one."""
        return encode(groups, self.glove, self.info.layout, self.info.data.layout_settings())

    def problem(self, row: Row) -> str | None:
        """Why this run cannot answer `row` (a question or passage without a word it reads), or
        None: predict, serve and export's check file all ask this."""
        return vocabulary_problem(
            row, self.glove, self.info.data.accents, self.info.layout.word_chars
        )

    def predict(self, rows: Sequence[Row | dict]) -> np.ndarray:
        """P(yes) for each row: a Row or a {"question": ..., "passage": ...} dict."""
        return self.scores(self.encode(rows), "rows")

    def scores(self, encoded: Prepared, name: str, batch_size: int | None = None) -> np.ndarray:
        """P(yes) for each row of the split `name` of what encode/encode_splits gave."""
        split, batch = encoded.splits[name], batch_size or self.info.config.batch_size
        return predict_split(self.model, split, encoded.lookup, encoded.layout, batch)


@dataclass(frozen=True)
class Encodings:
    """Rows encoded once per member of an OpenMix (`parts`, in the members' order). `splits`
    are the first member's: labels and row counts are the rows', the same for every member."""

    parts: tuple[Prepared, ...]

    @property
    def splits(self) -> dict:
        return self.parts[0].splits

    token_count = 0  # out-of-vocabulary shares are each member's (see the members' cards)
    oov_count = 0


@dataclass(frozen=True)
class OpenMix:
    """An ensemble whose members read different inputs (members.json says "inputs": "own"):
    each member encodes the rows its own way and the mix answers the mean of their P(yes).
    `info` is the first member's: the data, split sizes and batch size it was made with."""

    path: Path
    info: RunInfo
    members: tuple[OpenRun | OpenMix, ...]

    def count_params(self) -> int:
        return sum(_params(member) for member in self.members)

    def encode(self, rows: Sequence[Row | dict]) -> Encodings:
        return Encodings(tuple(member.encode(rows) for member in self.members))

    def encode_splits(self, groups: dict[str, Sequence[Row]]) -> Encodings:
        return Encodings(tuple(member.encode_splits(groups) for member in self.members))

    def problem(self, row: Row) -> str | None:
        """A row is answered when every member can answer it (the first member's reason)."""
        return next((p for m in self.members if (p := m.problem(row)) is not None), None)

    def predict(self, rows: Sequence[Row | dict]) -> np.ndarray:
        return self.scores(self.encode(rows), "rows")

    def scores(self, encoded: Encodings, name: str, batch_size: int | None = None) -> np.ndarray:
        each = [
            member.scores(part, name, batch_size)
            for member, part in zip(self.members, encoded.parts, strict=True)
        ]
        return np.mean(each, axis=0).astype(np.float32)


def leaves(run: OpenRun | OpenMix, weight: float = 1.0) -> list[tuple[OpenRun, float]]:
    """The runs whose models an answer averages, each with its weight in the mean (a member
    that is itself an OpenMix shares its weight among its own members)."""
    if isinstance(run, OpenRun):
        return [(run, weight)]
    share = weight / len(run.members)
    return [leaf for member in run.members for leaf in leaves(member, share)]


def _params(member: OpenRun | OpenMix) -> int:
    return member.count_params() if isinstance(member, OpenMix) else member.model.count_params()


def check_threshold(threshold: float) -> float:
    """--threshold of predict, serve and export: a probability (NaN is refused too)."""
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be from 0 to 1, got {threshold}")
    return threshold


def answer(p_yes: float, threshold: float) -> str:
    """The yes/no answer of a P(yes): yes from the threshold up."""
    return "yes" if p_yes >= threshold else "no"


def open_run(
    run_dir: Path, cache_dir: Path, _loaded: dict | None = None, _within: tuple = ()
) -> OpenRun | OpenMix:
    """The run ready to answer; an ensemble's members that read the same vectors share one
    loaded copy of them (`_loaded`), and a members.json that lists a run holding it is
    refused (`_within`: the ensembles being opened)."""
    loaded = {} if _loaded is None else _loaded
    info = read_info(run_dir)
    if Path(run_dir).resolve() in _within:
        raise UserError(f"{run_dir}: an ensemble's members.json lists a run that holds it")
    if reads_own_inputs(run_dir):
        within = (*_within, Path(run_dir).resolve())
        members = tuple(
            open_run(member, cache_dir, loaded, within) for member in ensemble_members(run_dir)
        )
        return OpenMix(Path(run_dir), info, members)
    model = load_model(run_dir)
    check_fits(model, info, run_dir)
    model = any_steps(model)  # a model saved with a fixed T reads cut batches too
    key = (info.vectors.source, info.vectors.fingerprint)
    if key not in loaded:
        with sources_of(run_dir):
            loaded[key] = load_vectors(info, cache_dir)
    return OpenRun(Path(run_dir), info, model, loaded[key])


def load_run(run_dir: str | Path, cache_dir: str | Path | None = None) -> OpenRun | OpenMix:
    """A run directory ready to answer questions from Python: `kboolq.load_run(path)`.

    Loading model.keras alone with keras.saving.load_model needs kboolq's layers registered
    first (import kboolq); this also brings the vectors and layout that new text must be
    encoded with, and checks that the vectors are the ones the model was trained on.
    """
    return open_run(Path(run_dir), Path(cache_dir) if cache_dir else default_cache_dir())
