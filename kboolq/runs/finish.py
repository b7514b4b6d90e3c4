"""The last step of every run kboolq writes: its reports on each split, metrics.json and the
model card (fit, its members, refit, ensemble and the grid's best/ all finish here)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import keras

from kboolq.data.layout import Prepared
from kboolq.evaluation import binary_report, evaluate_splits
from kboolq.files import write_json
from kboolq.resume import forget
from kboolq.runs.card import write_card
from kboolq.runs.rundir import METRICS_FILE, RunInfo

if TYPE_CHECKING:
    from kboolq.runs.api import Encodings, OpenMix


def finish_run(
    work: Path,
    name: str,
    info: RunInfo,
    model: keras.Model | OpenMix,
    prepared: Prepared | Encodings,
    made_by: str,
    seconds: float | None = None,
    batch_size: int | None = None,
) -> dict[str, dict]:
    """Evaluate `model` on `prepared`'s splits (in batches of `batch_size`, default the run's
    own), write work/metrics.json (a run without it is unfinished) and work/README.md, the
    card of the run that ends up named `name`; returns the reports. An OpenMix (an ensemble
    whose members read their own inputs) scores `prepared`, its Encodings, itself."""
    batch = batch_size or info.config.batch_size
    if isinstance(model, keras.Model):
        reports = evaluate_splits(model, prepared, batch)
    else:
        reports = {
            name: binary_report(split.labels, model.scores(prepared, name, batch))
            for name, split in prepared.splits.items()
            if name != "train"
        }
    write_json(Path(work) / METRICS_FILE, reports)
    write_card(work, name, info, model, reports, made_by, prepared, seconds)
    forget(work)  # a finished run needs no training state
    return reports
