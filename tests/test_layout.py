import numpy as np
import pytest
from helpers import make_row, small_glove

from kboolq.data.boolq import BoolQ
from kboolq.data.glove import Glove
from kboolq.data.layout import Layout, LayoutSettings, encode, prepare, stem_classes
from kboolq.data.tokens import tokenize
from kboolq.errors import UserError


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Is Iran. a country?", ["is", "iran", "a", "country"]),
        (
            "The U.S. army, e.g. Mr. Smith's unit.",
            ["the", "u.s.", "army", "e.g.", "mr", "smith", "'s", "unit"],
        ),
        ("Café naïve — résumé", ["cafe", "naive", "resume"]),  # accents folded
        ("It cost 1,000 dollars in 1999.", ["it", "cost", "1,000", "dollars", "in", "1999"]),
        ('A well-known "quote" -- (really)!', ["a", "well-known", "quote", "really"]),
        ("... ?! ;", []),
        ("end of sentence. Next one", ["end", "of", "sentence", "next", "one"]),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_layout_is_question_pad_separator_passage_pad_position_by_position():
    glove = small_glove(["a", "b", "c", "d"])
    rows = [make_row("a b", "c"), make_row("a", "d c")]
    e = encode({"train": rows}, glove, Layout(q_max=3, p_max=3, separator=2))
    layout, table, splits = e.layout, e.lookup.vectors, e.splits
    vectors = table[splits["train"].ids]
    zero = [0.0, 0.0]
    va, vb, vc, vd = glove.vectors.tolist()
    assert vectors[0].tolist() == [va, vb, zero, zero, zero, vc, zero, zero]
    assert vectors[1].tolist() == [va, zero, zero, zero, zero, vd, vc, zero]
    assert splits["train"].q_len.tolist() == [2, 1]
    assert splits["train"].p_len.tolist() == [1, 2]
    assert layout.steps == 8


def test_long_passage_is_truncated_by_averaging_the_tail():
    glove = small_glove(["q", "a", "b", "c", "d", "e"])
    rows = [make_row("q", "a b c d e")]
    e = encode({"train": rows}, glove, Layout(q_max=1, p_max=3, separator=1))
    table, splits = e.lookup.vectors, e.splits
    passage = table[splits["train"].ids[0, 2:]]
    a, b, c, d, e = glove.vectors[1:]
    np.testing.assert_allclose(passage, [a, b, (c + d + e) / 3], rtol=1e-6)
    assert splits["train"].p_len.tolist() == [3]


def test_long_question_is_cut_and_oov_words_are_skipped_and_counted():
    glove = small_glove(["a", "b", "c"])
    rows = [make_row("a zz b c", "c zz yy zz")]
    e = encode({"x": rows}, glove, Layout(q_max=2, p_max=2, separator=1))
    table, splits, tokens = e.lookup.vectors, e.splits, e.token_count
    assert table[splits["x"].ids[0]].tolist() == [[1, 2], [3, 4], [0, 0], [5, 6], [0, 0]]
    assert (e.oov_count, e.oov_top) == (4, [("zz", 3), ("yy", 1)])
    assert tokens == 8


def test_layout_comes_from_train_only():
    glove = small_glove(["w"])
    train = [make_row("w " * n, "w " * (n * 10)) for n in range(1, 101)]
    valid = [make_row("w " * 50, "w " * 5000)]
    layout = encode({"train": train, "valid": valid}, glove).layout
    assert layout.q_max == 64  # the 99.9th percentile (99) is over the ceiling
    # numpy's 99th percentile (990.1 -> 991) leans on the longest row; the bound takes the
    # order statistic below it, 990, which no single row moves
    assert int(np.ceil(np.percentile(np.arange(1, 101) * 10, 99))) == 991
    whole = encode({"train": train, "valid": valid}, glove, settings=LayoutSettings(100)).layout
    assert (layout.p_max, whole.p_max) == (990, 1000)


def test_text_without_known_words_is_an_error_naming_therow():
    with pytest.raises(UserError, match=r"train.jsonl:7: the passage has no word in the GloVe"):
        encode(
            {"train": [make_row("a", "zz yy", where="train.jsonl:7")]},
            small_glove(["a"]),
            Layout(1, 1, 1),
        )


