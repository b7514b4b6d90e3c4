"""Runs move between backends: a run saved on this backend answers the same on the other one,
and one saved on the other answers the same here (a single run, a --seeds ensemble and a --chars
run), within 1e-5. The other backend runs in a child process with its own KERAS_BACKEND, so
these are slow; they need both torch and jax installed (the jax tox env has both)."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, fixture_args

from kboolq import fit
from kboolq.data.boolq import read_rows
from kboolq.runs.api import load_run

HERE = keras.backend.backend()
OTHER = {"torch": "jax", "jax": "torch"}.get(HERE)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(OTHER is None, reason=f"no other backend to compare {HERE} with"),
    pytest.mark.skipif(
        OTHER is not None and importlib.util.find_spec(OTHER) is None,
        reason=f"{OTHER} is not installed (tox -e jax has torch and jax)",
    ),
]

ROWS = FIXTURE_BOOLQ / "validation.jsonl"
KINDS = {
    "single": ("--hidden", "4", "--epochs", "1"),
    "seeds": ("--hidden", "4", "--epochs", "1", "--seeds", "2"),
    "chars": ("--hidden", "4", "--epochs", "1", "--chars", "5", "--exact-match", "on"),
}
PREDICT = """
import json, sys
from pathlib import Path
import kboolq, keras
from kboolq.data.boolq import read_rows
assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
rows = read_rows(Path(sys.argv[2]))
answers = {run: kboolq.load_run(run, sys.argv[3]).predict(rows).tolist() for run in sys.argv[4:]}
print(json.dumps(answers))
"""


def _on_other(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": OTHER}
    command = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _answers_on_other(runs, cache) -> dict[str, np.ndarray]:
    done = _on_other(OTHER, str(ROWS), str(cache), *map(str, runs), script=PREDICT)
    return {run: np.array(p) for run, p in json.loads(done.stdout.splitlines()[-1]).items()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_run_saved_here_answers_the_same_on_the_other_backend(kind, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert fit.main(fixture_args(run, cache, *KINDS[kind])) == 0
    rows = read_rows(ROWS)
    here = load_run(run, cache).predict(rows)
    there = _answers_on_other([run], cache)[str(run)]
    assert there.shape == here.shape == (len(rows),)
    assert here.min() > 0.0 and here.max() < 1.0
    np.testing.assert_allclose(there, here, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_run_saved_on_the_other_backend_answers_the_same_here(kind, tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    _on_other("kboolq.fit", *fixture_args(run, cache, *KINDS[kind]))
    config = json.loads((run / "config.json").read_text())
    assert config["format"] >= 1  # a kboolq run, written by the other process
    there = _answers_on_other([run], cache)[str(run)]
    here = load_run(run, cache).predict(read_rows(ROWS))
    np.testing.assert_allclose(here, there, atol=1e-5, rtol=0)
