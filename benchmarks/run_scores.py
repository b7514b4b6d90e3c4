"""Shared by the ensemble benchmarks: runs' P(yes) on valid and test, each run encoding the rows
its own way as `kboolq.ensemble`'s members do (runs made from other rows are refused), and the
report of an average of some of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kboolq.data.boolq import load_boolq
from kboolq.ensemble import check_compatible
from kboolq.evaluation import SPREAD_METRICS, binary_report, spread
from kboolq.files import default_cache_dir
from kboolq.runs.api import open_run
from kboolq.runs.rundir import read_info

Scores = dict[str, np.ndarray]  # split name -> one value per row


def scores_of(runs: list[Path]) -> tuple[Scores, list[Scores]]:
    """Labels per split, and each run's P(yes) per split."""
    check_compatible([read_info(run) for run in runs], runs)
    opened = [open_run(run, default_cache_dir()) for run in runs]
    info = opened[0].info
    boolq = load_boolq(info.data.source, info.data.valid_size)
    groups = {name: boolq.splits[name] for name in ("valid", "test") if name in boolq.splits}
    labels = {name: np.array([row.label for row in rows]) for name, rows in groups.items()}
    scores = []
    for run in opened:
        encoded = run.encode_splits(groups)
        scores.append({name: run.scores(encoded, name) for name in groups})
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
