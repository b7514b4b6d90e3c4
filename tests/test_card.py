"""The model card, RUN_DIR/README.md: written with every run, replaced with it, never the user's."""

import json

import yaml
from helpers import fixture_args

from kboolq import ensemble, fit
from kboolq.runs.rundir import is_kboolq_entry


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_fit_writes_a_card_with_front_matter_command_results_and_limits(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert fit.main(fixture_args(run, cache, "--hidden", "4", "--epochs", "1")) == 0
    text = (run / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["language"] == "en" and meta["library_name"] == "keras"
    (valid, test) = meta["model-index"][0]["results"]
    assert (valid["dataset"]["split"], test["dataset"]["split"]) == ("valid", "test")
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = next(m["value"] for m in test["metrics"] if m["type"] == "accuracy")
    assert accuracy == round(metrics["test"]["accuracy"], 4)
    assert "architecture: `bigru` (bigru), " in text and " parameters" in text
    assert "--hidden 4 " in text and "--epochs 1 " in text and f"--out {run}" in text
    assert "rows: train 120, valid 40, test 48" in text
    (tn, fp), (fn, tp) = metrics["valid"]["confusion_matrix"]
    assert f"| no | {tn} | {fp} |" in text and f"| yes | {fn} | {tp} |" in text
    assert "![learning curves](learning_curves.png)" in text
    assert "of the tokens it was trained and scored on)" in text
    assert is_kboolq_entry("README.md")  # the output guard never calls it the user's


def test_the_card_is_replaced_with_the_run_and_an_ensemble_has_its_own(tmp_path, capsys):
    run, cache = tmp_path / "run", tmp_path / "cache"
    assert fit.main(fixture_args(run, cache, "--hidden", "4", "--epochs", "1")) == 0
    (run / "notes.txt").write_text("mine")
    args = fixture_args(run, cache, "--hidden", "6", "--epochs", "1", "--overwrite")
    assert fit.main(args) == 0
    text = (run / "README.md").read_text()
    assert "--hidden 6 " in text and "--hidden 4 " not in text
    assert (run / "notes.txt").read_text() == "mine"
    other = tmp_path / "other"
    assert (
        fit.main(fixture_args(other, cache, "--hidden", "4", "--epochs", "1", "--seed", "1")) == 0
    )
    out = tmp_path / "ens"
    args = [str(run), str(other), "--out", str(out), "--cache-dir", str(cache)]
    assert ensemble.main(args) == 0
    text = (out / "README.md").read_text()
    assert f"python -m kboolq.ensemble {run} {other} --out {out}" in text
    assert "rows: valid 40, test 48" in text
