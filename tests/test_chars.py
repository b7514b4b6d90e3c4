"""--chars: unknown words keep their place, each word's characters travel in the layout and the
cache, a character CNN reads them, and a saved run needs nothing else to predict."""

import json
import shutil

import keras
import numpy as np
import pytest
from helpers import fixture_args, make_row, small_glove

from kboolq import fit, load_run
from kboolq.config import Config
from kboolq.data.batches import Batches
from kboolq.data.boolq import BoolQ, Row
from kboolq.data.layout import (
    CHAR_VOCABULARY,
    CHARACTERS,
    WORD_CHARS,
    Layout,
    LayoutSettings,
    char_ids,
    encode,
    prepare,
    vocabulary_problem,
)
from kboolq.errors import UserError
from kboolq.models.architectures import build_model
from kboolq.models.layers import CharCNN


def test_character_ids_by_hand():
    assert CHARACTERS.startswith("abcdefghijklmnopqrstuvwxyz0123456789!")
    assert CHAR_VOCABULARY == 26 + 10 + 32 + 2
    assert char_ids("ab1", 5) == [1, 2, 28, 0, 0]  # a=1, b=2, '0'=27, '1'=28, then padding
    assert char_ids("u.s.", 4) == [21, 50, 19, 50]  # "." is punctuation character 13: 36 + 13 + 1
    assert char_ids("abcdef", 3) == [1, 2, 3]  # a longer word: its first characters
    assert char_ids("é", 2) == [CHAR_VOCABULARY - 1, 0]  # anything else: the last id


def test_unknown_words_keep_their_place_with_their_characters():
    glove = small_glove(["is", "a", "cat"])
    rows = [make_row("is zork a cat", "a cat zork qux")]
    layout = Layout(q_max=4, p_max=4, separator=1, word_chars=4)
    encoded = encode({"train": rows}, glove, layout)
    split, lookup = encoded.splits["train"], encoded.lookup
    # table rows: zero, the known words in GloVe order, then the unknown words as met
    assert lookup.chars.tolist() == [
        [0, 0, 0, 0],
        char_ids("is", 4),
        char_ids("a", 4),
        char_ids("cat", 4),
        char_ids("zork", 4),
        char_ids("qux", 4),
    ]
    assert split.ids[0].tolist() == [1, 4, 2, 3, 0, 2, 3, 4, 5]  # question, separator, passage
    assert (split.q_len[0], split.p_len[0]) == (4, 4)
    np.testing.assert_array_equal(lookup.vectors[4:], 0)  # unknown words: the zero vector
    np.testing.assert_array_equal(lookup.vectors[1:4], glove.vectors)
    # without characters the same row drops its unknown words, as always
    plain = encode({"train": rows}, glove, Layout(q_max=4, p_max=4, separator=1))
    assert plain.splits["train"].ids[0].tolist() == [1, 2, 3, 0, 0, 2, 3, 0, 0]
    assert plain.lookup.chars is None


def test_an_unknown_word_only_in_a_cut_part_is_not_in_the_table():
    glove = small_glove(["a", "b", "c"])
    rows = [make_row("a b zork", "a b c qux a b")]  # zork cut from the question, qux in the tail
    layout = Layout(q_max=2, p_max=3, separator=1, word_chars=3)
    encoded = encode({"train": rows}, glove, layout)
    assert [row.tolist() for row in encoded.lookup.chars] == [
        [0, 0, 0],
        char_ids("a", 3),
        char_ids("b", 3),
        [0, 0, 0],  # the averaged tail "c qux a b": no characters, the mean of c, a, b
    ]
    np.testing.assert_allclose(encoded.lookup.vectors[3], glove.vectors[[2, 0, 1]].mean(axis=0))
    assert len(encoded.lookup.stems) == len(encoded.lookup.vectors) == 4


