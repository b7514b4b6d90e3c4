import gzip
import json
import time

import pytest
from helpers import FIXTURE_BOOLQ

from kboolq.data.boolq import DATA_SOURCES, HubBoolQ, LocalBoolQ, TfdsBoolQ, load_boolq
from kboolq.errors import UserError


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _rows(n, start=0):
    return [
        {"question": f"q{i}", "passage": f"p{i}", "answer": i % 3 == 0}
        for i in range(start, start + n)
    ]


def test_holdout_split_sizes_and_order_on_2000_rows(tmp_path):
    _write(tmp_path / "train.jsonl", _rows(2000))
    _write(tmp_path / "validation.jsonl", _rows(300, start=5000))
    boolq = load_boolq(str(tmp_path))
    assert {k: len(v) for k, v in boolq.splits.items()} == {
        "train": 1000,
        "valid": 1000,
        "test": 300,
    }
    assert boolq.splits["train"][0].question == "q0"
    assert boolq.splits["valid"][0].question == "q1000"
    assert boolq.splits["test"][-1].question == "q5299"
    assert [r.label for r in boolq.splits["train"][:4]] == [1, 0, 0, 1]


def test_train_only_directory_has_no_test_split(tmp_path):
    _write(tmp_path / "train.jsonl", _rows(30))
    boolq = load_boolq(str(tmp_path), valid_size=10)
    assert sorted(boolq.splits) == ["train", "valid"]


def test_gzip_parquet_and_superglue_labels_are_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "q", "passage": "p", "label": i % 2, "idx": i} for i in range(12)]
    with gzip.open(tmp_path / "train.jsonl.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(_rows(5)), tmp_path / "validation.parquet")
    boolq = load_boolq(str(tmp_path), 2)
    assert [r.label for r in boolq.splits["train"]] == [0, 1] * 5
    assert len(boolq.splits["test"]) == 5 and boolq.splits["test"][0].label == 1


def test_fingerprint_follows_file_content(tmp_path):
    path = _write(tmp_path / "train.jsonl", _rows(20))
    first = load_boolq(str(tmp_path), 5).fingerprint
    assert load_boolq(str(tmp_path), 5).fingerprint == first
    assert load_boolq(str(tmp_path), 6).fingerprint != first
    _write(path, _rows(21))
    assert load_boolq(str(tmp_path), 5).fingerprint != first


GOOD = {"question": "q", "passage": "p", "answer": True}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"train.jsonl:3: malformed JSON"),
        ('["a list"]', r"train.jsonl:3: expected a JSON object"),
        (json.dumps({"passage": "p", "answer": True}), r"train.jsonl:3: missing field 'question'"),
        (json.dumps({"question": "q", "answer": True}), r"train.jsonl:3: missing field 'passage'"),
        (json.dumps({"question": "q", "passage": "p"}), r"train.jsonl:3: missing field 'answer'"),
        (json.dumps({**GOOD, "question": "  "}), r"train.jsonl:3: field 'question' is empty"),
        (json.dumps({**GOOD, "passage": 7}), r"train.jsonl:3: field 'passage' must be a string"),
        (
            json.dumps({**GOOD, "answer": "yes"}),
            r"train.jsonl:3: field 'answer' must be true or false",
        ),
        (json.dumps({**GOOD, "answer": 1}), r"train.jsonl:3: field 'answer' must be true or false"),
        (
            json.dumps({"question": "q", "passage": "p", "label": 2}),
            r"train.jsonl:3: field 'label' must be 0 or 1",
        ),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, line, message):
    _write(tmp_path / "train.jsonl", [GOOD, GOOD, line, GOOD])
    with pytest.raises(UserError, match=message):
        load_boolq(str(tmp_path), 1)


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_boolq(str(tmp_path / "nope"))
    with pytest.raises(UserError, match=r"no train.jsonl or train.jsonl.gz or train.parquet"):
        load_boolq(str(tmp_path))


def test_too_few_rows_for_the_validation_split(tmp_path):
    _write(tmp_path / "train.jsonl", _rows(10))
    with pytest.raises(UserError, match="has 10 rows, not more than --valid-size 1000"):
        load_boolq(str(tmp_path))


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in _rows(50)))
    (tmp_path / "train.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="train.jsonl.gz: cannot read"):
        load_boolq(str(tmp_path), 5)


def test_hub_without_network_fails_fast_naming_the_local_alternative(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://kboolq-offline.invalid")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"cannot reach kboolq-offline.invalid(.|\n)*--data DIR"):
        HubBoolQ("hub").load()
    assert time.monotonic() - start < 30


def test_tfds_without_tensorflow_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("tensorflow is installed here")
    with pytest.raises(UserError, match=r"pip install 'kboolq\[tfds\]'"):
        TfdsBoolQ("tfds").load()


def test_fixture_directory_loads():
    boolq = load_boolq(str(FIXTURE_BOOLQ), 40)
    assert {k: len(v) for k, v in boolq.splits.items()} == {"train": 120, "valid": 40, "test": 48}


def test_the_data_registry_names_each_source_and_a_path_is_a_directory(tmp_path):
    assert {"hub": HubBoolQ, "tfds": TfdsBoolQ} == DATA_SOURCES
    _write(tmp_path / "train.jsonl", _rows(12))
    source = LocalBoolQ(str(tmp_path))
    assert source.problem() is None and len(source.load(2).splits["valid"]) == 2
    assert (
        LocalBoolQ(str(tmp_path / "nope")).problem()
        == f"--data {tmp_path / 'nope'}: no such directory"
    )
