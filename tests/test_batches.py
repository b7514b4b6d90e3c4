import numpy as np
import pytest

from kboolq.data.batches import Batches
from kboolq.data.layout import Layout, Lookup, Split

pytestmark = pytest.mark.backend


def _split(rows=10, steps=6):
    ids = (np.arange(rows * steps).reshape(rows, steps) % 5).astype(np.int32)
    return Split(
        ids,
        np.arange(rows, dtype=np.int32) % 3,
        np.arange(rows, dtype=np.int32) % 4,
        (np.arange(rows) % 2).astype(np.int8),
    )


TABLE = np.arange(15, dtype=np.float32).reshape(5, 3)
LOOKUP = Lookup(TABLE, np.array([0, 1, 2, 1, 3], np.int32))


def test_shapes_dtypes_and_values():
    split = _split()
    batches = Batches(split, LOOKUP, batch_size=4)
    assert len(batches) == 3
    inputs, labels = batches[0]
    assert inputs["vectors"].shape == (4, 6, 3) and inputs["vectors"].dtype == np.float32
    np.testing.assert_array_equal(inputs["vectors"], TABLE[split.ids[:4]])
    assert inputs["lengths"].tolist() == [[0, 0], [1, 1], [2, 2], [0, 3]]
    assert labels.dtype == np.float32 and labels.tolist() == [0, 1, 0, 1]
    last_inputs, last_labels = batches[2]
    assert last_inputs["vectors"].shape == (2, 6, 3) and len(last_labels) == 2
    with pytest.raises(IndexError):
        batches[3]


def _epoch_order(batches):
    return np.concatenate(
        [batches[i][0]["lengths"][:, 0] * 100 + batches[i][1] for i in range(len(batches))]
    )


def test_training_order_is_seeded_and_changes_every_epoch():
    split = _split(rows=40)
    first, twin = (
        Batches(split, LOOKUP, 8, shuffle=True, seed=3),
        Batches(split, LOOKUP, 8, shuffle=True, seed=3),
    )
    assert first.order.tolist() == twin.order.tolist()
    assert sorted(first.order.tolist()) == list(range(40))
    epoch0 = first.order.copy()
    first.on_epoch_end()
    assert first.order.tolist() != epoch0.tolist()
    twin.on_epoch_end()
    assert first.order.tolist() == twin.order.tolist()
    assert Batches(split, LOOKUP, 8, shuffle=True, seed=4).order.tolist() != epoch0.tolist()


def test_evaluation_order_is_fixed():
    batches = Batches(_split(rows=9), LOOKUP, 4)
    before = [batches[i][1].tolist() for i in range(len(batches))]
    batches.on_epoch_end()
    assert [batches[i][1].tolist() for i in range(len(batches))] == before
    assert batches.order.tolist() == list(range(9))


def test_stem_classes_come_with_the_lookup_only_for_a_model_that_takes_them():
    split = _split()
    with_stems, _ = Batches(split, LOOKUP, 4, stems=True)[0]
    np.testing.assert_array_equal(with_stems["stems"], LOOKUP.stems[split.ids[:4]])
    assert with_stems["stems"].dtype == np.int32
    without, _ = Batches(split, LOOKUP, 4)[0]
    assert set(without) == {"vectors", "lengths"}


def _lengths_split(p_len, q_max=2, separator=1, p_max=20):
    """Rows whose passage lengths are `p_len`, laid out as q_max | separator | p_max; each
    real position holds id 1 + the row's index % 4, padding 0."""
    rows, steps = len(p_len), q_max + separator + p_max
    ids = np.zeros((rows, steps), np.int32)
    for i, n in enumerate(p_len):
        ids[i, :1] = 1 + i % 4
        ids[i, q_max + separator : q_max + separator + n] = 1 + i % 4
    q_len = np.ones(rows, np.int32)
    return Split(ids, q_len, np.asarray(p_len, np.int32), (np.arange(rows) % 2).astype(np.int8))


LAYOUT = Layout(q_max=2, p_max=20, separator=1)


def test_a_batch_is_cut_to_its_longest_passage_in_steps_of_eight_and_never_past_p_max():
    split = _lengths_split([3, 9, 1, 20, 16, 2])
    batches = Batches(split, LOOKUP, 2, layout=LAYOUT)  # evaluation: rows by passage length
    assert [b.tolist() for b in batches.batches] == [[2, 5], [0, 1], [4, 3]]
    # longest passages 2, 9, 20 -> parts of 8, 16, 20 (p_max) -> T = 3 + that
    shapes = [batches[i][0]["vectors"].shape for i in range(len(batches))]
    assert shapes == [(2, 11, 3), (2, 19, 3), (2, 23, 3)]
    inputs, labels = batches[1]
    np.testing.assert_array_equal(inputs["vectors"], TABLE[split.ids[[0, 1], :19]])
    assert inputs["lengths"].tolist() == [[1, 3], [1, 9]] and labels.tolist() == [0, 1]
    whole = Batches(split, LOOKUP, 2, layout=LAYOUT, steps=23)  # a saved model's fixed T
    assert {whole[i][0]["vectors"].shape[1] for i in range(3)} == {23}
    assert whole.order.tolist() == list(range(6))
    with pytest.raises(ValueError, match="the model takes 30 steps, the data has 23"):
        Batches(split, LOOKUP, 2, layout=LAYOUT, steps=30)


def test_length_grouped_batches_hold_similar_rows_in_a_seeded_order_every_epoch():
    rng = np.random.default_rng(0)
    p_len = rng.integers(1, 21, 64)
    split = _lengths_split(p_len)
    grouped = Batches(split, LOOKUP, 8, shuffle=True, seed=3, layout=LAYOUT)
    twin = Batches(split, LOOKUP, 8, shuffle=True, seed=3, layout=LAYOUT)
    assert sorted(grouped.order.tolist()) == list(range(64))
    assert [b.tolist() for b in grouped.batches] == [b.tolist() for b in twin.batches]
    spans = [np.ptp(p_len[b]) for b in grouped.batches]
    random = Batches(split, LOOKUP, 8, shuffle=True, seed=3, layout=LAYOUT, batching="random")
    assert max(spans) <= 4 < min(np.ptp(p_len[b]) for b in random.batches)
    firsts = [int(np.median(p_len[b])) for b in grouped.batches]
    assert firsts != sorted(firsts)  # the batches come in random order, not by length
    epoch0 = grouped.order.copy()
    grouped.on_epoch_end(), twin.on_epoch_end()
    assert grouped.order.tolist() != epoch0.tolist()
    assert grouped.order.tolist() == twin.order.tolist()

    # positions computed per real position: grouped batches pad little, random ones much
    def positions(batches):
        return sum(np.prod(batches[i][0]["vectors"].shape[:2]) for i in range(len(batches)))

    assert positions(grouped) < 0.8 * positions(random)
    with pytest.raises(ValueError, match="batching must be one of"):
        Batches(split, LOOKUP, 8, batching="sorted")


def test_random_batching_deals_the_rows_as_before():
    split = _split(rows=40)
    dealt = Batches(split, LOOKUP, 8, shuffle=True, seed=3, batching="random")
    expected = np.random.default_rng([3, 0]).permutation(40)
    assert dealt.order.tolist() == expected.tolist()
    assert [b.tolist() for b in dealt.batches] == [expected[i : i + 8].tolist()
                                                   for i in range(0, 40, 8)]  # fmt: skip
