"""Run directories: the format-1 runs written before the package was reorganised still load,
predict exactly as they did, and evaluate; config.json problems name the file and key."""

import json
import shutil

import numpy as np
import pytest
from helpers import DATA, FIXTURE_BOOLQ, FIXTURE_GLOVE

from kboolq import evaluate, predict
from kboolq.errors import UserError
from kboolq.runs.rundir import read_info

OLD_RUNS = DATA / "runs"


def _old_run(arch, tmp_path):
    """A copy of a run written by kboolq before the reorganisation, its vectors path made
    absolute (it was recorded relative to the repository root)."""
    run_dir = tmp_path / f"format1-{arch}"
    shutil.copytree(OLD_RUNS / f"format1-{arch}", run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["embeddings"]["source"] = str(FIXTURE_GLOVE)
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


@pytest.mark.parametrize("arch", ["seed", "bigru"])
def test_runs_written_before_the_reorganisation_predict_as_they_did(arch, tmp_path, capsys):
    run_dir = _old_run(arch, tmp_path)
    rows = str(FIXTURE_BOOLQ / "validation.jsonl")
    assert predict.main([str(run_dir), "--jsonl", rows, "--cache-dir", str(tmp_path)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    saved = OLD_RUNS / f"format1-{arch}.predictions.jsonl"
    expected = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(answers) == len(expected) == 48
    np.testing.assert_allclose(
        [a["p_yes"] for a in answers], [e["p_yes"] for e in expected], atol=2e-6
    )
    assert [a["question"] for a in answers] == [e["question"] for e in expected]


def test_an_old_seed_run_reads_as_the_notebook_architecture(tmp_path, capsys):
    run_dir = _old_run("seed", tmp_path)
    assert read_info(run_dir).config.arch == "notebook"
    args = [str(run_dir), "--data", str(FIXTURE_BOOLQ), "--cache-dir", str(tmp_path)]
    assert evaluate.main(args) == 0
    assert json.loads((run_dir / "report.json").read_text())["valid"]["accuracy"] > 0


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["data"].pop("valid_size"), r"config.json: key 'data.valid_size' is missing"),
        (lambda c: c["layout"].update(q_max="4"), r"config.json: layout sizes must be whole"),
        (
            lambda c: c["data"].update(valid_size=0),
            r"config.json: 'data.valid_size' must be at least 1, got 0",
        ),
        (
            lambda c: c["hyperparameters"].update(hidden_size="4"),
            r"config.json: 'hyperparameters.hidden_size': expected int, got '4'",
        ),
        (lambda c: c.pop("embeddings"), r"config.json: key 'embeddings' is missing"),
        # a key of the wrong JSON type is named, for each kind of value (#34 item 8)
        (
            lambda c: c["embeddings"].update(source=3),
            r"config.json: 'embeddings.source': expected str, got 3$",
        ),
        (
            lambda c: c["data"].update(source=3),
            r"config.json: 'data.source': expected str, got 3$",
        ),
        (
            lambda c: c["data"].update(accents=["fold"]),
            r"config.json: 'data.accents': expected str, got \['fold'\]$",
        ),
        (
            lambda c: c["embeddings"].update(fingerprint=None),
            r"config.json: 'embeddings.fingerprint': expected str, got None$",
        ),
        (
            lambda c: c["data"].update(preprocess_fingerprint=7),
            r"config.json: 'data.preprocess_fingerprint': expected str, got 7$",
        ),
        (
            lambda c: c["data"].update(passage_percentile="99"),
            r"config.json: 'data.passage_percentile': expected float, got '99'$",
        ),
    ],
)
def test_an_edited_config_names_the_file_and_what_is_wrong(edit, message, tmp_path):
    run_dir = _old_run("bigru", tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    edit(config)
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        read_info(run_dir)


def test_missing_vectors_named_in_config_json_are_reported_by_its_key(tmp_path):
    from kboolq.runs.api import open_run

    run_dir = _old_run("bigru", tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["embeddings"]["source"] = str(tmp_path / "gone.txt")
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as error:
        open_run(run_dir, tmp_path / "cache")
    assert str(error.value) == (
        f"{run_dir / 'config.json'}: 'embeddings.source' {tmp_path / 'gone.txt'}: no such file "
        "(or use hub:50/100/200/300 or kumo50)"
    )


@pytest.mark.parametrize("arch", ["seed", "bigru"])
def test_a_model_saved_with_a_fixed_length_reads_cut_batches(arch, tmp_path):
    """#33: a format-1 model takes T = 52 only; opened, it takes any T with the same weights,
    so its batches are cut to their rows, and it answers as the saved model does."""
    from kboolq.data.batches import Batches, fixed_steps
    from kboolq.data.boolq import read_rows
    from kboolq.evaluation import predict_split
    from kboolq.runs.api import load_run
    from kboolq.runs.rundir import load_model

    run_dir = _old_run(arch, tmp_path)
    saved = load_model(run_dir)
    run = load_run(run_dir, tmp_path)
    assert fixed_steps(saved) == 52 and fixed_steps(run.model) is None
    encoded = run.encode(read_rows(FIXTURE_BOOLQ / "validation.jsonl"))
    split, lookup, layout = encoded.splits["rows"], encoded.lookup, encoded.layout
    first, _ = Batches.for_model(run.model, split, lookup, layout, 8)[0]
    assert first["vectors"].shape[1] < 52  # cut to its rows (the shortest passages first)
    np.testing.assert_allclose(
        predict_split(run.model, split, lookup, layout, 8),
        predict_split(saved, split, lookup, layout, 8),  # every batch the whole T = 52
        atol=2e-6,
    )
