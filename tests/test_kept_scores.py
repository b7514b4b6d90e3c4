"""benchmarks/keep_scores.py: a kept run (its small files and scores.npz) answers in the ensemble
benchmarks exactly as the run it was kept from, and one scored on other rows is refused; and
benchmarks/best_mix.py's compositions, draws and training times."""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from kboolq.evaluation import binary_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import best_mix  # noqa: E402
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


def test_best_mix_enumerates_compositions_and_draws_and_reads_the_training_time(trained, tmp_path):
    assert best_mix.compositions([2, 1], 2) == [(1, 1), (2, 0)]
    assert best_mix.compositions([3, 3], 5) == [(2, 3), (3, 2)]
    # pools [0, 1] and [2]: one from each -> (0, 2), (1, 2); both of the first -> (0, 1)
    assert best_mix.draws_of([[0, 1], [2]], (1, 1), 10) == [(0, 2), (1, 2)]
    assert best_mix.draws_of([[0, 1], [2]], (2, 0), 10) == [(0, 1)]
    assert len(best_mix.draws_of([[0, 1, 2, 3], [4, 5, 6]], (2, 2), 5)) == 5  # 18 capped to 5
    run, cache = trained
    card = (run / "README.md").read_text()
    seconds = best_mix.train_seconds(run)
    assert f"Training time: {seconds:.0f} s;" in card
    assert best_mix.train_seconds(tmp_path) != best_mix.train_seconds(tmp_path)  # no card: NaN


def test_best_mix_also_takes_one_count_per_pool_or_says_what_is_wrong(capsys):
    parser = argparse.ArgumentParser(prog="best_mix.py")
    assert best_mix.parse_counts("3,2,0", [3, 5, 4], [5, 10], parser) == (3, 2, 0)
    for text, why in [
        ("3,x,0", "--also 3,x,0: give one whole number per pool, comma-separated"),
        ("3,2", "--also 3,2: give 3 counts (one per --pool), none negative"),
        ("3,-1,0", "--also 3,-1,0: give 3 counts (one per --pool), none negative"),
        ("4,1,0", "--also 4,1,0: more runs than a pool holds (3, 5, 4)"),
        ("1,2,0", "--also 1,2,0: 3 members, not one of --sizes"),
    ]:
        with pytest.raises(SystemExit):
            best_mix.parse_counts(text, [3, 5, 4], [5, 10], parser)
        assert capsys.readouterr().err.splitlines()[-1] == f"best_mix.py: error: {why}"


def test_best_mix_ranks_by_the_balanced_accuracy_binary_report_gives():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 301)
    members = rng.random((3, 301))
    mean = np.mean(members, axis=0)
    assert (
        best_mix.balanced_accuracy(labels, members)
        == binary_report(labels, mean)["balanced_accuracy"]
    )
    # by hand: labels 1,1,0; mean P(yes) 0.5, 0.2, 0.7 -> recall of yes 1/2, of no 0/1
    assert best_mix.balanced_accuracy(np.array([1, 1, 0]), np.array([[0.5, 0.2, 0.7]])) == 0.25
    # no "no" rows: that class scores 0, as in binary_report
    assert best_mix.balanced_accuracy(np.array([1, 1]), np.array([[0.9, 0.1]])) == 0.25
