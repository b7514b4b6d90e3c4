"""Every command turns a user's mistake into one message and exit status 2, never a traceback."""

import gzip
import json
import re
import shutil

import pytest
from helpers import FIXTURE_BOOLQ, FIXTURE_GLOVE, copy_run

from kboolq import carve, ensemble, evaluate, fit, predict
from kboolq.cli import run_command
from tuning import grid

COMMANDS = {
    "fit": fit.main,
    "evaluate": evaluate.main,
    "predict": predict.main,
    "grid": grid.main,
    "ensemble": ensemble.main,
    "carve": carve.main,
}
GOOD = {"question": "is the moon red", "passage": "the moon is red", "answer": True}


def _data_dir(tmp_path, lines, name="train.jsonl"):
    directory = tmp_path / "data"
    directory.mkdir(exist_ok=True)
    rows = [json.dumps(GOOD)] * 5 + lines
    (directory / name).write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows)
    )
    return directory


def _fit(tmp_path, data, *extra):
    return [
        "--data",
        str(data),
        "--glove",
        str(FIXTURE_GLOVE),
        "--valid-size",
        "2",
        "--cache-dir",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]


def case_missing_data_dir(tmp_path, trained):
    return "fit", _fit(tmp_path, tmp_path / "nope"), "no such directory"


def case_no_train_file(tmp_path, trained):
    (tmp_path / "empty").mkdir()
    return "fit", _fit(tmp_path, tmp_path / "empty"), "no train.jsonl"


def case_malformed_jsonl(tmp_path, trained):
    return "fit", _fit(tmp_path, _data_dir(tmp_path, ["{oops"])), r"train.jsonl:6: malformed JSON"


def case_answer_not_boolean(tmp_path, trained):
    data = _data_dir(tmp_path, [{**GOOD, "answer": "yes"}])
    return "fit", _fit(tmp_path, data), r"train.jsonl:6: field 'answer' must be true or false"


def case_question_not_string(tmp_path, trained):
    data = _data_dir(tmp_path, [{**GOOD, "question": ["a"]}])
    return "fit", _fit(tmp_path, data), r"train.jsonl:6: field 'question' must be a string"


def case_empty_passage(tmp_path, trained):
    data = _data_dir(tmp_path, [{**GOOD, "passage": ""}])
    return "fit", _fit(tmp_path, data), r"train.jsonl:6: field 'passage' is empty"


def case_passage_without_known_words(tmp_path, trained):
    data = _data_dir(tmp_path, [{**GOOD, "passage": "zzzq xxyq"}])
    return "fit", _fit(tmp_path, data), r"train.jsonl:6: the passage has no word in the GloVe"


def case_corrupt_gzip(tmp_path, trained):
    directory = tmp_path / "gz"
    directory.mkdir()
    (directory / "train.jsonl.gz").write_bytes(
        gzip.compress((json.dumps(GOOD) + "\n").encode() * 50)[:40]
    )
    return "fit", _fit(tmp_path, directory), "train.jsonl.gz: cannot read"


def case_too_few_rows(tmp_path, trained):
    return (
        "fit",
        _fit(tmp_path, _data_dir(tmp_path, []), "--valid-size", "50"),
        "pass a smaller --valid-size",
    )


def case_passage_percentile_out_of_range(tmp_path, trained):
    args = _fit(tmp_path, FIXTURE_BOOLQ, "--passage-percentile", "0")
    return "fit", args, r"--passage-percentile must be in \(0, 100\], got 0.0"


def case_passage_percentile_not_a_number(tmp_path, trained):
    args = _fit(tmp_path, FIXTURE_BOOLQ, "--passage-percentile", "most")
    return "fit", args, r"argument --passage-percentile: invalid float value: 'most'"


def case_unknown_arch(tmp_path, trained):
    return (
        "fit",
        _fit(tmp_path, FIXTURE_BOOLQ, "--arch", "transformer"),
        "invalid choice: 'transformer'",
    )


def case_bad_dropout(tmp_path, trained):
    return (
        "fit",
        _fit(tmp_path, FIXTURE_BOOLQ, "--dropout", "1.5"),
        r"--dropout must be in \[0, 1\)",
    )


def case_unknown_vectors(tmp_path, trained):
    args = _fit(tmp_path, FIXTURE_BOOLQ)
    args[args.index("--glove") + 1] = "glove.840B.txt"
    return "fit", args, "--glove glove.840B.txt: no such file"


