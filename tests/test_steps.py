"""Training steps that keep the GPU busy: no metric values read back to the host inside a step
(kboolq.training.epoch_metrics), the same epochs, history and checkpoint as Keras's own steps."""

import csv

import keras
import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, FIXTURE_GLOVE, FIXTURE_VALID_SIZE

from kboolq import training
from kboolq.config import Config, DataSettings
from kboolq.hostreads import StepReads, count_host_reads
from kboolq.inputs import load_inputs
from kboolq.models import gru


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    settings = DataSettings(
        source=str(FIXTURE_BOOLQ), glove=str(FIXTURE_GLOVE), valid_size=FIXTURE_VALID_SIZE
    )
    return load_inputs(settings, tmp_path_factory.mktemp("cache")).prepared


CONFIG = Config(hidden_size=4, batch_size=16, max_epochs=6, min_epochs=0, patience=2, seed=3)


def _history(run_dir):
    with open(run_dir / "history.csv") as handle:
        return list(csv.DictReader(handle))


def test_epoch_metrics_choose_the_same_epochs_as_kerass_own_steps(prepared, tmp_path, monkeypatch):
    _, lean = training.train_model(CONFIG, prepared, tmp_path / "lean", verbose=0)
    monkeypatch.setattr(training, "epoch_metrics", lambda model: model)  # Keras's steps
    _, stock = training.train_model(CONFIG, prepared, tmp_path / "stock", verbose=0)
    assert lean.best_epoch == stock.best_epoch and lean.best == stock.best
    rows, expected = _history(tmp_path / "lean"), _history(tmp_path / "stock")
    assert len(rows) == len(expected) >= 3  # early stopping ended both at the same epoch
    assert list(rows[0]) == list(expected[0])  # the same columns: every metric, every epoch
    for row, want in zip(rows, expected, strict=True):
        np.testing.assert_allclose(
            [float(v) for v in row.values()], [float(v) for v in want.values()], rtol=1e-6
        )
    assert (tmp_path / "lean" / "model.keras").exists()


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="counts torch tensor reads")
def test_a_step_reads_at_most_the_dropout_seed_back_to_the_host(prepared, tmp_path, monkeypatch):
    monkeypatch.setitem(gru.TRIM_ON_HOST, "cpu", False)  # as on a GPU
    with count_host_reads() as counts:
        steps = StepReads(counts)
        training.train_model(CONFIG, prepared, tmp_path / "run", [steps], verbose=0)
    assert steps.steps >= 12
    # Keras's dropout draws its seed on the host once per step; nothing else is read
    assert steps.inside <= steps.steps