def test_unknown_words_share_stem_classes_with_known_words():
    glove = small_glove(["run", "is"])
    layout = Layout(q_max=3, p_max=3, separator=0, word_chars=8)
    encoded = encode({"train": [make_row("is run", "runs zorks zork")]}, glove, layout)
    split, stems = encoded.splits["train"], encoded.lookup.stems
    passage = stems[split.ids[0, 3:]].tolist()
    assert passage[0] == stems[split.ids[0, 1]]  # "runs" (unknown) shares "run"'s class
    assert passage[1] == passage[2] != passage[0]  # "zorks" and "zork"


def test_characters_make_a_row_without_known_words_answerable():
    glove = small_glove(["is", "a"])
    row = make_row("zork qux", "is a")
    assert vocabulary_problem(row, glove) == "the question has no word in the GloVe vocabulary"
    assert vocabulary_problem(row, glove, word_chars=WORD_CHARS) is None
    assert (
        vocabulary_problem(make_row("?!", "is a"), glove, word_chars=4)
        == "the question has no word"
    )
    layout = Layout(q_max=2, p_max=2, separator=1, word_chars=4)
    assert encode({"rows": [row]}, glove, layout).splits["rows"].ids[0].tolist() == [3, 4, 0, 1, 2]
    with pytest.raises(UserError) as error:
        encode({"rows": [make_row("?!", "is a", where="f.jsonl:7")]}, glove, layout)
    assert str(error.value) == "f.jsonl:7: the question has no word"


def test_characters_are_cached_under_their_own_fingerprint(tmp_path):
    glove = small_glove(["is", "a", "cat"])
    rows = [make_row("is zork a cat", "a cat zork qux", label=i % 2) for i in range(6)]
    boolq = BoolQ({"train": rows[:4], "valid": rows[4:]}, "test", "data-fp")
    plain, _ = prepare(boolq, glove, tmp_path)
    first, cached = prepare(boolq, glove, tmp_path, LayoutSettings(word_chars=5))
    assert not cached and first.fingerprint != plain.fingerprint
    again, cached = prepare(boolq, glove, tmp_path, LayoutSettings(word_chars=5))
    assert cached and first.layout.word_chars == again.layout.word_chars == 5
    np.testing.assert_array_equal(again.lookup.chars, first.lookup.chars)
    np.testing.assert_array_equal(again.splits["train"].ids, first.splits["train"].ids)
    assert prepare(boolq, glove, tmp_path)[0].lookup.chars is None  # the plain entry is intact


def test_a_damaged_character_entry_is_rebuilt_not_trusted(tmp_path, capsys):
    glove = small_glove(["is", "a", "cat"])
    rows = [make_row("is zork a cat", "a cat zork qux", label=i % 2) for i in range(6)]
    boolq = BoolQ({"train": rows[:4], "valid": rows[4:]}, "test", "data-fp")
    first, _ = prepare(boolq, glove, tmp_path, LayoutSettings(word_chars=5))
    (entry,) = (tmp_path / "prepared").glob("*.npz")
    with np.load(entry) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["chars"] = arrays["chars"] + CHAR_VOCABULARY  # ids the CNN has no embedding for
    with open(entry, "wb") as handle:
        np.savez(handle, **arrays)
    again, cached = prepare(boolq, glove, tmp_path, LayoutSettings(word_chars=5))
    assert (
        not cached
        and f"the cache entry {entry} is damaged; rebuilding it" in capsys.readouterr().err
    )
    np.testing.assert_array_equal(again.lookup.chars, first.lookup.chars)


