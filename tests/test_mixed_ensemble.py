"""Ensembles whose members read different vectors (#39): kboolq.ensemble and fit --seeds with
--alternate "--glove SPEC". Each member encodes its own input; the ensemble answers their mean."""

import hashlib
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, FIXTURE_GLOVE, fit_fixture

from kboolq import ensemble, evaluate, predict
from kboolq.cli import run_command
from kboolq.data.boolq import load_boolq, parse_row, read_rows
from kboolq.evaluation import binary_report
from kboolq.members import member_vectors, split_vectors
from kboolq.runs.api import OpenMix, OpenRun, load_run
from kboolq.runs.rundir import read_info

ROWS = read_rows(FIXTURE_BOOLQ / "train.jsonl")[:8]


@pytest.fixture(scope="module")
def other_vectors(tmp_path_factory):
    """The fixture's words but "moon" and "river", with other vectors (each negated, the last
    dims dropped): 6-d."""
    path = tmp_path_factory.mktemp("vectors") / "other.txt"
    lines = []
    for line in FIXTURE_GLOVE.read_text().splitlines():
        word, *values = line.split(" ")
        if word in ("moon", "river"):
            continue
        lines.append(" ".join([word, *(f"{-float(v):.4f}" for v in values[:6])]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def mixed(trained, other_vectors, tmp_path_factory):
    """The session's run, a run over other vectors, and their ensemble (kboolq.ensemble)."""
    root = tmp_path_factory.mktemp("mixed")
    run_dir, cache = trained
    assert fit_fixture(root / "other", cache, "--glove", str(other_vectors), "--seed", "1") == 0
    out = root / "ens"
    words = [str(run_dir), str(root / "other"), "--out", str(out), "--cache-dir", str(cache)]
    assert run_command(ensemble.main, "kboolq.ensemble")(words) == 0
    return run_dir, root / "other", out, cache


def test_the_ensemble_answers_the_mean_of_members_that_each_encode_their_own_input(mixed):
    first, second, out, cache = mixed
    assert json.loads((out / "members.json").read_text()) == {
        "members": [os.path.relpath(first.resolve(), out.resolve()), "../other"],
        "inputs": "own",
    }
    assert not (out / "model.keras").exists()
    mix = load_run(out, cache)
    assert isinstance(mix, OpenMix) and [m.path.resolve() for m in mix.members] == [
        first.resolve(),
        second.resolve(),
    ]
    one, two = load_run(first, cache), load_run(second, cache)
    assert isinstance(one, OpenRun) and one.info.vectors.dim == 8 and two.info.vectors.dim == 6
    expected = (one.predict(ROWS) + two.predict(ROWS)) / 2
    np.testing.assert_allclose(mix.predict(ROWS), expected, atol=1e-6)
    # metrics.json holds the report of that mean on valid, computed here by hand
    info = read_info(first)
    valid = load_boolq(info.data.source, info.data.valid_size).splits["valid"]
    mean = (one.predict(valid) + two.predict(valid)) / 2
    labels = np.array([row.label for row in valid])
    written = json.loads((out / "metrics.json").read_text())["valid"]
    assert written["accuracy"] == pytest.approx(binary_report(labels, mean)["accuracy"])
    assert written["pr_auc"] == pytest.approx(binary_report(labels, mean)["pr_auc"], abs=1e-6)


def test_the_card_names_each_members_vectors(mixed):
    first, second, out, _ = mixed
    card = (out / "README.md").read_text()
    assert "an ensemble of 2 members that each read their own input" in card
    for member in (first, second):
        vectors = read_info(member).vectors
        assert f"over `{vectors.source}` ({vectors.dim}-d" in card


def test_predict_and_evaluate_take_the_ensemble(mixed, tmp_path, capsys):
    first, second, out, cache = mixed
    row = ROWS[0]
    words = [str(out), "--question", row.question, "--passage", row.passage,
             "--cache-dir", str(cache)]  # fmt: skip
    assert run_command(predict.main, "kboolq.predict")(words) == 0
    answered = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answered["p_yes"] == pytest.approx(float(load_run(out, cache).predict([row])[0]), 1e-5)
    copy = tmp_path / "ens"  # evaluate writes into the run: a copy, members named absolutely
    shutil.copytree(out, copy)
    (copy / "members.json").write_text(
        json.dumps({"members": [str(first.resolve()), str(second.resolve())], "inputs": "own"})
    )
    assert (
        run_command(evaluate.main, "kboolq.evaluate")([str(copy), "--cache-dir", str(cache)]) == 0
    )
    report = json.loads((copy / "report.json").read_text())["valid"]
    assert report["accuracy"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["valid"]["accuracy"]
    )


def test_a_refit_retrains_each_member_on_its_own_vectors(mixed, tmp_path, capsys):
    from kboolq import fit

    first, second, out, cache = mixed
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    refit = tmp_path / "r"
    words = ["--refit", str(out), "--out", str(refit), "--cache-dir", str(cache)]
    assert run_command(fit.main, "kboolq.fit")(words) == 0
    members = sorted((refit / "members").iterdir())
    assert [read_info(m).vectors for m in members] == [read_info(first).vectors,
                                                       read_info(second).vectors]  # fmt: skip
    assert json.loads((refit / "members.json").read_text())["inputs"] == "own"
    mix = load_run(refit, cache)
    expected = np.mean([load_run(m, cache).predict(ROWS) for m in members], axis=0)
    np.testing.assert_allclose(mix.predict(ROWS), expected, atol=1e-6)
    assert set(json.loads((refit / "metrics.json").read_text())) == {"test"}  # valid: trained on
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_the_export_reads_the_joined_vocabulary_and_answers_as_the_ensemble(mixed, tmp_path):
    """Each member reads only its own words: the second member's vectors lack two words, which
    the export's graph removes from its input, as kboolq's encoder skips them."""
    ort = pytest.importorskip("onnxruntime")
    from kboolq import export

    first, second, out, cache = mixed
    onnx = tmp_path / "onnx"
    words = [str(out), "--out", str(onnx), "--cache-dir", str(cache)]
    assert run_command(export.main, "kboolq.export")(words) == 0
    vocabulary = (onnx / "vocab.txt").read_text().splitlines()
    known = (onnx / "known.txt").read_text().splitlines()
    assert vocabulary == load_run(first, cache).glove.words  # the second's words are a subset
    assert [known[vocabulary.index(w)] for w in ("moon", "river", "the")] == ["10", "10", "11"]
    manifest = json.loads((onnx / "manifest.json").read_text())
    assert [m["vectors"]["dim"] for m in manifest["members"]] == [8, 6]
    assert [m["weight"] for m in manifest["members"]] == [0.5, 0.5]
    spec = importlib.util.spec_from_file_location("shipped", onnx / "tokenizer.py")
    shipped = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shipped)
    session = ort.InferenceSession(str(onnx / "model.onnx"))
    rows = [{"question": r.question, "passage": r.passage} for r in read_rows(
        FIXTURE_BOOLQ / "validation.jsonl")] + [
        {"question": "is the moon red", "passage": "the river is red and the moon is old"}
    ]  # fmt: skip
    mix = load_run(out, cache)
    answerable = [r for r in rows if mix.problem(parse_row(r, "r", labelled=False)) is None]
    assert answerable[-1] == rows[-1]
    feed = shipped.encode(answerable, vocabulary, known)
    got = session.run(None, {k: np.asarray(feed[k], np.int64) for k in manifest["graph_inputs"]})
    np.testing.assert_allclose(got[0].ravel(), mix.predict(answerable), atol=1e-5)
    assert shipped.check(onnx)  # the export's own check on check.jsonl: kboolq's answers
    with pytest.raises(ValueError, match=r"^row 0: the question has no word member 1 knows$"):
        shipped.encode([{"question": "moon river", "passage": "the moon"}], vocabulary, known)


def test_members_made_from_other_rows_are_refused(trained, tmp_path):
    from helpers import copy_run

    from kboolq.errors import UserError

    other = copy_run(trained[0], tmp_path / "run")
    config = json.loads((other / "config.json").read_text())
    config["data"]["valid_size"] += 1
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as caught:
        ensemble.main([str(trained[0]), str(other), "--out", str(tmp_path / "e")])
    size = config["data"]["valid_size"]
    assert str(caught.value) == (
        f"{other}: trained with --valid-size {size}, {trained[0]} with {size - 1}; an "
        "ensemble's members are scored on the same valid and test rows"
    )
    assert not (tmp_path / "e").exists()


def test_fit_seeds_alternates_vectors(trained, other_vectors, tmp_path):
    _, cache = trained
    out = tmp_path / "seeds"
    alternate = f"--glove {other_vectors}"
    assert fit_fixture(out, cache, "--seeds", "2", "--alternate", alternate) == 0
    first, second = out / "members" / "seed_0", out / "members" / "seed_1"
    assert read_info(first).vectors.source == str(other_vectors)  # the 1st: --alternate's
    assert read_info(second).vectors.source == str(FIXTURE_GLOVE)
    assert read_info(out).vectors.source == str(FIXTURE_GLOVE)  # the run's own: --glove's
    seeds = json.loads((out / "seeds.json").read_text())
    assert seeds["vectors"] == [str(other_vectors), str(FIXTURE_GLOVE)]
    assert json.loads((out / "members.json").read_text()) == {
        "members": ["members/seed_0", "members/seed_1"],
        "inputs": "own",
    }
    mix = load_run(out, cache)
    expected = (load_run(first, cache).predict(ROWS) + load_run(second, cache).predict(ROWS)) / 2
    np.testing.assert_allclose(mix.predict(ROWS), expected, atol=1e-6)


def test_the_alternate_flags_split_off_their_vectors():
    assert split_vectors("--arch esim --glove spacy-md --hidden 128") == (
        "--arch esim --hidden 128",
        "spacy-md",
    )
    assert split_vectors("--glove=kumo50") == ("", "kumo50")
    assert split_vectors("--arch esim") == ("--arch esim", None)
    for bad in ("--glove", "--glove a --glove b"):
        with pytest.raises(Exception, match=r"^--alternate: --glove takes one SPEC, given once$"):
            split_vectors(bad)
    assert member_vectors("g", "s", 5) == ["s", "g", "s", "g", "s"]
    assert member_vectors("g", "s", 1) == ["g"] and member_vectors("g", None, 2) == ["g", "g"]


def test_the_server_identifies_the_ensemble_by_its_members_json(mixed):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from kboolq.serve import Answerer, Limits, app

    _, _, out, cache = mixed
    mix = load_run(out, cache)
    row = {"question": ROWS[1].question, "passage": ROWS[1].passage}
    with TestClient(app(Answerer(mix, Limits(), threshold=0.5))) as client:
        health, answer = client.get("/health").json(), client.post("/predict", json=row).json()
    assert health["model_sha256"] == hashlib.sha256((out / "members.json").read_bytes()).hexdigest()
    assert health["run_replaced"] is False
    assert answer["p_yes"] == pytest.approx(float(mix.predict([row])[0]), abs=1e-6)


def test_a_members_json_that_lists_its_own_ensemble_is_refused(mixed, tmp_path):
    from kboolq.errors import UserError

    first, _, out, cache = mixed
    copy = tmp_path / "ens"
    shutil.copytree(out, copy)
    listed = {"members": [str(first.resolve()), str(copy.resolve())], "inputs": "own"}
    (copy / "members.json").write_text(json.dumps(listed))
    with pytest.raises(UserError) as caught:
        load_run(copy, cache)
    assert (
        str(caught.value)
        == f"{copy.resolve()}: an ensemble's members.json lists a run that holds it"
    )


@pytest.mark.skipif(
    __import__("keras").backend.backend() != "torch", reason="explanations run on torch"
)
def test_the_ensemble_is_explained_as_the_weighted_sum_of_its_members(mixed, capsys):
    from kboolq.explain import GAP, explain

    first, second, out, cache = mixed
    mix = load_run(out, cache)
    rows = [{"question": "is the moon red", "passage": "the river is red and the moon is old"}]
    (found,) = explain(mix, rows)
    (one,), (two,) = explain(load_run(first, cache), rows), explain(load_run(second, cache), rows)
    assert found["p_yes"] == pytest.approx(float(mix.predict(rows)[0]), abs=1e-5)
    assert abs(found["completeness_gap"]) <= GAP
    # "moon" and "river": only the first member reads them (the second's vectors lack them)
    assert [w["word"] for w in found["question"]] == [w["word"] for w in one["question"]]
    assert "moon" not in [w["word"] for w in two["question"]]
    moon = [w["score"] for w in found["question"] if w["word"] == "moon"]
    assert moon == pytest.approx([w["score"] / 2 for w in one["question"] if w["word"] == "moon"])
    is_ = found["question"][0]  # "is": both read it
    assert is_["word"] == "is" == one["question"][0]["word"] == two["question"][0]["word"]
    assert is_["score"] == pytest.approx(
        (one["question"][0]["score"] + two["question"][0]["score"]) / 2
    )
    words = [str(out), "--question", rows[0]["question"], "--passage", rows[0]["passage"],
             "--explain", "--cache-dir", str(cache)]  # fmt: skip
    assert run_command(predict.main, "kboolq.predict")(words) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # a passage longer than a member's p_max: its averaged tail shares its score equally
    long = {"question": "is the moon red", "passage": " ".join(["the river is red"] * 40)}
    (tail,) = explain(mix, [long])
    assert load_run(first, cache).info.layout.p_max < 160 == len(tail["passage"])
    assert abs(tail["completeness_gap"]) <= GAP
    shown = printed["explanation"]["question"]
    assert [w["word"] for w in shown] == [w["word"] for w in found["question"]]
    assert [w["score"] for w in shown] == pytest.approx([w["score"] for w in found["question"]])


def test_an_ensemble_whose_members_tokenize_differently_is_not_explained(mixed, tmp_path):
    from helpers import copy_run

    from kboolq.errors import UserError
    from kboolq.explain import check_explainable

    first, second, _, cache = mixed
    other = copy_run(second, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["data"]["accents"] = "drop" if config["data"]["accents"] == "fold" else "fold"
    (other / "config.json").write_text(json.dumps(config))
    out = tmp_path / "ens"
    words = [str(first), str(other), "--out", str(out), "--cache-dir", str(cache)]
    assert run_command(ensemble.main, "kboolq.ensemble")(words) == 0
    with pytest.raises(UserError) as caught:
        check_explainable(load_run(out, cache))
    assert str(caught.value) == (
        "ens: its members tokenize with --accents drop and fold, so their words do not line "
        "up; explain one of its members (members.json lists them)"
    )
