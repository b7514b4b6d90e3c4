"""Batches cut to their rows, end to end: a model answers every row as it does alone, in the
split's order; --batching is recorded and read back; the model takes any T."""

import json

import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, fixture_args

from kboolq import fit
from kboolq.data.batches import Batches, fixed_steps
from kboolq.data.boolq import read_rows
from kboolq.evaluation import predict_split
from kboolq.runs.api import load_run
from kboolq.runs.rundir import read_info

pytestmark = pytest.mark.backend


def test_answers_come_in_the_rows_order_and_equal_each_row_alone(trained):
    run_dir, cache = trained
    run = load_run(run_dir, cache)
    assert fixed_steps(run.model) is None  # any T
    rows = read_rows(FIXTURE_BOOLQ / "validation.jsonl")
    together = run.predict(rows)
    alone = np.array([run.predict([row])[0] for row in rows])
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
    encoded = run.encode(rows)
    split, layout = encoded.splits["rows"], encoded.layout
    as_dicts = run.encode([{"question": r.question, "passage": r.passage} for r in rows])
    np.testing.assert_array_equal(as_dicts.splits["rows"].ids, split.ids)  # as predict takes
    batches = Batches.for_model(run.model, split, encoded.lookup, layout, 8)
    assert batches.order.tolist() != list(range(len(rows)))  # taken by length, not in order
    assert max(batches[i][0]["vectors"].shape[1] for i in range(len(batches))) <= layout.steps
    assert min(batches[i][0]["vectors"].shape[1] for i in range(len(batches))) < layout.steps
    np.testing.assert_allclose(
        predict_split(run.model, split, encoded.lookup, layout, 8), together, atol=1e-6, rtol=0
    )
    assert predict_split(run.model, split.take(np.arange(0)), encoded.lookup, layout, 8).shape == (
        0,
    )


def test_batching_is_a_recorded_setting(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = fixture_args(run, cache, "--hidden", "4", "--epochs", "2", "--batching", "length")
    assert fit.main(args) == 0
    assert read_info(run).config.batching == "length"
    assert json.loads((run / "config.json").read_text())["hyperparameters"]["batching"] == "length"
    assert "--batching length" in (run / "README.md").read_text()  # the card's full command
    with pytest.raises(SystemExit):
        fit.parser().parse_args([*args, "--batching", "sorted"])


def test_no_rows_get_no_answers(trained):
    run_dir, cache = trained
    answers = load_run(run_dir, cache).predict([])
    assert answers.shape == (0,) and answers.dtype == np.float32


def test_preprocess_takes_threads_as_every_command_that_computes(tmp_path, capsys):
    from helpers import SOURCES

    from kboolq import preprocess

    assert preprocess.main([*SOURCES, "--cache-dir", str(tmp_path), "--threads", "1"]) == 0
    assert "fingerprint" in capsys.readouterr().out


def test_threads_beyond_the_cores_are_capped_with_one_line(capsys):
    import torch

    from kboolq.threads import available_cores, set_threads

    before = torch.get_num_threads()
    cores = available_cores()
    try:
        assert set_threads(100_000) == cores
        assert torch.get_num_threads() == cores
        assert capsys.readouterr().err == (
            f"kboolq: --threads 100000 is more than the {cores} cores available; using {cores}\n"
        )
        assert set_threads(1) == 1 and capsys.readouterr().err == ""
    finally:
        torch.set_num_threads(before)
