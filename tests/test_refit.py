"""fit --refit RUN_DIR: the run's settings trained again on train + valid, for its epochs."""

import json

import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, fixture_args

from kboolq import fit
from kboolq.data.boolq import read_rows
from kboolq.errors import UserError
from kboolq.plots import read_history
from kboolq.runs.api import load_run
from kboolq.runs.rundir import read_info

COMMON = ("--hidden", "4", "--epochs", "4", "--min-epochs", "0", "--lr-plateau", "1")


def _refit_args(source, out, cache, *extra):
    return ["--refit", str(source), "--out", str(out), "--cache-dir", str(cache),
            "--verbose", "0", *extra]  # fmt: skip


def test_refit_replays_the_chosen_epochs_and_rates_on_train_plus_valid(tmp_path):
    source, cache, out = tmp_path / "run", tmp_path / "cache", tmp_path / "refit"
    assert fit.main(fixture_args(source, cache, *COMMON)) == 0
    history = read_history(source / "history.csv")
    scores = [row["val_balanced_accuracy"] for row in history]
    best = scores.index(max(scores)) + 1
    assert fit.main(_refit_args(source, out, cache)) == 0
    refit = json.loads((out / "refit.json").read_text())
    assert refit["from"] == str(source.resolve()) and refit["epochs"] == best
    assert refit["learning_rates"] == [row["learning_rate"] for row in history[:best]]
    assert len(read_history(out / "history.csv")) == best
    assert read_info(out) == read_info(source)  # the same settings
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"test"}  # valid is trained on now
    rows = read_rows(FIXTURE_BOOLQ / "validation.jsonl")
    assert not np.allclose(
        load_run(out, cache).predict(rows), load_run(source, cache).predict(rows)
    )
    assert "python -m kboolq.fit --refit" in (out / "README.md").read_text()


def test_an_ensembles_members_are_each_refit(tmp_path):
    source, cache, out = tmp_path / "ens", tmp_path / "cache", tmp_path / "refit"
    args = fixture_args(source, cache, *COMMON, "--seeds", "2", "--alternate", "none")
    assert fit.main(args) == 0
    assert fit.main(_refit_args(source, out, cache)) == 0
    members = sorted(p.name for p in (out / "members").iterdir())
    assert members == ["0_seed_0", "1_seed_1"]
    listed = json.loads((out / "members.json").read_text())["members"]
    assert listed == ["members/0_seed_0", "members/1_seed_1"]
    for name in members:
        assert json.loads((out / "members" / name / "refit.json").read_text())["from"] == str(
            (source / "members" / name.split("_", 1)[1]).resolve()
        )
    rows = read_rows(FIXTURE_BOOLQ / "validation.jsonl")
    assert load_run(out, cache).predict(rows).shape == (len(rows),)


def test_refit_refuses_settings_flags_and_unfinished_runs(tmp_path):
    source, cache, out = tmp_path / "run", tmp_path / "cache", tmp_path / "refit"
    assert fit.main(fixture_args(source, cache, *COMMON)) == 0
    with pytest.raises(UserError) as error:
        fit.main(_refit_args(source, out, cache, "--hidden", "8", "--lr", "0.1"))
    assert str(error.value) == f"--refit takes {source}'s own settings: drop --hidden, --lr"
    (source / "history.csv").unlink()
    with pytest.raises(UserError, match="history.csv: unreadable .*--refit needs a finished run"):
        fit.main(_refit_args(source, out, cache))
    assert not out.exists()