def case_bad_hub_dim(tmp_path, trained):
    args = _fit(tmp_path, FIXTURE_BOOLQ)
    args[args.index("--glove") + 1] = "hub:64"
    return "fit", args, "glove.6B has 50, 100, 200, 300"


def case_no_network_for_hub(tmp_path, trained, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://kboolq-offline.invalid")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    return "fit", _fit(tmp_path, "hub"), "cannot reach kboolq-offline.invalid"


def case_out_is_a_file(tmp_path, trained):
    (tmp_path / "out").write_text("x")
    return "fit", _fit(tmp_path, FIXTURE_BOOLQ), "exists and is not a directory"


def case_unknown_split(tmp_path, trained):
    return "evaluate", [str(trained[0]), "--split", "train"], "invalid choice: 'train'"


def case_run_without_config(tmp_path, trained):
    (tmp_path / "r").mkdir()
    return "evaluate", [str(tmp_path / "r")], r"not a run directory \(no config.json\)"


def case_incompatible_config(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "format": 99}))
    return "evaluate", [str(run_dir)], "run format 99, this kboolq reads formats 1 to 5"


def case_config_missing_layout(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    del config["layout"]
    (run_dir / "config.json").write_text(json.dumps(config))
    return "evaluate", [str(run_dir)], r"config.json: key 'layout' is missing"


def case_truncated_model(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path / "run")
    data = (run_dir / "model.keras").read_bytes()
    (run_dir / "model.keras").write_bytes(data[: len(data) // 3])
    return "evaluate", [str(run_dir)], r"model.keras: damaged \(not a complete .keras archive\)"


def case_foreign_model(tmp_path, trained):
    import keras

    run_dir = copy_run(trained[0], tmp_path / "run")
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(run_dir / "model.keras")
    return "evaluate", [str(run_dir)], "a Keras model, but not a kboolq one"


def case_split_absent(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path / "run")
    data = tmp_path / "trainonly"
    data.mkdir()
    shutil.copy(FIXTURE_BOOLQ / "train.jsonl", data)
    return (
        "evaluate",
        [str(run_dir), "--split", "test", "--data", str(data), "--cache-dir", str(trained[1])],
        "has no test split",
    )


def case_changed_vectors(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path / "run")
    vectors = tmp_path / "glove.txt"
    vectors.write_text(FIXTURE_GLOVE.read_text().replace("0", "1"))
    config = json.loads((run_dir / "config.json").read_text())
    config["embeddings"]["source"] = str(vectors)
    (run_dir / "config.json").write_text(json.dumps(config))
    args = [
        str(run_dir),
        "--question",
        "is it",
        "--passage",
        "it is",
        "--cache-dir",
        str(trained[1]),
    ]
    return "predict", args, "changed since this model was trained"


def case_predict_without_passage(tmp_path, trained):
    return "predict", [str(trained[0]), "--question", "is it"], "give --question and --passage"


def case_predict_missing_jsonl(tmp_path, trained):
    return "predict", [str(trained[0]), "--jsonl", str(tmp_path / "no.jsonl")], "no such file"


def case_grid_axis_type(tmp_path, trained):
    return "grid", ["--out", str(tmp_path / "g"), "--hidden", "1e3"], "--hidden: '1e3' is not a int"


def case_grid_file_type(tmp_path, trained):
    path = tmp_path / "grid.json"
    path.write_text('{"dropout": ["none"]}')
    return (
        "grid",
        ["--out", str(tmp_path / "g"), "--grid", str(path)],
        "axis 'dropout' takes numbers",
    )


def case_ensemble_of_one(tmp_path, trained):
    return "ensemble", [str(trained[0]), "--out", str(tmp_path / "e")], "at least two RUN_DIRs"


def case_ensemble_of_runs_from_other_rows(tmp_path, trained):
    other = copy_run(trained[0], tmp_path / "run")
    config = json.loads((other / "config.json").read_text())
    config["data"]["valid_size"] += 1
    (other / "config.json").write_text(json.dumps(config))
    args = [str(trained[0]), str(other), "--out", str(tmp_path / "e")]
    return "ensemble", args, "trained with --valid-size .*; an ensemble's members are scored"


def case_carve_too_few_rows(tmp_path, trained):
    args = [str(FIXTURE_BOOLQ), str(tmp_path / "c"), "--size", "100", "--valid-size", "60"]
    return "carve", args, "160 training rows leave none to train on after 160"


def case_carve_from_a_missing_directory(tmp_path, trained):
    return "carve", [str(tmp_path / "nope"), str(tmp_path / "c")], "nope: no such directory$"


def case_carve_from_a_directory_without_train_rows(tmp_path, trained):
    return "carve", [str(tmp_path), str(tmp_path / "c")], "no train.jsonl or train.jsonl.gz"


def case_carve_onto_its_source(tmp_path, trained):
    return "carve", [str(FIXTURE_BOOLQ), str(FIXTURE_BOOLQ)], "is one of this command.s inputs"


def case_lr_nan(tmp_path, trained):
    return "fit", _fit(tmp_path, FIXTURE_BOOLQ, "--lr", "nan"), "--lr must be a number, got nan"


def case_weight_decay_nan(tmp_path, trained):
    args = _fit(tmp_path, FIXTURE_BOOLQ, "--weight-decay", "nan")
    return "fit", args, "--weight-decay must be a number, got nan"


def case_negative_seed(tmp_path, trained):
    args = _fit(tmp_path, FIXTURE_BOOLQ, "--seed", "-1")
    return "fit", args, r"--seed must be in \[0, 4294967295\], got -1"


def case_threshold_out_of_range(tmp_path, trained):
    argv = [str(trained[0]), "--question", "q", "--passage", "p", "--threshold", "2"]
    return "predict", argv, r"--threshold must be from 0 to 1, got 2.0"


def case_evaluate_batch_size_zero(tmp_path, trained):
    return "evaluate", [str(trained[0]), "--batch-size", "0"], "--batch-size must be at least 1"


def case_train_file_is_a_directory(tmp_path, trained):
    data = tmp_path / "data"
    (data / "train.jsonl").mkdir(parents=True)
    return "fit", _fit(tmp_path, data), "train.jsonl: is a directory, not a file of rows"


def case_cache_dir_under_a_file(tmp_path, trained):
    (tmp_path / "file").write_text("x")
    args = _fit(tmp_path, FIXTURE_BOOLQ)
    args[args.index("--cache-dir") + 1] = str(tmp_path / "file" / "cache")
    return "fit", args, r"file/cache.*: Not a directory"


def case_out_under_a_file(tmp_path, trained):
    (tmp_path / "file").write_text("x")
    args = _fit(tmp_path, FIXTURE_BOOLQ)
    args[args.index("--out") + 1] = str(tmp_path / "file" / "run")
    return "fit", args, "Not a directory"


def case_truncated_glove_zip(tmp_path, trained):
    import zipfile

    archive = tmp_path / "glove.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(FIXTURE_GLOVE, "glove.txt")
    archive.write_bytes(archive.read_bytes()[:-30])
    args = _fit(tmp_path, FIXTURE_BOOLQ)
    args[args.index("--glove") + 1] = str(archive)
    return "fit", args, "glove.zip: a damaged zip archive"


def case_json_error_names_the_column(tmp_path, trained):
    line = '{"question": "a\tb", "passage": "p", "answer": true}'  # a raw tab at column 16
    return (
        "fit",
        _fit(tmp_path, _data_dir(tmp_path, [line])),
        (r"train.jsonl:6: malformed JSON at column 16: Invalid control character$"),
    )


def case_fit_out_holds_the_users_files(tmp_path, trained):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    return "fit", _fit(tmp_path, FIXTURE_BOOLQ), r"not empty \(config.json\) and not a kboolq run"


def case_ensemble_onto_a_member(tmp_path, trained):
    run_dir = copy_run(trained[0], tmp_path / "run")
    argv = [str(run_dir), str(trained[0]), "--out", str(run_dir), "--overwrite"]
    return "ensemble", argv, "is one of this command's inputs"


def case_carve_into_a_foreign_dataset(tmp_path, trained):
    out = _data_dir(tmp_path, [])
    return "carve", [str(FIXTURE_BOOLQ), str(out)], "not empty .* and not a kboolq dataset"


CASES = [value for name, value in sorted(globals().items()) if name.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.removeprefix("case_") for c in CASES])
def test_bad_input_exits_2_with_a_message(case, tmp_path, trained, capsys, monkeypatch):
    arguments = case.__code__.co_varnames[: case.__code__.co_argcount]
    extra = {"monkeypatch": monkeypatch} if "monkeypatch" in arguments else {}
    command, argv, message = case(tmp_path, trained, **extra)
    try:
        code = run_command(COMMANDS[command], command)(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert re.search(message, err), err
