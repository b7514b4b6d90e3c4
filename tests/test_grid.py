import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import SOURCES, fixture_args

from kboolq.config import Config
from kboolq.errors import UserError
from tuning import grid, progress

AXES = ["--hidden", "4,8", "--lr", "1e-3,1e-2", "--dropout", "0", "--weight-decay", "0"]


def _args(out, cache, epochs):
    return fixture_args(out, cache, *AXES, "--epochs", str(epochs), "--patience", str(epochs))


def _trials(out):
    found = {}
    for path in sorted((out / "trials").glob("trial_*/trial.json")):
        trial = json.loads(path.read_text())
        found[trial["trial_id"]] = (
            trial["status"],
            json.dumps(trial["hyperparameters"]["values"], sort_keys=True),
        )
    return found


def test_2x2_grid_writes_summary_and_best_run(tmp_path, capsys):
    out = tmp_path / "grid"
    assert grid.main(_args(out, tmp_path / "cache", 2)) == 0
    with open(out / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    scores = [float(row["val_balanced_accuracy"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert {(r["hidden_size"], r["learning_rate"]) for r in rows} == {
        ("4", "0.001"),
        ("4", "0.01"),
        ("8", "0.001"),
        ("8", "0.01"),
    }
    best = out / "best"
    config = json.loads((best / "config.json").read_text())["hyperparameters"]
    assert str(config["hidden_size"]) == rows[0]["hidden_size"]
    assert float(config["learning_rate"]) == float(rows[0]["learning_rate"])
    metrics = json.loads((best / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test"}
    assert metrics["valid"]["balanced_accuracy"] == pytest.approx(scores[0], abs=1e-5)
    card = (best / "README.md").read_text()  # the model card names the trial and its flags
    assert f"# the grid's best trial, {rows[0]['trial']}" in card
    assert f"--hidden {config['hidden_size']} " in card
    printed = capsys.readouterr().out
    assert "best trial" in printed
    assert "grid: trial 1 of 4 done" in printed and "left (3 trials x" in printed
    report = (out / "report" / "report.md").read_text()  # tuning.report, written at the end
    assert "4 of 4 grid points finished" in report and "| hidden_size |" in report
    assert "grid: trial 4 of 4 done" in printed
    for png in (out / "learning_curves.png", best / "learning_curves.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_curves_of_one_epoch_trials_are_drawn(tmp_path, monkeypatch):
    from kboolq import plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: drawn.append(figure))
    plots.save_grid_curves({"0": [0.55], "1": [0.6]}, "1", tmp_path / "c.png")
    lines = drawn[0].axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[0.55], [0.6]]
    # a line through one point draws nothing: each point needs a marker to be seen
    assert all(line.get_marker() not in (None, "None", "", " ") for line in lines)
    assert all(line.get_markersize() > 0 for line in lines)


def test_progress_line_by_hand():
    line = progress.progress_line(3, 81, 125.0, [30.0, 50.0, 40.0], (0.61234, "2"))
    assert line == (
        "grid: trial 3 of 81 done, elapsed 2m05s, best so far 0.6123 (trial 2), "
        "about 52m00s left (78 trials x 0m40s)"  # 78 x 40 s = 3,120 s
    )
    assert progress.progress_line(81, 81, 4000.0, [50.0], None) == (
        "grid: trial 81 of 81 done, elapsed 1h06m"
    )


@pytest.mark.slow
def test_grid_killed_mid_trial_resumes_without_repeating_finished_trials(tmp_path):
    out, cache = tmp_path / "grid", tmp_path / "cache"
    args = _args(out, cache, 15)
    command = [sys.executable, "-m", "tuning.grid", *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = out / "trials" / "trial_1" / "history.csv"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the grid never reached its second trial"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = _trials(out)
    assert before["0"][0] == "COMPLETED" and before["1"][0] == "RUNNING"
    first_history = (out / "trials" / "trial_0" / "history.csv").read_bytes()

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    after = _trials(out)
    assert sorted(after) == ["0", "1", "2", "3"]
    assert {status for status, _ in after.values()} == {"COMPLETED"}
    assert len({values for _, values in after.values()}) == 4  # every combination exactly once
    assert after["1"][1] == before["1"][1]  # the interrupted trial was finished, not replaced
    assert (out / "trials" / "trial_0" / "history.csv").read_bytes() == first_history
    with open(out / "trials.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hidden", "128,big"], r"--hidden: 'big' is not a int"),
        (["--dropout", "0.1,1.5"], r"--dropout must be in \[0, 1\)"),
        (["--lr", "-1"], "--lr must be positive"),
    ],
)
def test_bad_axis_values(tmp_path, argv, message):
    with pytest.raises(UserError, match=message):
        grid.main([*SOURCES, "--out", str(tmp_path / "g"), *argv])


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('hidden = ["a"]', ".toml", "axis 'hidden_size' takes integers"),
        ('{"lr": [0.1, "fast"]}', ".json", "axis 'learning_rate' takes numbers"),
        ('{"colour": [1]}', ".json", "unknown axis 'colour'"),
        ('{"dropout": []}', ".json", "needs a non-empty list"),
        ("hidden = [", ".toml", "not valid toml"),
    ],
)
def test_bad_grid_files(tmp_path, content, suffix, message):
    path = tmp_path / f"grid{suffix}"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        grid.main([*SOURCES, "--out", str(tmp_path / "g"), "--grid", str(path)])


def test_grid_file_and_flags_combine():
    args = grid.parser().parse_args(["--out", "x", "--lr", "0.5"])
    assert grid.settings_from_args(args) == (
        Config(),
        {**grid.DEFAULT_GRID, "learning_rate": [0.5]},
    )
