"""The fit / evaluate / predict / preprocess commands end to end on the fixture data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURE_BOOLQ, SOURCES, fit_fixture, fixture_args

import kboolq
from kboolq import carve, ensemble, evaluate, fit, predict, preprocess
from kboolq.data.boolq import load_boolq, read_rows
from kboolq.errors import UserError
from kboolq.runs.rundir import is_kboolq_entry
from kboolq.training import class_weights

pytestmark = pytest.mark.backend

KEYS = {
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "precision",
    "recall",
    "pr_auc",
    "loss",
    "confusion_matrix",
}


def _fit(run_dir, cache, *extra):
    assert fit_fixture(run_dir, cache, "--hidden", "8", "--epochs", "2", *extra) == 0


def _env():
    return {**os.environ, "PYTHONHASHSEED": "0"}


def _command(module, *args):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )


def test_fit_writes_every_run_file(run):
    run_dir, _ = run
    assert {p.name for p in run_dir.iterdir()} == {
        "model.keras",
        "config.json",
        "history.csv",
        "metrics.json",
        "learning_curves.png",
        "README.md",
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test"}
    for split in metrics.values():
        assert set(split) == KEYS
        (tn, fp), (fn, tp) = split["confusion_matrix"]
    assert tn + fp + fn + tp == 48
    config = json.loads((run_dir / "config.json").read_text())
    assert config["hyperparameters"]["hidden_size"] == 4
    assert config["layout"]["separator"] == 8 and config["embeddings"]["dim"] == 8
    assert config["data"]["valid_size"] == 40 and config["data"]["passage_percentile"] == 99.0
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and "val_balanced_accuracy" in history[0]
    assert len(history) == 2  # the header and the one epoch


def test_same_seed_same_metrics(run, tmp_path):
    run_dir, cache = run
    assert fit_fixture(tmp_path / "again", cache) == 0
    first = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads((tmp_path / "again" / "metrics.json").read_text()) == first


def test_balanced_class_weights_by_hand():
    assert class_weights(np.array([1, 1, 1, 0]), "balanced") == {0: 2.0, 1: 4 / 6}
    assert class_weights(np.array([1, 0]), "none") is None
    with pytest.raises(UserError, match="needs both answers"):
        class_weights(np.array([1, 1]), "balanced")


def test_class_weight_changes_the_training_loss(run, tmp_path):
    _fit(tmp_path / "weighted", tmp_path / "cache", "--class-weight", "balanced")
    config = json.loads((tmp_path / "weighted" / "config.json").read_text())
    assert config["hyperparameters"]["class_weight"] == "balanced"
    first_loss = [
        (path / "history.csv").read_text().splitlines()[1].split(",")
        for path in (run[0], tmp_path / "weighted")
    ]
    header = (run[0] / "history.csv").read_text().splitlines()[0].split(",")
    column = header.index("loss")
    assert first_loss[0][column] != first_loss[1][column]


def test_existing_run_needs_overwrite(run, capsys):
    run_dir, cache = run
    code = fit.run_command(fit.main, "kboolq.fit")(
        [*SOURCES, "--cache-dir", str(cache), "--out", str(run_dir)]
    )
    assert code == 2
    assert "already holds a kboolq run; pass --overwrite" in capsys.readouterr().err


def test_evaluate_writes_report_and_plots(run, capsys):
    run_dir, cache = run
    assert evaluate.main([str(run_dir), "--split", "test", "--cache-dir", str(cache)]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert report["test"].pop("data") == str(FIXTURE_BOOLQ.resolve())  # what it scored
    analysis = report["test"].pop("analysis")
    (tn, fp), (fn, tp) = metrics["test"]["confusion_matrix"]
    assert report["test"].pop("confusion_matrix") == metrics["test"].pop("confusion_matrix")
    assert report["test"] == pytest.approx(metrics["test"], abs=1e-6)
    for groups in ("by_first_word", "by_passage_length", "by_question_words_in_passage"):
        assert sum(g["rows"] for g in analysis[groups].values()) == 48  # every test row once
    assert sum(b["rows"] for b in analysis["calibration"]["bins"]) == 48
    for name in ("confusion_matrix", "roc", "pr", "calibration"):
        assert (run_dir / f"test_{name}.png").read_bytes()[:4] == b"\x89PNG"
    errors = [json.loads(line) for line in (run_dir / "test_errors.jsonl").read_text().splitlines()]
    assert len(errors) == min(fp + fn, 25)
    assert all((e["p_yes"] >= 0.5) != e["label"] for e in errors)  # each one wrong
    confidence = [abs(e["p_yes"] - 0.5) for e in errors]
    assert confidence == sorted(confidence, reverse=True)
    printed = capsys.readouterr().out
    assert "balanced_accuracy" in printed and "expected calibration error: " in printed
    assert is_kboolq_entry("test_errors.jsonl") and is_kboolq_entry("valid_calibration.png")


@pytest.mark.slow
def test_predict_in_a_new_process_equals_fit_time_predictions(run, tmp_path):

    from kboolq.cli import data_settings
    from kboolq.inputs import load_inputs
    from kboolq.runs.rundir import load_model

    run_dir, cache = run
    args = fit.parser().parse_args([*SOURCES, "--cache-dir", str(cache), "--out", "x"])
    inputs = load_inputs(data_settings(args), cache)
    test = inputs.prepared.splits["test"]
    from kboolq.evaluation import predict_split

    prepared = inputs.prepared
    expected = predict_split(load_model(run_dir), test, prepared.lookup, prepared.layout, 64)
    result = _command(
        "kboolq.predict",
        str(run_dir),
        "--jsonl",
        str(FIXTURE_BOOLQ / "validation.jsonl"),
        "--cache-dir",
        str(cache),
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    # a new process on a GPU runs cuDNN with torch's default TF32, this one in float32
    atol = 1e-3 if torch.cuda.is_available() else 1e-6
    np.testing.assert_allclose([a["p_yes"] for a in answers], expected, atol=atol)
    assert [a["answer"] for a in answers] == ["yes" if p >= 0.5 else "no" for p in expected]


def test_predict_one_question(run, capsys):
    run_dir, cache = run
    code = predict.main(
        [
            str(run_dir),
            "--question",
            "is the moon red",
            "--passage",
            "the moon is red. yes.",
            "--cache-dir",
            str(cache),
        ]
    )
    assert code == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["question"] == "is the moon red" and answer["answer"] in ("yes", "no")
    assert 0 < answer["p_yes"] < 1


@pytest.mark.slow
def test_fit_is_tensorflow_free(tmp_path):
    args = [*SOURCES, "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "r")]
    args += ["--hidden", "4", "--epochs", "1", "--verbose", "0"]
    code = (
        f"import sys, kboolq.fit as f; f.main({args!r}); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert 'wandb' not in sys.modules, 'wandb imported without --wandb'; print('ok')"
    )
    env = {**_env(), "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    [
        "kboolq.fit", "kboolq.evaluate", "kboolq.predict", "kboolq.preprocess", "kboolq.ensemble",
        "kboolq.export", "kboolq.serve",
    ],
)  # fmt: skip
def test_help_explains_every_command(module):
    result = _command(module, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: python -m {module}")
    assert "--cache-dir" in result.stdout


def _editable_by_finder():
    """pip install -e (PEP 660) imports kboolq through a finder placed after the folders on
    sys.path, so a folder named kboolq in the current directory comes first."""
    return any(
        str(getattr(f, "__module__", "")).startswith("__editable___kboolq") for f in sys.meta_path
    )


@pytest.mark.slow
@pytest.mark.parametrize("module", ["kboolq.fit", "kboolq.predict", "tuning.grid"])
def test_a_folder_named_kboolq_in_the_current_directory_is_named_in_one_line(module, tmp_path):
    if not _editable_by_finder():
        pytest.skip("kboolq is not an editable install here: the folder hides nothing")
    (tmp_path / "kboolq" / "kboolq").mkdir(parents=True)  # a clone of the repository
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True, text=True, env=_env(), timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"kboolq: the folder {tmp_path / 'kboolq'} hides the installed kboolq package (Python "
        "imports folders in the current directory first); run the command from another folder, "
        f"such as {tmp_path / 'kboolq'} itself or {Path(kboolq.__file__).parent.parent}\n"
    )


@pytest.mark.slow
def test_help_of_carve():
    result = _command("kboolq.carve", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m kboolq.carve")
    assert "--size" in result.stdout and "--valid-size" in result.stdout


def test_carve_holds_out_rows_before_the_valid_split(tmp_path, capsys):
    out = tmp_path / "carved"
    assert carve.main([str(FIXTURE_BOOLQ), str(out), "--size", "30", "--valid-size", "40"]) == 0
    assert "train 90 + valid 40 rows" in capsys.readouterr().out
    original = read_rows(FIXTURE_BOOLQ / "train.jsonl")  # 160 rows
    carved = load_boolq(str(out), 40).splits
    key = [(r.question, r.passage, r.label) for r in original]
    assert [(r.question, r.passage, r.label) for r in carved["train"]] == key[:90]
    assert [(r.question, r.passage, r.label) for r in carved["test"]] == key[90:120]
    assert [(r.question, r.passage, r.label) for r in carved["valid"]] == key[120:]


def test_carve_folds_are_disjoint_blocks_with_one_pseudo_test_split(tmp_path, capsys):
    key = [(r.question, r.passage, r.label) for r in read_rows(FIXTURE_BOOLQ / "train.jsonl")]
    rest = key[:90] + key[120:]  # 130 rows once the pseudo-test rows 90..119 are held out
    valids = []
    for fold in range(3):
        out = tmp_path / f"fold{fold}"
        argv = [str(FIXTURE_BOOLQ), str(out), "--size", "30", "--valid-size", "40"]
        assert carve.main([*argv, "--folds", "3", "--fold", str(fold)]) == 0
        assert f"valid = fold {fold} of 3" in capsys.readouterr().out
        splits = load_boolq(str(out), 40).splits
        valid = [(r.question, r.passage, r.label) for r in splits["valid"]]
        train = [(r.question, r.passage, r.label) for r in splits["train"]]
        assert valid == rest[130 - 40 * (fold + 1) : 130 - 40 * fold]
        assert sorted(train + valid) == sorted(rest)  # every other row is trained on
        assert [(r.question, r.passage, r.label) for r in splits["test"]] == key[90:120]
        valids.append(valid)
    assert valids[0] == key[120:]  # fold 0 is the plain carve's valid split
    assert len({row for valid in valids for row in valid}) == 120  # disjoint blocks


def test_carve_refuses_folds_that_leave_nothing_to_train_on(tmp_path):
    argv = [str(FIXTURE_BOOLQ), str(tmp_path / "c"), "--size", "30", "--valid-size", "40"]
    with pytest.raises(
        UserError,
        match="^130 rows after the pseudo-test split leave none to train on after 4 folds of 40$",
    ):
        carve.main([*argv, "--folds", "4", "--fold", "0"])
    with pytest.raises(UserError, match=r"^--fold must be in 0\.\.2 with --folds 3, got 3$"):
        carve.main([*argv, "--folds", "3", "--fold", "3"])
    assert not (tmp_path / "c").exists()


def test_preprocess_prints_the_report(tmp_path, capsys):
    assert preprocess.main([*SOURCES, "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rows: train 120, valid 40, test 48" in out
    assert "out of vocabulary:" in out and "paris" in out and "(cold)" in out


def test_evaluate_reloads_the_data_the_run_was_trained_on(run, monkeypatch, capsys):
    run_dir, cache = run
    monkeypatch.chdir(run_dir)  # the recorded source must not depend on the working directory
    assert evaluate.main([str(run_dir), "--split", "valid", "--cache-dir", str(cache)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (
        json.loads((run_dir / "report.json").read_text())["valid"]["confusion_matrix"]
        == (metrics["valid"]["confusion_matrix"])
    )
    for path in [run_dir / "report.json", *run_dir.glob("*.png")]:
        path.unlink()


def test_ensemble_averages_members_and_is_a_normal_run(run, tmp_path, capsys):
    import keras

    from kboolq.runs.rundir import load_model

    run_dir, cache = run
    _fit(tmp_path / "second", cache, "--seed", "1")
    out = tmp_path / "ens"
    assert (
        ensemble.main(
            [str(run_dir), str(tmp_path / "second"), "--out", str(out), "--cache-dir", str(cache)]
        )
        == 0
    )
    assert set(json.loads((out / "metrics.json").read_text())) == {"valid", "test"}
    inputs = {
        "vectors": np.random.default_rng(0).normal(size=(3, 52, 8)).astype("float32"),
        "lengths": np.array([[2, 5], [3, 9], [1, 20]], dtype="int32"),
    }
    members = [load_model(run_dir), load_model(tmp_path / "second")]
    expected = np.mean([keras.ops.convert_to_numpy(m(inputs)) for m in members], axis=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(load_model(out)(inputs)), expected, atol=1e-6
    )
    code = predict.main(
        [
            str(out),
            "--question",
            "is the moon red",
            "--passage",
            "it is red",
            "--cache-dir",
            str(cache),
        ]
    )
    assert code == 0 and '"p_yes"' in capsys.readouterr().out


def test_ensemble_select_keeps_the_members_chosen_on_valid(run, tmp_path, monkeypatch, capsys):
    run_dir, cache = run
    for seed in ("1", "2"):
        _fit(tmp_path / seed, cache, "--seed", seed)
    seen = []
    monkeypatch.setattr(
        ensemble, "greedy_select", lambda labels, p: seen.append((labels, p)) or [2, 0]
    )
    out = tmp_path / "ens"
    members = [run_dir, tmp_path / "1", tmp_path / "2"]
    args = [*map(str, members), "--select", "--out", str(out), "--cache-dir", str(cache)]
    assert ensemble.main(args) == 0
    labels, probabilities = seen[0]
    assert len(labels) == 40 and [len(p) for p in probabilities] == [40, 40, 40]  # valid rows
    chosen = json.loads((out / "members.json").read_text())["members"]
    assert chosen == ["../2", "../run"]  # relative to the ensemble, as fit --seeds writes them
    assert f"selected on valid: {members[2]}, {members[0]}" in capsys.readouterr().out


@pytest.mark.slow
def test_wandb_offline_logs_every_epoch_and_one_model(tmp_path):
    pytest.importorskip("wandb")
    args = fixture_args(tmp_path / "run", tmp_path / "cache", "--hidden", "4", "--epochs", "2")
    code = (
        "import json, wandb, kboolq.fit as f\n"
        "logged, artifacts = [], []\n"
        "init = wandb.init\n"
        "def spy(**kw):\n"
        "    run = init(**kw)\n"
        "    log, log_artifact = run.log, run.log_artifact\n"
        "    run.log = lambda data, **k: logged.append(sorted(data)) or log(data, **k)\n"
        "    run.log_artifact = lambda a, **k: artifacts.append(a.type) or log_artifact(a, **k)\n"
        "    finish = run.finish\n"
        "    def end(*a, **k):\n"
        "        summary = {key: run.summary[key] for key in run.summary.keys()\n"
        "                   if isinstance(run.summary[key], int | float)}\n"
        "        print(json.dumps({'summary': summary, 'config': dict(run.config)}))\n"
        "        return finish(*a, **k)\n"
        "    run.finish = end\n"
        "    return run\n"
        "wandb.init = spy\n"
        f"assert f.main({[*args, '--wandb']!r}) == 0\n"
        "epochs = [k for k in logged if 'val_balanced_accuracy' in k]\n"
        "print(len(epochs), artifacts.count('model'), any('valid/pr_curve' in k for k in logged))\n"
    )
    env = {**_env(), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("WANDB_DIR", None)
    folder = tmp_path / "cwd"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
        cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "2 1 True"
    assert list(folder.iterdir()) == []  # nothing in the current folder
    assert list((tmp_path / "cache" / "wandb" / "wandb").glob("offline-run-*"))  # here instead
    ended = json.loads(next(x for x in result.stdout.splitlines() if x.startswith('{"summary')))
    summary, config = ended["summary"], ended["config"]
    rows = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = [dict(zip(header, map(float, row.split(",")), strict=True)) for row in rows[1:]]
    best = max(epochs, key=lambda e: e["val_balanced_accuracy"])
    for key in ("accuracy", "balanced_accuracy"):  # the best epoch's valid values
        assert summary[key] == pytest.approx(best[f"val_{key}"], abs=1e-6)
        assert summary[f"val_{key}"] == pytest.approx(best[f"val_{key}"], abs=1e-6)
    assert summary["best_epoch"] == epochs.index(best) + 1
    assert "hyperparameters" not in config and config["hidden_size"] == 4  # once, at the top
    assert "Deprecat" not in result.stderr and "reinit" not in result.stderr