def test_char_cnn_by_hand():
    layer = CharCNN(vocabulary=4, filters=1, char_dim=1, width=1)
    layer.build((None, 3), (None, 2))
    layer.embedding.assign(np.array([[9.0], [1.0], [-2.0], [3.0]], np.float32))
    layer.kernel.assign(np.ones((1, 1, 1), np.float32))
    layer.bias.assign(np.array([0.5], np.float32))
    chars = np.array([[0, 0, 0], [1, 2, 0], [3, 0, 0]], np.int32)  # no word, "1 2", "3"
    words = np.array([[1, 0], [2, 1]], np.int32)  # which of them each position holds
    out = keras.ops.convert_to_numpy(layer(chars, words))
    # "1 2": max(relu(1 + .5), relu(-2 + .5), relu(0 + .5)), padding characters embed as zeros
    # (not as row 0's 9); "3": 3.5; no characters: relu(0.5)
    np.testing.assert_allclose(out, [[[1.5], [0.5]], [[3.5], [1.5]]])


def test_batches_carry_each_distinct_word_once_and_where_it_is():
    glove = small_glove(["is", "a", "cat"])
    layout = Layout(q_max=3, p_max=4, separator=1, word_chars=4)
    rows = [make_row("is zork a", "a cat zork qux"), make_row("a cat", "qux is")]
    encoded = encode({"train": rows}, glove, layout)
    split, lookup = encoded.splits["train"], encoded.lookup
    inputs, _ = Batches(split, lookup, 2, chars=True)[0]
    chars, words = inputs["chars"], inputs["words"]
    assert chars.shape == (6, 4) and words.shape == (2, layout.steps)  # 5 words and padding
    # each position's characters are its table row's: "zork" at question and passage alike
    np.testing.assert_array_equal(chars[words], lookup.chars[split.ids])
    assert words[0, 1] == words[0, 6] != words[0, 7]  # zork, zork, qux
    assert words[0, 7] == words[1, 4]  # qux in both rows of the batch
    plain, _ = Batches(split, lookup, 2)[0]
    assert set(plain) == {"vectors", "lengths"}


def test_exact_match_of_a_chars_model_tells_unknown_words_apart():
    """Unknown words all have the zero vector; with --chars exact match compares the words."""
    layout = Layout(q_max=2, p_max=2, separator=1, word_chars=2)
    config = Config(hidden_size=2, chars=2, embedding_dropout=0.0)
    model = build_model(config, layout, 2)
    matcher = model.get_layer("exact_match")
    words = np.array([[1, 2, 0, 1, 3]], np.int32)  # question: zork qux; passage: zork blah
    q_codes, p_codes = words[:, :2, None], words[:, 3:, None]
    mask = np.ones((1, 2), bool)
    q_in_p, p_in_q = matcher(q_codes, mask, p_codes, mask)
    assert keras.ops.convert_to_numpy(q_in_p)[0, :, 0].tolist() == [1, 0]
    assert keras.ops.convert_to_numpy(p_in_q)[0, :, 0].tolist() == [1, 0]


def test_chars_are_refused_by_architectures_that_read_no_words():
    with pytest.raises(UserError) as error:
        Config(arch="notebook", chars=8)
    assert str(error.value) == (
        "--chars: --arch notebook reads no characters "
        "(these do: bigru, attention, esim, biattention, question_only)"
    )
    with pytest.raises(UserError) as error:
        Config(chars=-1)
    assert str(error.value) == "--chars must be at least 0, got -1"


def test_a_model_with_chars_reads_them():
    layout = Layout(q_max=2, p_max=3, separator=1, word_chars=4)
    model = build_model(Config(hidden_size=4, chars=3, embedding_dropout=0.0), layout, 2)
    assert sorted(tensor.name for tensor in model.inputs) == [
        "chars",
        "lengths",
        "vectors",
        "words",
    ]
    rng = np.random.default_rng(0)
    inputs = {
        "vectors": rng.normal(size=(2, 6, 2)).astype(np.float32),
        "lengths": np.array([[2, 3], [1, 2]], np.int32),
        "chars": rng.integers(1, 9, size=(12, 4)).astype(np.int32),
        "words": np.arange(12, dtype=np.int32).reshape(2, 6),
    }
    before = keras.ops.convert_to_numpy(model(inputs))
    inputs["chars"][0] = [5, 5, 5, 5]  # the first row's first word's characters
    after = keras.ops.convert_to_numpy(model(inputs))
    assert after[0] != before[0] and after[1] == before[1]
    with pytest.raises(ValueError, match="layout.word_chars"):
        build_model(Config(chars=3), Layout(q_max=2, p_max=3), 2)


