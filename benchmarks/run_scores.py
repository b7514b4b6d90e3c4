"""Shared by the ensemble benchmarks: runs' P(yes) on valid and test, each run encoding the rows
its own way as `kboolq.ensemble`'s members do (runs made from other rows are refused), and the
report of an average of some of them.

A run may also be a kept run (`benchmarks/keep_scores.py`): a folder with the run's config.json,
history.csv, metrics.json and card, and scores.npz, its P(yes) and the labels per split. It
answers as the run did without the model or the vectors, so seed means and ensembles of
trainings from earlier sessions (whose machines are gone) can still be computed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from kboolq.data.boolq import load_boolq
from kboolq.ensemble import check_compatible
from kboolq.evaluation import SPREAD_METRICS, binary_report, spread
from kboolq.files import default_cache_dir
from kboolq.runs.api import open_run
from kboolq.runs.rundir import (
    CARD_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    read_info,
)

Scores = dict[str, np.ndarray]  # split name -> one value per row
KEPT_FILE = "scores.npz"  # a kept run's P(yes) ("p_yes_SPLIT") and labels ("label_SPLIT")


def is_kept(run: Path) -> bool:
    return (Path(run) / KEPT_FILE).is_file()


def scores_of(runs: list[Path], cache_dir: Path | None = None) -> tuple[Scores, list[Scores]]:
    """Labels per split, and each run's P(yes) per split (a kept run's from its scores.npz)."""
    check_compatible([read_info(run) for run in runs], runs)
    answers: dict[int, tuple[Scores, Scores]] = {}  # run index -> (labels, P(yes)) per split
    for i, run in enumerate(runs):
        if is_kept(run):
            saved = np.load(Path(run) / KEPT_FILE)
            answers[i] = (by_split(saved, "label_"), by_split(saved, "p_yes_"))
    live = [i for i in range(len(runs)) if i not in answers]
    if live:
        info = read_info(runs[live[0]])
        boolq = load_boolq(info.data.source, info.data.valid_size)
        groups = {name: boolq.splits[name] for name in ("valid", "test") if name in boolq.splits}
        labels = {name: np.array([row.label for row in rows]) for name, rows in groups.items()}
        for i in live:
            opened = open_run(runs[i], cache_dir or default_cache_dir())
            encoded = opened.encode_splits(groups)
            answers[i] = (labels, {name: opened.scores(encoded, name) for name in groups})
    labels = answers[0][0]
    for i, run in enumerate(runs):
        check_rows(run, answers[i][0], labels)
    return labels, [answers[i][1] for i in range(len(runs))]


def by_split(saved, prefix: str) -> Scores:
    return {key.removeprefix(prefix): saved[key] for key in saved.files if key.startswith(prefix)}


def check_rows(run: Path, mine: Scores, labels: Scores) -> None:
    """Refuse a run scored on other rows than the first: its labels per split must match."""
    if mine.keys() != labels.keys() or any(
        mine[name].shape != labels[name].shape or (mine[name] != labels[name]).any()
        for name in labels
    ):
        raise SystemExit(f"{run}: scored on other valid or test rows than the first run")


def keep(run: Path, into: Path, cache_dir: Path | None = None) -> None:
    """Write `run`'s kept copy into `into`: its small files and scores.npz (see the docstring)."""
    labels, (scores,) = scores_of([run], cache_dir)
    into.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_FILE, HISTORY_FILE, METRICS_FILE, CARD_FILE):
        if (Path(run) / name).is_file():
            shutil.copyfile(Path(run) / name, into / name)
    arrays = {f"p_yes_{n}": s.astype(np.float32) for n, s in scores.items()}
    arrays |= {f"label_{n}": y.astype(np.int8) for n, y in labels.items()}
    np.savez_compressed(into / KEPT_FILE, **arrays)


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


def markdown_row(title: str, reports: list[dict], *extra: str) -> str:
    """A Markdown row: title, draws, then valid and test mean ± std per metric (no std for one
    report), then `extra` cells."""
    result = spread(reports)
    cells = [
        f"{result[split][m]['mean']:.3f}"
        + (f" ± {result[split][m]['std']:.3f}" if len(reports) > 1 else "")  # one: no spread
        for split in ("valid", "test")
        if split in result
        for m in SPREAD_METRICS
    ]
    return f"| {title} | {len(reports)} | " + " | ".join([*cells, *extra]) + " |"
