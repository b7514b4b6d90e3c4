"""Tokens -> GloVe ids -> the notebook's fixed layout, cached under a fingerprint of every input.

Layout of one row (T = q_max + SEPARATOR_LENGTH + p_max positions):
question ids zero-padded to q_max | SEPARATOR_LENGTH zero vectors | passage ids zero-padded
to p_max.
Ids index a compact per-dataset table whose row 0 is the zero vector; passages longer than p_max
keep p_max - 1 words plus one extra row holding the mean of the remaining words' vectors. Each
table row also has a stem class (equal for words with the same stem), for --exact-match stem.

With characters (layout.word_chars > 0, fit --chars) out-of-vocabulary words keep their
positions, as rows with the zero vector, and every table row also holds its word's first
word_chars character ids (CHARACTERS; 0 pads), so a character CNN can give them a vector.
"""

from __future__ import annotations

import dataclasses
import json
import math
import string
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kboolq.data.boolq import BoolQ, Row
from kboolq.data.glove import Glove
from kboolq.data.tokens import DEFAULT_ACCENTS, TOKENIZER_VERSION, stem, tokenize
from kboolq.errors import UserError
from kboolq.files import atomic_path, sha256_json

SEPARATOR_LENGTH = 8
PASSAGE_PERCENTILE = 99.0
QUESTION_PERCENTILE = 99.9
# No layout is longer than these, whatever the percentiles (real BoolQ: questions of at most 21
# tokens, passages of at most 754 of train's 9,427; q_max 18 and p_max 273 by the percentiles).
QUESTION_CEILING = 64
PASSAGE_CEILING = 2048
BOUNDS = 2  # the rule of `bound` (1: numpy's percentile alone), part of the fingerprint
OOV_TOP = 20
CACHE_FORMAT = 2  # bump whenever what a cache entry holds changes: it is part of the fingerprint
# Every character a token can hold (tokens are lower-case ASCII without whitespace): character
# id i + 1 is CHARACTERS[i], 0 pads a word, and CHAR_VOCABULARY - 1 would stand for any other.
CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation
CHAR_VOCABULARY = len(CHARACTERS) + 2
WORD_CHARS = 16  # characters kept per word with characters on (a longer word: its first 16)
_CHAR_IDS = {c: i + 1 for i, c in enumerate(CHARACTERS)}


@dataclass(frozen=True)
class LayoutSettings:
    """How rows become the layout: the percentiles of the train rows' token counts that bound
    the passages and the questions, how accents are read, and the characters kept per word (0:
    none). config.DataSettings gives them (DataSettings.layout_settings)."""

    passage_percentile: float = PASSAGE_PERCENTILE
    question_percentile: float = QUESTION_PERCENTILE
    accents: str = DEFAULT_ACCENTS
    word_chars: int = 0


@dataclass(frozen=True)
class Layout:
    q_max: int
    p_max: int
    separator: int = SEPARATOR_LENGTH
    word_chars: int = 0  # characters per word in the chars input; 0: none, OOV words dropped

    @property
    def steps(self) -> int:
        return self.q_max + self.separator + self.p_max

    @property
    def passage_start(self) -> int:
        return self.q_max + self.separator


