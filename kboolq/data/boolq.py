"""BoolQ rows from the Hugging Face hub, TFDS or local files, split as the notebook split them.

The seed's split: train = official train[:-1000], valid = train[-1000:], test = the official
validation split. Every row is checked; a bad one stops loading with its file, line and field.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from kboolq.errors import UserError
from kboolq.files import sha256_file, sha256_json
from kboolq.network import hub_host, hub_offline, require_host, unreachable

DEFAULT_VALID_SIZE = 1000
SPLIT_FILES = {"train": "train", "test": "validation"}
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
LOCAL_HINT = (
    "pass --data DIR, a directory holding train.jsonl (and validation.jsonl for a test split)"
)


@dataclass(frozen=True)
class Row:
    question: str
    passage: str
    label: int
    where: str  # "file:line" or "hub split:index", for error messages further down


@dataclass(frozen=True)
class BoolQ:
    splits: dict[str, list[Row]]  # train, valid and, when the source has one, test
    source: str  # what load_boolq takes to load it again: hub, tfds or an absolute directory
    fingerprint: str


def parse_row(record: Any, where: str, labelled: bool = True) -> Row:
    """Validate one raw record; accepts BoolQ's `answer` (bool) or SuperGLUE's `label` (0/1).

    Unlabelled rows (for prediction) get label -1 and any answer they carry is ignored.
    """
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    texts = {}
    for field in ("question", "passage"):
        if field not in record:
            raise UserError(f"{where}: missing field '{field}'")
        value = record[field]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            raise UserError(f"{where}: field '{field}' must be a string, got {value!r:.40}")
        if not value.strip():
            raise UserError(f"{where}: field '{field}' is empty")
        texts[field] = value
    if not labelled:
        return Row(texts["question"], texts["passage"], -1, where)
    if "answer" in record:
        answer = record["answer"]
        if not isinstance(answer, bool):
            raise UserError(f"{where}: field 'answer' must be true or false, got {answer!r:.40}")
        label = int(answer)
    elif "label" in record:
        label = record["label"]
        if isinstance(label, bool) or label not in (0, 1):
            raise UserError(f"{where}: field 'label' must be 0 or 1, got {label!r:.40}")
        label = int(label)
    else:
        raise UserError(f"{where}: missing field 'answer' (or SuperGLUE's 'label')")
    return Row(texts["question"], texts["passage"], label, where)


@dataclass(frozen=True)
class BadRecord:
    """A line that is no record (malformed JSON, not UTF-8), read by a tolerant reader."""

    reason: str


def _jsonl_records(path: Path, tolerant: bool = False) -> Iterator[tuple[Any, str]]:
    """Records with "file:line"; a bad line raises UserError, or with `tolerant` comes as a
    BadRecord so that the lines after it are still read."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                where = f"{path}:{number}"
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                    if not line.strip():
                        continue
                    yield json.loads(line), where
                except UnicodeDecodeError as exc:
                    byte = raw[exc.start : exc.start + 1].hex()
                    reason = f"not UTF-8 text (byte 0x{byte} at column {exc.start + 1})"
                    if not tolerant:
                        raise UserError(f"{where}: {reason}") from None
                    yield BadRecord(reason), where
                except json.JSONDecodeError as exc:
                    reason = exc.msg.removesuffix(" at")  # "Invalid control character at"
                    reason = f"malformed JSON at column {exc.colno}: {reason}"
                    if not tolerant:
                        raise UserError(f"{where}: {reason}") from None
                    yield BadRecord(reason), where
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def _parquet_records(path: Path) -> Iterator[tuple[Any, str]]:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise UserError(f"{path}: cannot read parquet ({exc})") from None
    for number, record in enumerate(table.to_pylist(), start=1):
        yield record, f"{path}:row {number}"


