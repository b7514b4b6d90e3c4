"""Interruption, restart and fuzzing: nothing a kill or odd text does leaves kboolq broken."""

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import answers, fixture_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kboolq.config import Config
from kboolq.data.boolq import Row
from kboolq.data.glove import Glove
from kboolq.data.layout import Layout, encode
from kboolq.data.tokens import tokenize
from kboolq.errors import UserError
from kboolq.inputs import load_inputs
from kboolq.runs.rundir import read_info
from kboolq.training import release_memory, train_model

WORDS = ["the", "a", "is", "u.s.", "1,000", "'s", "moon", "caf", "e.g."]
GLOVE = Glove(WORDS, np.arange(len(WORDS) * 3, dtype=np.float32).reshape(-1, 3), "fuzz", "f")
LAYOUT = Layout(q_max=4, p_max=6, separator=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.text())
def test_preprocessing_never_crashes_and_shapes_stay_valid(question, passage):
    tokens = tokenize(question)
    assert all(isinstance(t, str) and t and t.isascii() for t in tokens)
    try:
        e = encode({"x": [Row(question + " the", passage + " moon", 1, "fuzz")]}, GLOVE, LAYOUT)
        table, splits = e.lookup.vectors, e.splits
    except UserError as exc:  # only text whose words all vanish may fail, and it says so
        assert "has no word in the GloVe vocabulary" in str(exc)
        return
    split = splits["x"]
    assert split.ids.shape == (1, LAYOUT.steps)
    assert 1 <= split.q_len[0] <= LAYOUT.q_max and 1 <= split.p_len[0] <= LAYOUT.p_max
    assert split.ids.min() >= 0 and split.ids.max() < len(table)
    assert not split.ids[0, split.q_len[0] : LAYOUT.passage_start].any()
    assert not split.ids[0, LAYOUT.passage_start + split.p_len[0] :].any()


def _fit_command(out, cache, epochs):
    extra = ["--hidden", "8", "--epochs", str(epochs), "--patience", str(epochs), "--verbose", "2"]
    return [sys.executable, "-m", "kboolq.fit", *fixture_args(out, cache, *extra)]


def _start_and_wait_for_checkpoint(out, cache):
    process = subprocess.Popen(
        _fit_command(out, cache, 200),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell running the tests in the background ignores SIGINT, and
        # children inherit that (Python then never raises KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (out / "history.csv").exists():
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    return process


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_model_and_says_so(tmp_path):
    out = tmp_path / "run"
    process = _start_and_wait_for_checkpoint(out, tmp_path / "cache")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"best model so far kept in {out / 'model.keras'}" in err
    assert "Traceback" not in err
    answers(out, tmp_path / "cache")  # the kept checkpoint loads and answers


@pytest.mark.slow
def test_fit_killed_with_sigkill_restarts_cleanly(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    process = _start_and_wait_for_checkpoint(out, cache)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    answers(out, cache)  # the last good checkpoint survives the kill, loads and answers
    result = subprocess.run(
        _fit_command(out, cache, 2), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "did not finish; starting it over" in result.stdout
    assert (out / "metrics.json").exists()
    assert len((out / "history.csv").read_text().splitlines()) == 3


def _resident_mb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_goes_back_to_the_os():
    blocks = [bytearray(100_000) for _ in range(3000)]  # 300 MB of heap, not mmap, blocks
    pinned = blocks[-1]  # keeps the heap's top in use, so free() alone cannot shrink it
    del blocks
    held = _resident_mb()
    assert release_memory()
    assert held - _resident_mb() > 200
    assert len(pinned) == 100_000


def test_every_training_run_releases_memory_after_each_epoch(tmp_path, monkeypatch):
    from kboolq import fit, training

    calls = []
    monkeypatch.setattr(training, "release_memory", lambda: calls.append(1) or True)
    args = fixture_args(tmp_path / "run", tmp_path / "cache", "--hidden", "4", "--epochs", "2")
    assert fit.main([*args, "--patience", "5"]) == 0
    assert len(calls) == 2


def test_ctrl_c_anywhere_in_a_step_stops_training_with_keyboard_interrupt(
    trained, tmp_path, request
):
    """SIGINT arriving inside one of Keras's bare `except:` blocks (e.g. log conversion) would be
    swallowed and training would run on; the signal only sets a flag, read between batches."""

    class SigintInLogs(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0 and not hasattr(self, "sent"):
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)  # handled before this callback returns

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    run, cache = trained
    inputs = load_inputs(read_info(run).data, cache)
    config = Config(hidden_size=4, max_epochs=50, patience=50)
    with pytest.raises(KeyboardInterrupt):
        train_model(config, inputs.prepared, tmp_path / "run", [SigintInLogs()], verbose=0)
    # stopped inside the first epoch, which, cut short, is not recorded (training went no further)
    assert not (tmp_path / "run" / "history.csv").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
