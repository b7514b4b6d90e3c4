"""benchmarks/keep_scores.py: a kept run (its small files and scores.npz) answers in the ensemble
benchmarks exactly as the run it was kept from, and one scored on other rows is refused."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import run_scores  # noqa: E402


def test_a_kept_run_answers_as_its_run_and_keeps_its_files(trained, tmp_path):
    run, cache = trained
    kept = tmp_path / "kept" / "run"
    run_scores.keep(run, kept, cache)
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        ["config.json", "history.csv", "metrics.json", "README.md", "scores.npz"]
    )
    assert (kept / "history.csv").read_bytes() == (run / "history.csv").read_bytes()
    labels, (live, from_kept) = run_scores.scores_of([run, kept], cache)
    assert labels.keys() == {"valid", "test"}
    for name in labels:
        np.testing.assert_allclose(from_kept[name], live[name], atol=1e-7)
    # the kept run's report is the run's own metrics.json, computed again from scores.npz
    report = run_scores.average_report(labels, [from_kept])
    metrics = json.loads((run / "metrics.json").read_text())
    for name in labels:
        assert report[name]["accuracy"] == pytest.approx(metrics[name]["accuracy"])
        assert report[name]["balanced_accuracy"] == pytest.approx(
            metrics[name]["balanced_accuracy"]
        )


def test_a_kept_run_scored_on_other_rows_is_refused(trained, tmp_path):
    run, cache = trained
    kept = tmp_path / "run"
    run_scores.keep(run, kept, cache)
    saved = dict(np.load(kept / "scores.npz"))
    saved["label_valid"] = 1 - saved["label_valid"]
    np.savez(kept / "scores.npz", **saved)
    with pytest.raises(SystemExit, match=f"^{kept}: scored on other valid or test rows"):
        run_scores.scores_of([run, kept], cache)