def find_split_file(directory: Path, stem: str) -> Path | None:
    found = [directory / f"{stem}{suffix}" for suffix in SUFFIXES]
    found = [path for path in found if path.exists()]
    for path in found:
        if not path.is_file():
            raise UserError(f"{path}: is a directory, not a file of rows")
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise UserError(f"{directory}: several files for the {stem} split ({names}); keep one")
    return found[0] if found else None


def read_records(path: Path, tolerant: bool = False) -> Iterator[tuple[Any, str]]:
    """Raw records with their "file:line" locations, from .jsonl, .jsonl.gz or .parquet; with
    `tolerant`, a line that is no record comes as a BadRecord instead of stopping the read."""
    if path.suffix == ".parquet":
        return _parquet_records(path)
    return _jsonl_records(path, tolerant)


def read_rows(path: Path) -> list[Row]:
    rows = [parse_row(record, where) for record, where in read_records(path)]
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def holdout_split(
    train: list[Row], test: list[Row] | None, valid_size: int
) -> dict[str, list[Row]]:
    """The seed's split: the last `valid_size` training rows become the validation split."""
    if valid_size < 1:
        raise UserError(f"--valid-size must be at least 1, got {valid_size}")
    if len(train) <= valid_size:
        raise UserError(
            f"the train split has {len(train)} rows, not more than --valid-size {valid_size}; "
            "pass a smaller --valid-size"
        )
    splits = {"train": train[:-valid_size], "valid": train[-valid_size:]}
    if test is not None:
        splits["test"] = test
    return splits


def data_warnings(splits: dict[str, list[Row]], batch_size: int) -> list[str]:
    """What is legal but almost certainly a mistake in the training data."""
    found = []
    train, valid = splits.get("train", []), splits.get("valid", [])
    labels = {row.label for row in train}
    if len(labels) == 1:
        found.append(f"every training row has the answer {bool(labels.pop())}: one class only")
    keys = {(row.question, row.passage) for row in train}
    shared = sum((row.question, row.passage) in keys for row in valid)
    if shared:
        found.append(
            f"{shared} of {len(valid)} valid rows also appear in the training rows: valid "
            "scores will be too optimistic"
        )
    for name, rows in splits.items():
        if len(rows) < batch_size:
            found.append(
                f"the {name} split has {len(rows)} rows, fewer than a batch of {batch_size}"
            )
    return found


def train_file(directory: Path) -> Path:
    """The directory's train split file, or a UserError naming what was looked for."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory")
    train_path = find_split_file(directory, SPLIT_FILES["train"])
    if train_path is None:
        wanted = " or ".join(f"train{suffix}" for suffix in SUFFIXES)
        raise UserError(f"{directory}: no {wanted}")
    return train_path


def _rows_from_records(records: Iterable[dict], name: str) -> list[Row]:
    return [parse_row(record, f"{name}:{index}") for index, record in enumerate(records)]


class DataSource:
    """One kind of --data source: `problem` says what stops it from loading without loading
    it (None: nothing found), `load` reads it into the notebook's splits."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def problem(self) -> str | None:
        raise NotImplementedError

    def load(self, valid_size: int = DEFAULT_VALID_SIZE) -> BoolQ:
        raise NotImplementedError


class HubBoolQ(DataSource):
    """hub: google/boolq through `datasets`; probes the network first so offline fails in
    seconds."""

    def problem(self) -> str | None:
        if hub_offline():
            missing = (
                "HF_HUB_OFFLINE is set and google/boolq is not in the local Hugging Face cache"
            )
            return None if hub_cached() else f"--data hub: {missing}"
        reason = unreachable(hub_host())
        return reason and f"--data hub: cannot reach {hub_host()} ({reason})"

    def load(self, valid_size: int = DEFAULT_VALID_SIZE) -> BoolQ:
        import datasets  # a network source: not imported (1 s) unless asked for

        if not hub_offline():
            require_host(hub_host(), "the BoolQ dataset (google/boolq)", LOCAL_HINT)
        try:
            loaded = datasets.load_dataset("google/boolq")
        except Exception as exc:  # datasets wraps network and cache misses in many types
            raise UserError(
                f"could not load google/boolq from the hub: {exc}\n{LOCAL_HINT}"
            ) from None
        train = _rows_from_records(loaded["train"], "google/boolq train")
        test = _rows_from_records(loaded["validation"], "google/boolq validation")
        fingerprint = sha256_json(
            {
                "hub": [loaded["train"]._fingerprint, loaded["validation"]._fingerprint],
                "v": valid_size,
            }
        )
        return BoolQ(holdout_split(train, test, valid_size), "hub", fingerprint)


