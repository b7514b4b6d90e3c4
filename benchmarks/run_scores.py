"""Shared by the ensemble benchmarks: runs' P(yes) on valid and test, encoded once the way
`kboolq.ensemble` encodes (the first run's tokenization; incompatible runs are refused), and
the report of an average of some of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kboolq.data.boolq import load_boolq
from kboolq.ensemble import check_compatible
from kboolq.evaluation import SPREAD_METRICS, binary_report, predict_split, spread
from kboolq.files import default_cache_dir
from kboolq.runs.api import open_run
from kboolq.runs.rundir import load_model, read_info

Scores = dict[str, np.ndarray]  # split name -> one value per row


def scores_of(runs: list[Path]) -> tuple[Scores, list[Scores]]:
    """Labels per split, and each run's P(yes) per split."""
    check_compatible([read_info(run) for run in runs], runs)
    first = open_run(runs[0], default_cache_dir())
    boolq = load_boolq(first.info.data.source, first.info.data.valid_size)
    names = [name for name in ("valid", "test") if name in boolq.splits]
    encoded = first.encode_splits({name: boolq.splits[name] for name in names})
    batch = first.info.config.batch_size
    labels = {name: encoded.splits[name].labels for name in names}
    models = [first.model] + [load_model(run) for run in runs[1:]]
    scores = [
        {
            name: predict_split(model, encoded.splits[name], encoded.lookup, encoded.layout, batch)
            for name in names
        }
        for model in models
    ]
    return labels, scores


def average_report(labels: Scores, members: list[Scores]) -> dict[str, dict]:
    """The report of the members' mean P(yes), per split: what their ensemble model scores."""
    return {
        name: binary_report(y, np.mean([member[name] for member in members], axis=0))
        for name, y in labels.items()
    }


def format_means(title: str, reports: list[dict]) -> str:
    result = spread(reports)
    lines = [f"{title} ({len(reports)}): mean +- std (n-1), accuracy / balanced acc. / macro F1"]
    for split, metrics in result.items():
        cells = [f"{metrics[m]['mean']:.3f} +- {metrics[m]['std']:.3f}" for m in SPREAD_METRICS]
        lines.append(f"  {split:>6}: {' / '.join(cells)}")
    return "\n".join(lines)
