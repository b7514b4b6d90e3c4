"""A training killed and run again goes on from its last finished epoch, and ends exactly as the
uninterrupted one: the same history, the same best epoch and the same weights."""

import csv
import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import fit_fixture

from kboolq.config import Config
from kboolq.inputs import load_inputs
from kboolq.resume import STATE_FILE, read_state, training_key
from kboolq.runs.card import TRAINED, card_seconds
from kboolq.runs.rundir import METRICS_FILE, RESUME_DIR, read_info
from kboolq.training import train_model

# the recipe's moving parts, all of them on: dropout (the seeds' state), EMA swapped in at each
# epoch's end, the learning-rate plateau, early stopping's count and the best checkpoint
CONFIG = Config(hidden_size=4, max_epochs=6, min_epochs=0, patience=3, lr_plateau=1,
                dropout=0.3, embedding_dropout=0.2)  # fmt: skip


class Crash(Exception):
    pass


class CrashAt:
    """A callback that raises when epoch `epoch` (0 is the first) begins: what a kill there
    leaves, the state of the epochs before it saved."""

    def __new__(cls, epoch):
        import keras

        class _Crash(keras.callbacks.Callback):
            def on_epoch_begin(self, index, logs=None):
                if index == epoch:
                    raise Crash(f"killed at epoch {index}")

        return _Crash()


@pytest.fixture(scope="module")
def prepared(trained):
    run, cache = trained
    return load_inputs(read_info(run).data, cache).prepared


def _history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _weights(model):
    return [np.asarray(v) for v in model.get_weights()]


@pytest.fixture(scope="module")
def killed(prepared, tmp_path_factory):
    """A training of CONFIG killed as its 4th epoch began (its state: 3 epochs), never changed
    by a test: copy it first."""
    cut = tmp_path_factory.mktemp("killed") / "cut"
    with pytest.raises(Crash):
        train_model(CONFIG, prepared, cut, [CrashAt(3)], verbose=0)
    return cut