class TfdsBoolQ(DataSource):
    """tfds: TFDS's super_glue/boolq, which needs TensorFlow to build (the tfds extra)."""

    def problem(self) -> str | None:
        missing = [
            m for m in ("tensorflow_datasets", "tensorflow") if importlib.util.find_spec(m) is None
        ]
        needs = " and ".join(missing)
        return f"--data tfds needs {needs}: pip install 'kboolq[tfds]'" if missing else None

    def load(self, valid_size: int = DEFAULT_VALID_SIZE) -> BoolQ:
        if (problem := self.problem()) is not None:
            raise UserError(f"{problem}\n{LOCAL_HINT}")
        import tensorflow_datasets as tfds

        builder = tfds.builder("super_glue/boolq")  # TFDS's own data directory
        if not builder.is_prepared():
            require_host("storage.googleapis.com", "super_glue/boolq for TFDS", LOCAL_HINT)
            builder.download_and_prepare()
        splits = {}
        for name, split in (("train", "train"), ("test", "validation")):
            records = tfds.as_numpy(builder.as_dataset(split=split))
            splits[name] = _rows_from_records(records, f"tfds super_glue/boolq {split}")
        fingerprint = sha256_json({"tfds": str(builder.info.version), "valid_size": valid_size})
        test = splits["test"]
        return BoolQ(holdout_split(splits["train"], test, valid_size), "tfds", fingerprint)


class LocalBoolQ(DataSource):
    """A directory with train.jsonl (.jsonl.gz, .parquet) and optionally validation.jsonl."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.directory = Path(spec).expanduser()

    def problem(self) -> str | None:
        try:
            train_file(self.directory)
        except UserError as exc:
            return f"--data {exc}"
        return None

    def load(self, valid_size: int = DEFAULT_VALID_SIZE) -> BoolQ:
        if not self.directory.is_dir():
            raise UserError(f"--data {self.directory}: no such directory (or use 'hub' or 'tfds')")
        train_path = train_file(self.directory)
        test_path = find_split_file(self.directory, SPLIT_FILES["test"])
        paths = [train_path] + ([test_path] if test_path else [])
        fingerprint = sha256_json(
            {"files": [[p.name, sha256_file(p)] for p in paths], "valid_size": valid_size}
        )
        test = read_rows(test_path) if test_path else None
        splits = holdout_split(read_rows(train_path), test, valid_size)
        return BoolQ(splits, str(self.directory.resolve()), fingerprint)


# The one registry of --data sources by name; any other value names a directory.
DATA_SOURCES: dict[str, type[DataSource]] = {"hub": HubBoolQ, "tfds": TfdsBoolQ}


def data_source(spec: str) -> DataSource:
    return DATA_SOURCES.get(spec, LocalBoolQ)(spec)


def hub_cached() -> bool:
    """Whether `datasets` can load google/boolq from its local cache alone (offline mode)."""
    import datasets  # a network source: not imported (1 s) unless asked for

    try:
        datasets.load_dataset_builder("google/boolq")
    except Exception:  # datasets raises many types for a cache miss offline
        return False
    return True


def source_problem(source: str) -> str | None:
    """What stops `source` from loading, found without loading it (None: nothing found)."""
    return data_source(source).problem()


def load_boolq(source: str, valid_size: int = DEFAULT_VALID_SIZE) -> BoolQ:
    """`source` is 'hub', 'tfds' or a directory path."""
    return data_source(source).load(valid_size)