def _boolq(rows, fingerprint="d1"):
    return BoolQ({"train": rows, "valid": rows[:1]}, "test", fingerprint)


def test_prepare_reuses_cache_and_invalidates_on_any_change(tmp_path, monkeypatch):
    import kboolq.data.layout as layout_module

    calls = []
    real_encode = layout_module.encode
    monkeypatch.setattr(
        layout_module, "encode", lambda *a, **k: calls.append(1) or real_encode(*a, **k)
    )
    rows = [make_row("a b", "b c"), make_row("c", "a a a", 0)]
    glove = small_glove(["a", "b", "c"])
    first, hit = prepare(_boolq(rows), glove, tmp_path)
    assert (hit, len(calls)) == (False, 1)
    second, hit = prepare(_boolq(rows), glove, tmp_path)
    assert (hit, len(calls)) == (True, 1)
    np.testing.assert_array_equal(first.splits["train"].ids, second.splits["train"].ids)
    np.testing.assert_array_equal(first.lookup.vectors, second.lookup.vectors)
    assert second.layout == first.layout and second.oov_top == first.oov_top
    _, hit = prepare(_boolq(rows, fingerprint="d2"), glove, tmp_path)  # data changed
    assert hit is False
    other = Glove(glove.words, glove.vectors * 2, "test", "fp2")  # vectors changed
    _, hit = prepare(_boolq(rows), other, tmp_path)
    assert hit is False
    monkeypatch.setattr(layout_module, "SEPARATOR_LENGTH", 4)  # settings changed
    _, hit = prepare(_boolq(rows), glove, tmp_path)
    assert (hit, len(calls)) == (False, 4)


def test_corrupt_cache_is_rebuilt(tmp_path):
    rows = [make_row("a", "b")] * 2
    glove = small_glove(["a", "b"])
    prepared, _ = prepare(_boolq(rows), glove, tmp_path)
    (path,) = (tmp_path / "prepared").glob("*.npz")
    path.write_bytes(b"not a zip")
    again, hit = prepare(_boolq(rows), glove, tmp_path)
    assert hit is False
    np.testing.assert_array_equal(again.splits["train"].ids, prepared.splits["train"].ids)


def test_stem_classes_by_hand():
    words = ["run", "countries", "runs", "ran", "running", "country"]
    # zero row, run run/runs/running -> 1, countri -> 2, ran -> 3, then two tails of their own
    assert stem_classes(words, tails=2).tolist() == [0, 1, 2, 1, 3, 1, 2, 4, 5]


def test_encode_gives_each_position_its_words_stem_class():
    glove = small_glove(["runs", "running", "fast", "q", "a", "b", "c"])
    rows = [make_row("runs fast", "running q"), make_row("q", "a b c")]
    e = encode({"train": rows}, glove, Layout(q_max=2, p_max=2, separator=1))
    stems = e.lookup.stems[e.splits["train"].ids]  # (rows, T): question 2 | separator 1 | passage 2
    runs, fast, running, q = stems[0, 0], stems[0, 1], stems[0, 3], stems[0, 4]
    assert runs == running and len({runs, fast, q}) == 3 and 0 not in (runs, fast, q)
    assert stems[0, 2] == 0 and stems[1, 1] == 0  # separator and padding: the zero row
    tail = stems[1, 4]  # "b c" averaged into one row: a class no word has
    assert tail not in e.lookup.stems[: len(e.lookup.vectors) - 1]


def test_a_cache_entry_missing_an_array_is_rebuilt(tmp_path, capsys):
    rows = [make_row("runs", "running")] * 2
    glove = small_glove(["runs", "running"])
    prepared, _ = prepare(_boolq(rows), glove, tmp_path)
    (path,) = (tmp_path / "prepared").glob("*.npz")
    with np.load(path) as archive:  # an entry without its stem classes
        older = {key: archive[key] for key in archive.files if key != "stems"}
    with open(path, "wb") as handle:
        np.savez(handle, **older)
    again, hit = prepare(_boolq(rows), glove, tmp_path)
    assert hit is False
    assert f"the cache entry {path} is damaged; rebuilding it" in capsys.readouterr().err
    np.testing.assert_array_equal(again.lookup.stems, prepared.lookup.stems)
    with np.load(path) as archive:
        assert "stems" in archive.files
    assert prepare(_boolq(rows), glove, tmp_path)[1] is True
