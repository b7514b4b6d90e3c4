"""Bounded inputs and messages that tell the truth: an outsized question, an unreasonable seed
count, unanswerable rows among good ones, the same run twice, bytes that are not UTF-8, moved
data, a config.json that no longer fits its model, an empty zip, offline hub sources."""

import json
import math
import shutil
import zipfile

import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, FIXTURE_GLOVE, FIXTURE_VALID_SIZE, copy_run, fixture_args

import kboolq
from kboolq import ensemble, evaluate, fit, predict
from kboolq.cli import run_command
from kboolq.config import DataSettings
from kboolq.data.boolq import load_boolq
from kboolq.data.layout import LayoutSettings, bound, prepare
from kboolq.data.tokens import tokenize
from kboolq.data.vectors import load_glove
from kboolq.errors import UserError
from kboolq.inputs import check_sources
from kboolq.runs.api import open_run


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_outsized_question_is_cut_to_a_percentile_with_a_notice(tmp_path, capsys):
    rows = _rows(FIXTURE_BOOLQ / "train.jsonl")
    rows[3]["question"] = " ".join(["film"] * 3001)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    boolq = load_boolq(str(data), FIXTURE_VALID_SIZE)
    glove = load_glove(str(FIXTURE_GLOVE), tmp_path / "cache")
    train_lengths = sorted(len(tokenize(row.question, "fold")) for row in boolq.splits["train"])
    assert train_lengths[-1] == 3001 and len(train_lengths) < 1000
    # numpy's 99.9th percentile of under 1,000 rows leans on the largest: one row moved it
    assert math.ceil(np.percentile(train_lengths, 99.9)) > 2 * train_lengths[-2]
    expected = train_lengths[-2]  # the order statistic below, which no single row can move
    prepared, _ = prepare(boolq, glove, tmp_path / "cache", LayoutSettings(accents="fold"))
    assert prepared.layout.q_max == expected
    assert prepared.splits["train"].q_len.max() == expected
    err = capsys.readouterr().err
    assert (
        f"kboolq: questions longer than {expected} words (the 99.9th percentile of train "
        "questions) are cut to it: 1 train row"
    ) in err
    whole, _ = prepare(
        boolq, glove, tmp_path / "cache", LayoutSettings(accents="fold", question_percentile=100)
    )
    assert whole.layout.q_max == 64  # 100 keeps every train question whole, up to the ceiling
    assert (
        "kboolq: questions longer than 64 words (kboolq's ceiling, whatever the percentile) "
        "are cut to it: 1 train row"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("counts", "percentile", "ceiling", "expected"),
    [
        ([10] * 299 + [3000], 99.9, 2048, 10),  # numpy: 10 + 0.701 * 2990 = 2106.0 -> 2107
        ([10] * 299 + [3000], 100, 2048, 2048),  # every row whole, up to the ceiling
        ([10] * 299 + [3000], 100, 4096, 3000),
        (list(range(1, 101)), 90, 2048, 91),  # 90 + 0.1 * 1: numpy's, as the max is not near
        (list(range(1, 101)), 99.5, 2048, 99),  # position 98.505: the max (100) is not used
        ([0, 0, 0], 50, 2048, 1),  # at least 1
    ],
)
def test_a_layout_bound_is_an_order_statistic_no_single_row_moves(
    counts, percentile, ceiling, expected
):
    assert bound(counts, percentile, ceiling) == expected
    assert bound(list(reversed(counts)), percentile, ceiling) == expected


def test_old_runs_read_with_the_whole_question_length_they_were_trained_with(trained, tmp_path):
    run = copy_run(trained[0], tmp_path / "run")
    raw = json.loads((run / "config.json").read_text())
    assert raw["format"] == 5 and raw["data"]["question_percentile"] == 99.9
    del raw["data"]["question_percentile"]
    (run / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError) as error:  # today's format writes every key
        open_run(run, trained[1])
    assert str(error.value) == f"{run / 'config.json'}: key 'data.question_percentile' is missing"
    (run / "config.json").write_text(json.dumps({**raw, "format": 1}))  # written before the cut
    assert open_run(run, trained[1]).info.data.question_percentile == 100.0


def test_an_unreasonable_seed_count_is_refused_before_anything(tmp_path, capsys):
    args = fixture_args(tmp_path / "run", tmp_path / "cache", "--seeds", "1000")
    assert run_command(fit.main, "kboolq.fit")(args) == 2
    assert capsys.readouterr().err.strip() == (
        "kboolq.fit: error: --seeds must be from 1 to 25, got 1000 (each member is a full "
        "training: 25 already cost about 25 times one fit)"
    )
    assert not (tmp_path / "run").exists()


def test_predict_answers_every_row_it_can_and_reports_the_others_per_line(
    trained, tmp_path, capsys
):
    good = [
        {"question": r["question"], "passage": r["passage"]}
        for r in _rows(FIXTURE_BOOLQ / "validation.jsonl")[:20]
    ]
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(4, json.dumps({"question": "zzqx qqzv", "passage": "the film"}).encode())
    lines.insert(9, b'{"question": "is it", ')
    lines.insert(12, json.dumps({"question": "is it"}).encode())
    lines.insert(15, b'{"question": "is it \xff red", "passage": "x"}')
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code = run_command(predict.main, "kboolq.predict")(
        [str(trained[0]), "--jsonl", str(path), "--cache-dir", str(trained[1])]
    )
    out, err = capsys.readouterr()
    assert code == 1
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == 24
    assert answers[4] == {
        "line": f"{path}:5",
        "error": "the question has no word in the GloVe vocabulary",
    }
    assert answers[9]["line"] == f"{path}:10"
    assert answers[9]["error"].startswith("malformed JSON at column")
    assert answers[12] == {"line": f"{path}:13", "error": "missing field 'passage'"}
    assert answers[15] == {
        "line": f"{path}:16",
        "error": "not UTF-8 text (byte 0xff at column 21)",
    }
    answered = [a for a in answers if "error" not in a]
    assert len(answered) == 20
    expected = kboolq.load_run(trained[0], trained[1]).predict(good)
    np.testing.assert_allclose([a["p_yes"] for a in answered], expected, atol=1e-6)
    assert err.strip() == "kboolq.predict: 4 of 24 rows not answered (see their error lines)"
    assert "exit status: 0 every row answered; 1 some rows not answered" in (
        predict.parser().format_help().replace("\n", " ").replace("  ", " ")
    )