def test_a_resumed_training_ends_as_the_uninterrupted_one(prepared, killed, tmp_path):
    whole, checkpoint = train_model(CONFIG, prepared, tmp_path / "whole", verbose=0)
    cut = Path(shutil.copytree(killed, tmp_path / "cut"))
    state = read_state(cut, training_key(CONFIG, prepared))
    assert (state.epochs, state.stopped) == (3, False)
    assert state.seconds > 0  # the 3 epochs' training time
    assert sorted(p.name for p in (cut / RESUME_DIR).iterdir()) == [
        "epoch-3.weights.h5",
        STATE_FILE,
    ]  # one epoch's variables only
    resumed, again = train_model(CONFIG, prepared, cut, verbose=0)
    # early stopping's count is carried over: both stop at the same epoch, before the last
    assert len(_history(cut)) == len(_history(tmp_path / "whole")) < CONFIG.max_epochs
    for a, b in zip(_history(cut), _history(tmp_path / "whole"), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    assert (again.best, again.best_epoch) == (checkpoint.best, checkpoint.best_epoch)
    for a, b in zip(_weights(resumed), _weights(whole), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    ended = json.loads((cut / RESUME_DIR / STATE_FILE).read_text())
    assert ended["stopped"] is True
    assert ended["seconds"] > state.seconds  # the time before the kill, and the time after it
    # killed after training ended, before the run was finished: nothing is trained again
    _, last = train_model(CONFIG, prepared, cut, verbose=0)
    assert (last.best, last.best_epoch) == (checkpoint.best, checkpoint.best_epoch)
    assert len(_history(cut)) == len(_history(tmp_path / "whole"))


class CtrlCAt:
    """A callback that sends this process SIGINT after the first batch of epoch `epoch`: the
    epoch is cut short (kboolq.training.StopOnInterrupt ends it after that batch)."""

    def __new__(cls, epoch):
        import os
        import signal

        import keras

        class _CtrlC(keras.callbacks.Callback):
            def on_epoch_begin(self, index, logs=None):
                self.index = index

            def on_train_batch_end(self, batch, logs=None):
                if self.index == epoch and batch == 0:
                    os.kill(os.getpid(), signal.SIGINT)

        return _CtrlC()


def test_an_epoch_cut_short_by_ctrl_c_is_done_again_whole(prepared, tmp_path, request):
    import signal

    from kboolq.errors import Interrupted

    previous = signal.getsignal(signal.SIGINT)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    assert len(prepared.splits["train"]) > CONFIG.batch_size  # an epoch of more than one batch
    whole, checkpoint = train_model(CONFIG, prepared, tmp_path / "whole", verbose=0)
    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train_model(CONFIG, prepared, cut, [CtrlCAt(2)], verbose=0)
    assert len(_history(cut)) == 2  # the third epoch, cut short, is not recorded
    assert read_state(cut, training_key(CONFIG, prepared)).epochs == 2
    resumed, again = train_model(CONFIG, prepared, cut, verbose=0)
    for a, b in zip(_history(cut), _history(tmp_path / "whole"), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    assert len(_history(cut)) == len(_history(tmp_path / "whole"))
    assert (again.best, again.best_epoch) == (checkpoint.best, checkpoint.best_epoch)
    for a, b in zip(_weights(resumed), _weights(whole), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_killed_after_early_stopping_decided_it_trains_no_further(prepared, tmp_path, capsys):
    import keras

    class CrashAtEnd(keras.callbacks.Callback):  # a kill after the last epoch's state was saved
        def on_train_end(self, logs=None):
            raise Crash("killed at the end")

    whole, checkpoint = train_model(CONFIG, prepared, tmp_path / "whole", verbose=0)
    with pytest.raises(Crash):
        train_model(CONFIG, prepared, tmp_path / "cut", [CrashAtEnd()], verbose=0)
    capsys.readouterr()
    _, again = train_model(CONFIG, prepared, tmp_path / "cut", verbose=0)
    epochs = len(_history(tmp_path / "whole"))
    assert f"training had ended after epoch {epochs}; finishing it" in capsys.readouterr().out
    assert len(_history(tmp_path / "cut")) == epochs < CONFIG.max_epochs
    assert (again.best, again.best_epoch) == (checkpoint.best, checkpoint.best_epoch)


def test_a_state_of_other_settings_or_rows_is_not_taken_up(prepared, killed):
    other = dataclasses.replace(CONFIG, seed=1)
    assert read_state(killed, training_key(CONFIG, prepared)) is not None
    assert read_state(killed, training_key(other, prepared)) is None
    train = prepared.splits["train"]
    fewer = dataclasses.replace(
        prepared, splits={**prepared.splits, "train": train.take(np.arange(len(train) - 1))}
    )
    assert read_state(killed, training_key(CONFIG, fewer)) is None


def test_a_damaged_state_starts_over(prepared, killed, tmp_path):
    cut = Path(shutil.copytree(killed, tmp_path / "cut"))
    key = training_key(CONFIG, prepared)
    (cut / RESUME_DIR / STATE_FILE).write_text('{"format": 1, "key": "' + key[:10])
    assert read_state(cut, key) is None
    raw = json.loads((killed / RESUME_DIR / STATE_FILE).read_text())
    (cut / RESUME_DIR / STATE_FILE).write_text(json.dumps({**raw, "weights": "epoch-9.weights.h5"}))
    assert read_state(cut, key) is None  # names a file that is not there
    (cut / RESUME_DIR / STATE_FILE).write_text(json.dumps({**raw, "format": 2}))
    assert read_state(cut, key) is None


def test_a_finished_run_keeps_no_training_state(trained):
    run, _ = trained
    assert (run / METRICS_FILE).exists()
    assert (run / "history.csv").exists()
    assert not (run / RESUME_DIR).exists()


@pytest.mark.slow
def test_fit_killed_with_sigkill_goes_on_and_ends_as_an_uninterrupted_fit(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import fixture_args

    def command(out):
        extra = ["--hidden", "8", "--epochs", "30", "--patience", "30", "--min-epochs", "0",
                 "--dropout", "0.3", "--verbose", "2"]  # fmt: skip
        return [sys.executable, "-m", "kboolq.fit", *fixture_args(out, tmp_path / "cache", *extra)]

    whole = tmp_path / "whole"
    subprocess.run(command(whole), check=True, capture_output=True, timeout=600)
    out = tmp_path / "run"
    process = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state, deadline = out / RESUME_DIR / STATE_FILE, time.monotonic() + 300
    while not (state.exists() and json.loads(state.read_text() or "{}").get("epochs", 0) >= 3):
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / METRICS_FILE).exists()
    # the card counts the time trained before the kill: made large here to be told apart
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "seconds": saved["seconds"] + 5000}))
    result = subprocess.run(command(out), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "did not finish; going on where it stopped" in result.stdout
    assert "going on after epoch" in result.stdout
    assert len(_history(out)) == len(_history(whole)) == 30
    for a, b in zip(_history(out), _history(whole), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["epoch"], key)
    assert json.loads((out / METRICS_FILE).read_text()) == json.loads(
        (whole / METRICS_FILE).read_text()
    )
    assert not (out / RESUME_DIR).exists()
    trained = re.search(r"Training time: (\d+) s;", (out / "README.md").read_text())
    assert 5000 < int(trained.group(1)) < 5000 + 600, trained.group(0)


def test_an_ensemble_member_killed_goes_on_where_it_stopped(tmp_path, monkeypatch, capsys):
    import kboolq.members as members

    real, calls = members.train_model, []

    def crash_second(config, prepared, run_dir, extra, verbose):
        calls.append(run_dir.name)
        crash = [CrashAt(2)] if len(calls) == 2 else []
        return real(config, prepared, run_dir, [*extra, *crash], verbose=verbose)

    monkeypatch.setattr(members, "train_model", crash_second)
    out, cache = tmp_path / "ens", tmp_path / "cache"
    flags = ("--hidden", "4", "--epochs", "4", "--min-epochs", "0", "--seeds", "2")
    with pytest.raises(Crash):
        fit_fixture(out, cache, *flags)
    assert calls == ["seed_0", "seed_1"]
    # the time the members trained before the kill, made large here to be told apart: the
    # kept member's card says 4000 s, the resumed one's state 3000 s more than it trained
    kept_card = out / "members" / "seed_0" / "README.md"
    kept_card.write_text(TRAINED.sub("Training time: 4000 s;", kept_card.read_text()))
    state = out / "members" / "seed_1" / RESUME_DIR / STATE_FILE
    saved = json.loads(state.read_text())
    state.write_text(json.dumps({**saved, "seconds": saved["seconds"] + 3000}))
    capsys.readouterr()
    assert fit_fixture(out, cache, *flags) == 0
    said = capsys.readouterr().out
    assert "member seed 0: kept from an earlier run" in said
    assert f"{out / 'members' / 'seed_1'}: going on after epoch 2" in said
    assert len(_history(out / "members" / "seed_1")) == 4
    assert not (out / "members" / "seed_1" / RESUME_DIR).exists()
    assert card_seconds(out / "members" / "seed_0") == 4000
    assert 3000 < card_seconds(out / "members" / "seed_1") < 3000 + 300
    # the ensemble's card: both members' time, and its own finishing
    assert card_seconds(out / "members" / "seed_1") + 4000 <= card_seconds(out) < 7000 + 300


def test_an_ensemble_with_a_kept_member_of_unknown_time_says_not_measured(tmp_path):
    out, cache = tmp_path / "ens", tmp_path / "cache"
    flags = ("--hidden", "4", "--epochs", "2", "--min-epochs", "0", "--seeds", "2")
    assert fit_fixture(out, cache, *flags) == 0
    assert card_seconds(out / "members" / "seed_0") > 0
    assert card_seconds(out) >= card_seconds(out / "members" / "seed_0")
    # an unfinished ensemble whose first member's card (an older kboolq's) gave no time
    (out / "metrics.json").unlink()
    card = out / "members" / "seed_0" / "README.md"
    card.write_text(TRAINED.sub("Training time: not measured here;", card.read_text()))
    assert fit_fixture(out, cache, *flags) == 0
    assert card_seconds(out) is None
    assert "Training time: not measured here;" in (out / "README.md").read_text()
