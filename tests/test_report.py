"""tuning.report: what a grid's finished trials say (tuning/dashboard.py), on grids written by
hand with known scores, and at the end of a real grid (test_grid.py)."""

import itertools
import json

import pytest

from kboolq.errors import UserError
from tuning import dashboard, report

AXES = {"learning_rate": [0.001, 0.01, 0.1], "hidden_size": [4, 8, 16], "dropout": [0.0, 0.5]}
BY_LR = {0.001: 0.55, 0.01: 0.6, 0.1: 0.7}  # the planted grid's score: the learning rate alone


def _grid(tmp_path, axes, trials, expired=()):
    """A grid directory as tuning.grid writes it: grid.json, trials/trial_k/trial.json, and
    the oracle's record of trials given up. `trials`: (values, status, score) each."""
    grid = tmp_path / "grid"
    (grid / "trials").mkdir(parents=True)
    record = {"format": 5, "data": {}, "embeddings": {}, "fixed": {}, "axes": axes}
    (grid / "grid.json").write_text(json.dumps(record))
    for k, (values, status, score) in enumerate(trials):
        folder = grid / "trials" / f"trial_{k:02d}"
        folder.mkdir()
        trial = {"trial_id": f"{k:02d}", "hyperparameters": {"values": values},
                 "status": status, "score": score}  # fmt: skip
        (folder / "trial.json").write_text(json.dumps(trial))
    (grid / "trials" / "oracle.json").write_text(json.dumps({"expired": list(expired)}))
    return grid


def _planted(tmp_path):
    points = [dict(zip(AXES, values, strict=True)) for values in itertools.product(*AXES.values())]
    return _grid(tmp_path, AXES, [(p, "COMPLETED", BY_LR[p["learning_rate"]]) for p in points])


def test_the_axis_that_alone_decides_the_score_is_ranked_first(tmp_path):
    trials = dashboard.read_trials(_planted(tmp_path))
    assert len(trials.finished) == trials.total == 18
    shares = dashboard.importance(trials)
    assert list(shares)[0] == "learning_rate"
    assert shares["learning_rate"] > 0.9
    assert shares["hidden_size"] < 0.05 and shares["dropout"] < 0.05
    assert sum(shares.values()) == pytest.approx(1.0)
    assert dashboard.importance(trials) == shares  # seeded: the same trials, the same answer


def test_a_running_grid_counts_its_finished_trials_only(tmp_path):
    done = {"learning_rate": 0.01, "hidden_size": 4, "dropout": 0.0}
    trials = [
        (done, "COMPLETED", 0.61),
        ({**done, "hidden_size": 8}, "COMPLETED", 0.64),
        ({**done, "hidden_size": 16}, "RUNNING", None),  # still training
        ({**done, "dropout": 0.5}, "COMPLETED", 0.9),  # given up, its point ran again
        ({**done, "learning_rate": 0.1}, "FAILED", None),
    ]
    found = dashboard.read_trials(_grid(tmp_path, AXES, trials, expired=["03"]))
    assert [(trial, score) for trial, _, score in found.finished] == [("01", 0.64), ("00", 0.61)]
    assert found.total == 18


def test_the_report_holds_the_importances_plots_and_best_trials(tmp_path, capsys):
    grid = _planted(tmp_path)
    assert report.main([str(grid)]) == 0
    assert capsys.readouterr().out == f"wrote {grid / 'report' / 'report.md'} and its plots\n"
    text = (grid / "report" / "report.md").read_text()
    assert "18 of 18 grid points finished" in text
    assert text.index("| learning_rate |") < text.index("| hidden_size |")
    best = text[text.index("## Best trials") :].splitlines()
    assert best[2] == "| trial | learning_rate | hidden_size | dropout | val_balanced_accuracy |"
    # ties (every lr=0.1 point scores 0.7) go to the lower trial id: 12 is the first such point
    assert best[4] == "| 12 | 0.1 | 4 | 0.0 | 0.7000 |"
    for name in ("parallel_coordinates.png", *(f"effect_{axis}.png" for axis in AXES)):
        assert (grid / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in text


def test_a_grid_without_finished_trials_or_record_is_refused(tmp_path):
    grid = _grid(tmp_path, AXES, [({"learning_rate": 0.01}, "RUNNING", None)])
    with pytest.raises(UserError, match="no trial has finished yet; nothing to report"):
        dashboard.write_report(grid)
    assert not (grid / "report").exists()
    assert report.run_command(report.main, "tuning.report")([str(tmp_path / "none")]) == 2
    with pytest.raises(UserError, match=r"none: not a grid directory \(grid.json"):
        dashboard.read_trials(tmp_path / "none")


def test_one_finished_trial_reports_without_importance(tmp_path):
    grid = _grid(tmp_path, AXES, [({"learning_rate": 0.01, "hidden_size": 4, "dropout": 0.0},
                                   "COMPLETED", 0.6)])  # fmt: skip
    text = dashboard.write_report(grid).read_text()
    assert "Not enough finished trials (two or more)" in text