def test_a_question_without_a_known_word_is_an_error_line(trained, capsys):
    argv = [str(trained[0]), "--question", "qqqz", "--passage", "the moon"]
    code = run_command(predict.main, "kboolq.predict")([*argv, "--cache-dir", str(trained[1])])
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out) == {
        "line": "the command line",
        "error": "the question has no word in the GloVe vocabulary",
    }
    assert err.strip() == "kboolq.predict: 1 of 1 rows not answered (see their error lines)"


def test_an_ensemble_of_the_same_run_twice_is_refused(trained, tmp_path, capsys):
    alias = tmp_path / "alias"
    alias.symlink_to(trained[0], target_is_directory=True)
    for second in (trained[0], alias, trained[0] / ".." / trained[0].name):
        argv = [str(trained[0]), str(second), "--out", str(tmp_path / "ens")]
        assert run_command(ensemble.main, "kboolq.ensemble")(argv) == 2
        assert capsys.readouterr().err.strip() == (
            f"kboolq.ensemble: error: {second}: the same run as {trained[0]}; an ensemble "
            "averages different runs"
        )
    assert not (tmp_path / "ens").exists()


def test_a_byte_that_is_not_utf8_is_reported_with_its_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = (FIXTURE_BOOLQ / "train.jsonl").read_bytes().splitlines()
    good[2] = good[2].replace(b"question", b"quest\xe9on", 1)
    (data / "train.jsonl").write_bytes(b"\n".join(good))
    with pytest.raises(UserError) as error:
        load_boolq(str(data), FIXTURE_VALID_SIZE)
    assert str(error.value) == f"{data}/train.jsonl:3: not UTF-8 text (byte 0xe9 at column 8)"


def test_a_bom_on_the_first_line_is_read_as_utf8(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_bytes(
        b"\xef\xbb\xbf" + (FIXTURE_BOOLQ / "train.jsonl").read_bytes()
    )
    assert len(load_boolq(str(data), FIXTURE_VALID_SIZE).splits["train"]) == 120


def test_evaluate_says_the_run_recorded_its_data_and_records_what_it_scored(
    trained, tmp_path, capsys
):
    run = copy_run(trained[0], tmp_path / "run")
    moved = tmp_path / "moved"
    raw = json.loads((run / "config.json").read_text())
    raw["data"]["source"] = str(moved)
    (run / "config.json").write_text(json.dumps(raw))
    argv = [str(run), "--cache-dir", str(trained[1])]
    assert run_command(evaluate.main, "kboolq.evaluate")(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"kboolq.evaluate: error: {run}/config.json: key 'data.source' records the data the run "
        f"was trained on, which cannot be read now ({moved}: no such directory); pass --data "
        "DIR (or hub, tfds) to score other data: it overrides the recorded source"
    )
    assert not (run / "report.json").exists()
    shutil.copytree(FIXTURE_BOOLQ, moved)
    assert run_command(evaluate.main, "kboolq.evaluate")([*argv, "--data", str(moved)]) == 0
    assert f"scored valid of {moved} (--data)" in capsys.readouterr().out
    assert json.loads((run / "report.json").read_text())["valid"]["data"] == str(moved)


def test_a_config_whose_layout_no_longer_fits_the_model_names_the_key(trained, tmp_path, capsys):
    run = copy_run(trained[0], tmp_path / "run")
    raw = json.loads((run / "config.json").read_text())
    layout = raw["layout"]
    start = layout["q_max"] + layout["separator"]  # a model takes any T: where parts start
    layout["q_max"] += 5
    (run / "config.json").write_text(json.dumps(raw))
    argv = [str(run), "--question", "is it", "--passage", "it is", "--cache-dir", str(trained[1])]
    assert run_command(predict.main, "kboolq.predict")(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"kboolq.predict: error: {run}/config.json: key 'layout' starts the passage at position "
        f"{start + 5} (q_max {layout['q_max']} + separator {layout['separator']}), but "
        f"model.keras reads it from {start}"
    )


def test_a_zip_without_a_txt_says_so(tmp_path):
    archive = tmp_path / "vectors.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.md", "no vectors here")
    with pytest.raises(UserError) as error:
        load_glove(str(archive), tmp_path / "cache")
    assert str(error.value) == (
        f"{archive}: holds no .txt file (a GloVe zip holds glove.*.txt files)"
    )


def test_offline_mode_names_every_missing_hub_source_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as error:
        check_sources(DataSettings(), tmp_path / "cache")
    lines = str(error.value).splitlines()
    assert lines[0] == (
        "--data hub: HF_HUB_OFFLINE is set and google/boolq is not in the local Hugging Face cache"
    )
    assert lines[1] == (
        "--glove hub:300: HF_HUB_OFFLINE is set and stanfordnlp/glove/glove.6B.zip is not in "
        "the local Hugging Face cache"
    )