@dataclass(frozen=True)
class Split:
    ids: np.ndarray  # (rows, layout.steps) int32 into Prepared.lookup; 0 is the zero vector
    q_len: np.ndarray  # (rows,) int32 real question words
    p_len: np.ndarray  # (rows,) int32 real passage positions (after truncation)
    labels: np.ndarray  # (rows,) int8

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Split:
        """The rows at `index` (positions or a boolean mask), in that order."""
        return Split(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


FOLD_SEED = 20261202  # fixed: a split's folds depend only on its row count


def train_folds(rows: int, folds: int) -> np.ndarray:
    """Which of `folds` folds each of `rows` rows belongs to (fit --train-folds): a fixed
    shuffle dealt round, so fold sizes differ by at most one and every run over the same rows
    draws the same folds."""
    return np.random.default_rng(FOLD_SEED).permutation(rows) % folds


@dataclass(frozen=True)
class Lookup:
    """What a split's ids index, one row per id: the word's vector and its stem class. Row 0 is
    the zero vector (padding and separator), stem class 0. With characters, each row's word's
    character ids (zeros for row 0 and averaged tails)."""

    vectors: np.ndarray  # (rows, dim) float32
    stems: np.ndarray  # (rows,) int32
    chars: np.ndarray | None = None  # (rows, layout.word_chars) int32, with characters only

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass(frozen=True)
class Prepared:
    """Named splits in one layout over one lookup table, and what encoding them counted."""

    layout: Layout
    lookup: Lookup
    splits: dict[str, Split]
    token_count: int
    oov_count: int  # out-of-vocabulary tokens
    oov_top: list[tuple[str, int]]  # the most frequent ones, with their counts
    questions_cut: dict[str, int]  # per split: questions longer than q_max, cut to it
    fingerprint: str | None = None  # the cache key (prepare); None for rows encoded on the fly


@dataclass
class _Tokenized:
    """One group of rows as GloVe ids, with token counts that include out-of-vocabulary words."""

    questions: list[list[int]]
    passages: list[list[int]]
    question_tokens: list[int]
    passage_tokens: list[int]


NO_WORD = "the {what} has no word in the GloVe vocabulary"
NO_TOKEN = "the {what} has no word"


def vocabulary_problem(
    row: Row, glove: Glove, accents: str = DEFAULT_ACCENTS, word_chars: int = 0
) -> str | None:
    """Why `row` cannot be encoded, or None: a part without one known word, or with characters
    (`word_chars` > 0, where unknown words count) a part without any word."""
    for what, text in (("question", row.question), ("passage", row.passage)):
        tokens = tokenize(text, accents)
        if word_chars and not tokens:
            return NO_TOKEN.format(what=what)
        if not word_chars and not any(token in glove.index for token in tokens):
            return NO_WORD.format(what=what)
    return None


def char_ids(word: str, width: int) -> list[int]:
    """The first `width` characters of `word` as ids (see CHARACTERS), zero-padded to `width`."""
    ids = [_CHAR_IDS.get(c, CHAR_VOCABULARY - 1) for c in word[:width]]
    return ids + [0] * (width - len(ids))


def word_ids(tokens: Sequence[str], index: dict[str, int], unknown: dict | None) -> list[int]:
    """The one token -> id rule (the encoder's and the export's): a known word's vocabulary
    position; an unknown word dropped, or, with `unknown` (a run that reads characters: a dict
    shared by all rows), kept as -2 - its index in `unknown` (equal words, equal ids)."""
    if unknown is None:
        return [index[t] for t in tokens if t in index]
    return [index[t] if t in index else -2 - unknown.setdefault(t, len(unknown)) for t in tokens]


def _glove_ids(
    rows: Sequence[Row], glove: Glove, oov: Counter, accents: str, unknown: dict | None = None
) -> _Tokenized:
    """GloVe ids of each part's words; with `unknown` (a dict shared by all groups) an
    out-of-vocabulary word keeps its place as id -2 - its index in `unknown`, else it is
    dropped."""
    out = _Tokenized([], [], [], [])
    for row in rows:
        for what, text, ids_out, counts in (
            ("question", row.question, out.questions, out.question_tokens),
            ("passage", row.passage, out.passages, out.passage_tokens),
        ):
            tokens = tokenize(text, accents)
            oov.update(t for t in tokens if t not in glove.index)
            ids = word_ids(tokens, glove.index, unknown)
            if not ids:
                problem = NO_WORD if unknown is None else NO_TOKEN
                raise UserError(f"{row.where}: {problem.format(what=what)}")
            ids_out.append(ids)
            counts.append(len(tokens))
    return out


def layout_from_train(train: _Tokenized, settings: LayoutSettings) -> Layout:
    """q_max and p_max: percentiles of the train questions' and passages' token counts (99.9th
    and the notebook's 99th; 100 keeps every train question or passage whole), so that one
    outsized row cannot stretch every row's layout.

    Token counts include out-of-vocabulary words, as the notebook counted them; only the train
    split is used, so the layout never depends on validation or test data.
    """
    q_max = bound(train.question_tokens, settings.question_percentile, QUESTION_CEILING)
    p_max = bound(train.passage_tokens, settings.passage_percentile, PASSAGE_CEILING)
    return Layout(q_max=q_max, p_max=p_max, word_chars=settings.word_chars)


def bound(counts: Sequence[int], percentile: float, ceiling: int) -> int:
    """The `percentile`-th percentile of `counts`, rounded up, that no single count can move:
    where numpy's linear interpolation would lean on the largest count (a percentile below 100
    on few rows), the order statistic just below it is taken instead; 100 is the largest count.
    Capped at `ceiling` and at least 1. On the real train split (8,427 rows) this is numpy's
    percentile exactly; on 300 rows, one 3,000-word question no longer stretches every row.
    """
    ordered = np.sort(np.asarray(counts))
    position = percentile / 100 * (len(ordered) - 1)
    value = float(np.percentile(ordered, percentile))
    if percentile < 100 and math.ceil(position) == len(ordered) - 1 and position % 1:
        value = float(ordered[math.floor(position)])
    return min(max(math.ceil(value), 1), ceiling)


def _place(group: _Tokenized, layout: Layout, vocabulary: int, glove: Glove):
    """Global-id matrix (-1 = zero vector, >= vocabulary = averaged tail, <= -2 = an unknown
    word) and the tail vectors: the mean of the tail's known words (zero if it has none)."""
    rows = len(group.questions)
    ids = np.full((rows, layout.steps), -1, dtype=np.int64)
    q_len = np.zeros(rows, dtype=np.int32)
    p_len = np.zeros(rows, dtype=np.int32)
    tails = []
    for i, (question, passage) in enumerate(zip(group.questions, group.passages, strict=True)):
        question = question[: layout.q_max]
        ids[i, : len(question)] = question
        if len(passage) > layout.p_max:
            tail = passage[layout.p_max - 1 :]
            passage = passage[: layout.p_max - 1] + [vocabulary + len(tails)]
            known = np.sort(np.array([t for t in tail if t >= 0], dtype=np.int64))
            mean = np.zeros(glove.dim)  # a tail of unknown words only: no vector to average
            if len(known):
                mean = np.asarray(glove.vectors[known], dtype=np.float64).mean(axis=0)
            tails.append(mean)
        start = layout.passage_start
        ids[i, start : start + len(passage)] = passage
        q_len[i], p_len[i] = len(question), len(passage)
    return ids, q_len, p_len, tails


def encode(
    row_groups: dict[str, Sequence[Row]],
    glove: Glove,
    layout: Layout | None = None,
    settings: LayoutSettings = LayoutSettings(),  # noqa: B008 (frozen)
) -> Prepared:
    """Encode named groups of rows over one compact lookup table; without `layout`, train sets
    it from `settings` (with settings.word_chars characters per word)."""
    oov: Counter = Counter()
    accents = settings.accents
    word_chars = settings.word_chars if layout is None else layout.word_chars
    unknown: dict | None = {} if word_chars else None
    tokenized = {
        name: _glove_ids(rows, glove, oov, accents, unknown) for name, rows in row_groups.items()
    }
    if layout is None:
        layout = layout_from_train(tokenized["train"], settings)
    cut = {
        name: sum(len(ids) > layout.q_max for ids in group.questions)
        for name, group in tokenized.items()
    }
    vocabulary = len(glove.words)
    placed, tails = {}, []
    for name, group in tokenized.items():
        ids, q_len, p_len, group_tails = _place(group, layout, vocabulary, glove)
        ids[ids >= vocabulary] += len(tails)  # tail ids continue across groups
        tails.extend(group_tails)
        placed[name] = (ids, q_len, p_len)
    first_unknown = vocabulary + len(tails)  # unknown words' rows come after the tails
    for ids, _, _ in placed.values():
        ids[ids <= -2] = first_unknown - 2 - ids[ids <= -2]
    all_ids = np.concatenate([ids.ravel() for ids, _, _ in placed.values()])
    used, inverse = np.unique(all_ids, return_inverse=True)  # used[0] == -1: every row has padding
    real = used[(used >= 0) & (used < vocabulary)]
    every_unknown = list(unknown or {})  # some occur only in a cut question or a tail
    unknown_words = [every_unknown[j] for j in used[used >= first_unknown] - first_unknown]
    table = np.zeros((len(used), glove.dim), dtype=np.float32)  # unknown words: zero vectors
    table[1 : 1 + len(real)] = glove.vectors[real]
    if tails:
        table[1 + len(real) : 1 + len(real) + len(tails)] = np.stack(tails)
    words = [glove.words[i] for i in real]
    stems = stem_classes(words, len(tails), unknown_words)
    chars = None
    if word_chars:
        row_words = ["", *words, *[""] * len(tails), *unknown_words]
        chars = np.array([char_ids(w, word_chars) for w in row_words], np.int32)
    splits, offset = {}, 0
    for name, (ids, q_len, p_len) in placed.items():
        local = inverse[offset : offset + ids.size].reshape(ids.shape).astype(np.int32)
        offset += ids.size
        labels = np.array([row.label for row in row_groups[name]], dtype=np.int8)
        splits[name] = Split(local, q_len, p_len, labels)
    token_count = sum(
        sum(group.question_tokens) + sum(group.passage_tokens) for group in tokenized.values()
    )
    return Prepared(
        layout,
        Lookup(table, stems, chars),
        splits,
        token_count,
        sum(oov.values()),
        oov.most_common(OOV_TOP),
        cut,
    )


def stem_classes(words: Sequence[str], tails: int, unknown: Sequence[str] = ()) -> np.ndarray:
    """Stem class per table row: 0 for the zero row, then one per distinct stem of `words` (the
    table's word rows, in order), then a class of its own for each averaged tail row, which
    stands for many words and so matches none, then the classes of the `unknown` words' rows
    (kept with characters), which share classes with `words` of the same stem."""
    classes: dict[str, int] = {}
    word_classes = [classes.setdefault(stem(word), len(classes) + 1) for word in words]
    unknown_classes = [classes.setdefault(stem(word), len(classes) + 1) for word in unknown]
    tail_classes = range(len(classes) + 1, len(classes) + 1 + tails)
    return np.array([0, *word_classes, *tail_classes, *unknown_classes], dtype=np.int32)


def fingerprint(boolq: BoolQ, glove: Glove, settings: LayoutSettings) -> str:
    """The key of what `prepare` makes of `boolq` with `glove` and these settings."""
    return fingerprint_of(boolq.fingerprint, glove.fingerprint, settings)


def fingerprint_of(data: str, vectors: str, settings: LayoutSettings, bounds: int = BOUNDS) -> str:
    """`fingerprint` from the data's and the vectors' own fingerprints (a run's config.json
    records the vectors'; the rows' come from the data as it is now). `bounds` 1 gives the
    fingerprint that runs made before `bound` recorded."""
    keys = {
        **({"bounds": bounds} if bounds != 1 else {}),
        "cache": CACHE_FORMAT,
        "tokenizer": TOKENIZER_VERSION,
        "separator": SEPARATOR_LENGTH,
        "percentile": settings.passage_percentile,
        "question_percentile": settings.question_percentile,
        "accents": settings.accents,
    }
    if settings.word_chars:  # only then: entries made without characters keep their keys
        keys |= {"word_chars": settings.word_chars, "characters": CHARACTERS}
    return sha256_json({"data": data, "glove": vectors, **keys})


def _save(path: Path, prepared: Prepared) -> None:
    arrays = {"table": prepared.lookup.vectors, "stems": prepared.lookup.stems}
    if prepared.lookup.chars is not None:
        arrays["chars"] = prepared.lookup.chars
    for name, split in prepared.splits.items():
        for key, value in asdict(split).items():
            arrays[f"{name}.{key}"] = value
    meta = {
        "layout": asdict(prepared.layout),
        "splits": list(prepared.splits),
        "token_count": prepared.token_count,
        "oov_count": prepared.oov_count,
        "oov_top": prepared.oov_top,
        "questions_cut": prepared.questions_cut,
        "fingerprint": prepared.fingerprint,
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def _load(path: Path) -> Prepared | None:
    try:
        with np.load(path) as archive:
            meta = json.loads(archive["meta"].tobytes())
            splits = {
                name: Split(
                    *(archive[f"{name}.{key}"] for key in ("ids", "q_len", "p_len", "labels"))
                )
                for name in meta["splits"]
            }
            table, stems = archive["table"], archive["stems"]
            chars = archive["chars"] if "chars" in archive.files else None
        layout = Layout(**meta["layout"])
        prepared = Prepared(
            layout,
            Lookup(table, stems, chars),
            splits,
            meta["token_count"],
            meta["oov_count"],
            [tuple(pair) for pair in meta["oov_top"]],
            meta["questions_cut"],
            meta["fingerprint"],
        )
        sound = (
            np.isfinite(table).all()
            and stems.shape == (len(table),)
            and (chars is None) == (layout.word_chars == 0)
            and (
                chars is None
                or chars.shape == (len(table), layout.word_chars)
                and chars.min(initial=0) >= 0
                and chars.max(initial=0) < CHAR_VOCABULARY
            )
            and all(
                split.ids.shape == (len(split), prepared.layout.steps)
                and split.ids.min(initial=0) >= 0
                and split.ids.max(initial=0) < len(table)
                for split in splits.values()
            )
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error):
        sound = False
    if not sound:  # a damaged cache entry is rebuilt, never trusted
        print(f"kboolq: the cache entry {path} is damaged; rebuilding it", file=sys.stderr)
        return None
    return prepared


def prepare(
    boolq: BoolQ,
    glove: Glove,
    cache_dir: Path,
    settings: LayoutSettings = LayoutSettings(),  # noqa: B008 (frozen)
) -> tuple[Prepared, bool]:
    """Encode every split as `settings` say, or reuse the cached result when data, vectors and
    settings match.

    Returns the result and whether it came from the cache.
    """
    key = fingerprint(boolq, glove, settings)
    path = Path(cache_dir) / "prepared" / f"{key}.npz"
    if path.exists():
        cached = _load(path)
        if cached is not None and cached.fingerprint == key:
            return cached, True
    prepared = encode(boolq.splits, glove, settings=settings)
    prepared = dataclasses.replace(prepared, fingerprint=key)
    cut = {name: n for name, n in prepared.questions_cut.items() if n}
    if cut:
        why = f"the {settings.question_percentile:g}th percentile of train questions"
        if prepared.layout.q_max == QUESTION_CEILING:
            why = "kboolq's ceiling, whatever the percentile"
        print(
            f"kboolq: questions longer than {prepared.layout.q_max} words ({why}) are cut to it: "
            + ", ".join(f"{n} {name} row{'s' * (n != 1)}" for name, n in cut.items()),
            file=sys.stderr,
        )
    if not np.isfinite(prepared.lookup.vectors).all():
        raise UserError(
            f"the vectors from {glove.source} hold NaN or infinite values; "
            "check the file, or delete the cache directory to convert it again"
        )
    _save(path, prepared)
    return prepared, False


def report(prepared: Prepared) -> str:
    layout = prepared.layout
    lines = ["rows: " + ", ".join(f"{n} {len(s)}" for n, s in prepared.splits.items())]
    lines.append(
        f"layout: q_max {layout.q_max} + separator {layout.separator} + p_max {layout.p_max}"
        f" = T {layout.steps}; table {len(prepared.lookup)} x {prepared.lookup.dim}"
        + (f"; {layout.word_chars} characters a word" if layout.word_chars else "")
    )
    share = prepared.oov_count / max(prepared.token_count, 1)
    lines.append(
        f"out of vocabulary: {prepared.oov_count} of {prepared.token_count} tokens ({share:.2%})"
    )
    lines.append("top OOV words: " + ", ".join(f"{w} ({c})" for w, c in prepared.oov_top))
    return "\n".join(lines)