@pytest.fixture(scope="module")
def chars_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chars")
    args = ["--hidden", "4", "--epochs", "1", "--chars", "6", "--exact-match", "stem"]
    assert fit.main(fixture_args(root / "run", root / "cache", *args)) == 0
    return root / "run", root / "cache"


def test_a_chars_run_records_its_layout_and_predicts_from_its_directory(chars_run, tmp_path):
    run, cache = chars_run
    config = json.loads((run / "config.json").read_text())
    assert config["hyperparameters"]["chars"] == 6
    assert config["layout"]["word_chars"] == WORD_CHARS
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    loaded = load_run(moved, cache)
    rows = [
        {"question": "is zzyzx a town", "passage": "zzyzx is a town in california"},
        {"question": "is the sky blue", "passage": "the sky is blue"},
    ]
    first = loaded.predict(rows)
    assert first.shape == (2,) and np.isfinite(first).all()
    np.testing.assert_allclose(load_run(run, cache).predict(rows), first, atol=1e-6)
    assert loaded.encode([Row(**rows[0], label=0, where="r")]).lookup.chars is not None


def test_a_chars_run_and_a_plain_run_join_an_ensemble_that_encodes_for_each(
    chars_run, trained, tmp_path
):
    from kboolq import ensemble
    from kboolq.runs.api import OpenMix

    run, cache = chars_run
    plain, _ = trained
    out = tmp_path / "e"
    assert ensemble.main([str(run), str(plain), "--out", str(out), "--cache-dir", str(cache)]) == 0
    rows = [{"question": "is the sky blue", "passage": "the sky is blue"}]
    mix = load_run(out, cache)
    assert isinstance(mix, OpenMix)  # their layouts differ (word_chars): each encodes its own
    expected = (load_run(run, cache).predict(rows) + load_run(plain, cache).predict(rows)) / 2
    np.testing.assert_allclose(mix.predict(rows), expected, atol=1e-6)


def test_predict_answers_a_question_of_unknown_words_only_with_chars(chars_run, trained, capsys):
    from kboolq import predict
    from kboolq.cli import run_command

    row = ["--question", "zzyzx qwxv", "--passage", "zzyzx is a town in california"]
    run, cache = chars_run
    assert (
        run_command(predict.main, "kboolq.predict")([str(run), *row, "--cache-dir", str(cache)])
        == 0
    )
    answer = json.loads(capsys.readouterr().out)
    assert answer["question"] == "zzyzx qwxv" and 0 < answer["p_yes"] < 1
    plain, plain_cache = trained
    code = run_command(predict.main, "kboolq.predict")(
        [str(plain), *row, "--cache-dir", str(plain_cache)]
    )
    assert code == 1
    assert json.loads(capsys.readouterr().out) == {
        "line": "the command line",
        "error": "the question has no word in the GloVe vocabulary",
    }


def test_a_grid_reads_characters_when_any_trial_does():
    from tuning.grid import grid_chars

    assert grid_chars(Config(), {"hidden_size": [4, 8]}) == 0
    assert grid_chars(Config(), {"chars": [0, 8]}) == WORD_CHARS
    assert grid_chars(Config(chars=8), {"hidden_size": [4]}) == WORD_CHARS


def test_the_card_of_a_chars_run_says_how_it_reads_words(chars_run):
    run, _ = chars_run
    card = (run / "README.md").read_text()
    assert "; each word's first 16 characters read by a character CNN (--chars 6)" in card
    assert "- Words outside the vectors' vocabulary have only their characters' vector (" in card
    assert "; a question or passage without a word is refused." in card
