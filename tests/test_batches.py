import numpy as np
import pytest

from kboolq.data.batches import Batches
from kboolq.data.layout import Lookup, Split

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
