"""python -m kboolq.export RUN_DIR --format onnx --out DIR: the run as a portable ONNX model.

DIR gets model.onnx, which answers from token ids with the word vectors inside it (no GloVe file
needed), vocab.txt (the ids: line n is id n + 1; 0 is padding), manifest.json (the tokenizer
settings, the layout, the inputs and the threshold: enough to encode a question and a passage
exactly as kboolq does) and the run's model card, README.md.

The graph is traced from the run's own Keras model by torch.onnx (no hand-written graph): a thin
torch module in front of it builds kboolq's layout from the ids (questions cut to q_max, a
passage's tail beyond p_max averaged into its last position, stem classes looked up), which is
what kboolq.data.layout does on the host. A run that reads characters (--chars) also takes each
token's character ids, and its unknown words keep their places with ids of their own.

An ensemble whose members read different vectors takes ids over their joined vocabulary
(vocab.txt), with known.txt saying which members know each word: in the graph, each member
keeps only its own words (moved up, as kboolq's encoder skips the words a run lacks).

torch.onnx traces torch tensors, so the export runs on the torch backend: with KERAS_BACKEND
set to another one (jax), the command runs itself again in a child process on torch, which
loads the same .keras file (Keras's format is backend-agnostic) and writes the same files.
"""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import torch

import kboolq
from kboolq import reference
from kboolq.cli import (
    add_cache_argument,
    add_threads_argument,
    cache_dir,
    on_backend,
    run_command,
)
from kboolq.data.batches import CHARS, STEMS, WORDS, takes_chars, takes_stems
from kboolq.data.boolq import Row, load_boolq, parse_row, read_records
from kboolq.data.boolq import source_problem as boolq_source_problem
from kboolq.data.layout import (
    CHARACTERS,
    NO_TOKEN,
    NO_WORD,
    Layout,
    char_ids,
    stem_classes,
    word_ids,
)
from kboolq.data.tokens import TOKENIZER_VERSION, tokenize
from kboolq.errors import UserError
from kboolq.files import write_json, write_text
from kboolq.models import gru
from kboolq.runs.api import OpenMix, OpenRun, check_threshold, leaves, open_run
from kboolq.runs.outputs import Kind, claimed
from kboolq.runs.rundir import CARD_FILE, run_and_members
from kboolq.threads import set_threads

MANIFEST = "manifest.json"
EXPORT_FILES = (
    "model.onnx",
    "vocab.txt",
    MANIFEST,
    CARD_FILE,
    reference.FILE,
    reference.CHECK_FILE,
    reference.KNOWN_FILE,
)
CHECK_ROWS = 200  # rows of the run's valid split in check.jsonl, with kboolq's answers
EXAMPLES = [  # check.jsonl's rows when the run's data cannot be read here
    {"question": "is the sky blue", "passage": "The sky is blue on a clear day."},
    {"question": "do cats eat mice", "passage": "Cats hunt mice and birds (and eat them)."},
    {"question": "is paris in germany", "passage": "Paris is the capital of France, not Germany."},
    {"question": "can't a u.s. president serve three terms?",
     "passage": "The 22nd Amendment limits a president to two terms -- e.g. eight years."},
]  # fmt: skip
OPSET = 17
INPUTS = ("question", "passage", "lengths")
CHAR_INPUTS = ("question_chars", "passage_chars")  # a --chars run's: each token's characters
TAIL_STEM = -1  # the stem class of an averaged tail: one that no word has
TAIL_WORD = -1  # with --chars, the word code of an averaged tail: one that no word has


class TokenIds(torch.nn.Module):
    """P(yes) from token ids: question (B, Lq) and passage (B, Lp) int64 ids (vocabulary line +
    1; 0 pads), lengths (B, 2) int64 (each row's ids in question and passage) -> (B, 1).

    A model that reads characters also takes question_chars (B, Lq, W) and passage_chars
    (B, Lp, W), each token's character ids; its ids above the vocabulary are unknown words
    (the zero vector; equal ids for equal words)."""

    def __init__(self, model: keras.Model, layout: Layout, vectors, stems) -> None:
        super().__init__()
        self.model, self.layout = model, layout
        self.takes_stems, self.takes_chars = takes_stems(model), takes_chars(model)
        self.unknown = len(vectors) + 1  # ids from here on: unknown words (with characters)
        table = np.zeros((len(vectors) + 2, vectors.shape[1]), np.float32)  # last: unknown
        table[1 : self.unknown] = vectors
        self.register_buffer("table", torch.from_numpy(table))
        self.register_buffer("stems", torch.from_numpy(np.asarray(stems, np.int32)))

    def forward(self, question, passage, lengths, question_chars=None, passage_chars=None):
        q_max, p_max = self.layout.q_max, self.layout.p_max
        q_len = torch.clamp(lengths[:, 0], max=q_max)
        p_all = lengths[:, 1]
        q_ids = torch.nn.functional.pad(question, (0, q_max))[:, :q_max]
        device = question.device
        q_real = torch.arange(q_max, device=device) < q_len.unsqueeze(1)
        q_ids = q_ids * q_real
        passage = torch.nn.functional.pad(passage, (0, p_max))
        positions = torch.arange(passage.shape[1], device=device).unsqueeze(0)
        head_real = positions[:, : p_max - 1] < p_all.unsqueeze(1)
        head = passage[:, : p_max - 1] * head_real
        in_tail = (positions >= p_max - 1) & (positions < p_all.unsqueeze(1))  # (B, L)
        in_tail = in_tail & (passage < self.unknown)  # a tail averages its known words only
        weights = in_tail.to(torch.float32).unsqueeze(-1)
        rows = self.table[torch.clamp(passage, max=self.unknown)]
        tail = (rows * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        vectors = self._joined(
            self.table[torch.clamp(q_ids, max=self.unknown)],
            self.table[torch.clamp(head, max=self.unknown)],
            tail,
        )
        p_len = torch.clamp(p_all, max=p_max)
        inputs = {
            "vectors": vectors,
            "lengths": torch.stack([q_len, p_len], dim=1).to(torch.int32),
        }
        if self.takes_stems:
            last = self.stems[passage[:, p_max - 1]] * (p_all == p_max).to(torch.int32)
            last = torch.where(p_all > p_max, torch.full_like(last, TAIL_STEM), last)
            inputs[STEMS] = self._joined(self.stems[q_ids], self.stems[head], last)
        if self.takes_chars:
            inputs.update(self._words(question_chars, passage_chars, q_ids, q_real, head,
                                      head_real, passage, p_all))  # fmt: skip
        return self.model(inputs, training=False)

    def _joined(self, question, head, last):
        """The layout's T positions from its parts: the question (B, q_max, ...), the
        separator's zeros, the passage's first p_max - 1 positions and its last one (B, ...),
        a word or the averaged tail: the one place the graph lays a row out."""
        zeros = question.new_zeros((question.shape[0], self.layout.separator, *question.shape[2:]))
        return torch.cat([question, zeros, head, last.unsqueeze(1)], dim=1)

    def _words(self, question_chars, passage_chars, q_ids, q_real, head, head_real, passage, p_all):
        """The chars and words inputs: each distinct word of the batch once with its characters,
        and each position's row of them; words are told apart by id (one per known word, one
        per distinct unknown word), padding and separator are id 0, a tail has its own."""
        q_max, p_max, width = self.layout.q_max, self.layout.p_max, self.layout.word_chars
        q_chars = torch.nn.functional.pad(question_chars, (0, 0, 0, q_max))[:, :q_max]
        p_chars = torch.nn.functional.pad(passage_chars, (0, 0, 0, p_max))
        last_is_a_word = (p_all == p_max).unsqueeze(1)  # else padding (shorter) or a tail
        last_code = torch.where(
            p_all > p_max, torch.full_like(p_all, TAIL_WORD), passage[:, p_max - 1]
        ) * (p_all >= p_max)
        chars = self._joined(
            q_chars * q_real.unsqueeze(-1),
            p_chars[:, : p_max - 1] * head_real.unsqueeze(-1),
            p_chars[:, p_max - 1] * last_is_a_word,
        )  # (B, T, W)
        codes = self._joined(q_ids, head, last_code)  # (B, T)
        distinct, where = torch.unique(codes.flatten(), sorted=True, return_inverse=True)
        table = chars.new_zeros((distinct.shape[0], width))
        table = table.index_put((where,), chars.flatten(0, 1))  # equal codes: equal characters
        return {
            CHARS: table.to(torch.int32),
            WORDS: where.reshape(codes.shape).to(torch.int32),
        }


def compact(ids, length, mapping):
    """A member's ids from the export's (B, L) ids over the joined vocabulary: each id mapped
    to the member's own (`mapping`: 0 for a word the member lacks), the words it lacks removed
    and the rest moved up, as kboolq's encoder skips a member's unknown words; and how many are
    left per row (B,)."""
    width = ids.shape[1]
    real = torch.arange(width, device=ids.device).unsqueeze(0) < length.unsqueeze(1)
    mapped = mapping[ids]
    keep = (mapped > 0) & real
    target = torch.where(keep, torch.cumsum(keep.to(torch.int64), dim=1) - 1, width)
    moved = mapped.new_zeros((ids.shape[0], width + 1)).scatter(1, target, mapped * keep)
    return moved[:, :width], keep.sum(dim=1)


class MixIds(torch.nn.Module):
    """An ensemble whose members read different vectors, from ids over their joined
    vocabulary (the words any member has): each member (a TokenIds over its own vocabulary)
    reads its own words only, and P(yes) is the members' weighted mean (B, 1)."""

    def __init__(self, members: list[tuple[TokenIds, np.ndarray, float]]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList([member for member, _, _ in members])
        for k, (_, mapping, _) in enumerate(members):
            self.register_buffer(f"mapping_{k}", torch.from_numpy(mapping.astype(np.int64)))
        self.weights = [weight for _, _, weight in members]

    def forward(self, question, passage, lengths):
        total = None
        for k, member in enumerate(self.members):
            mapping = getattr(self, f"mapping_{k}")
            q_ids, q_len = compact(question, lengths[:, 0], mapping)
            p_ids, p_len = compact(passage, lengths[:, 1], mapping)
            p_yes = member(q_ids, p_ids, torch.stack([q_len, p_len], dim=1)) * self.weights[k]
            total = p_yes if total is None else total + p_yes
        return total


def joined_vocabulary(runs: list[OpenRun]) -> list[str]:
    """Every word some run's vectors have: the first run's in order, then each next run's new
    words (the export's vocab.txt for an ensemble over different vectors)."""
    words: dict[str, None] = {}
    for run in runs:
        words.update(dict.fromkeys(run.glove.words))
    return list(words)


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """FastGRU without host reads or sorts (the same numbers, a graph ONNX can express)."""
    trim, flag = dict(gru.TRIM_ON_HOST), gru.EXPORTING
    gru.TRIM_ON_HOST.update(cpu=False, cuda=False)
    gru.EXPORTING = True
    try:
        yield
    finally:
        gru.TRIM_ON_HOST.update(trim)
        gru.EXPORTING = flag


def token_ids(
    rows: Sequence[Row], index: dict[str, int], accents: str, word_chars: int = 0
) -> dict[str, np.ndarray]:
    """The ONNX model's inputs for `rows`: kboolq's tokens, words outside the vocabulary
    skipped (as kboolq does), ids = vocabulary position + 1. A part without a known word is a
    UserError naming the row. With `word_chars` (a run that reads characters) every token is
    kept: an unknown word gets an id above the vocabulary, the same for the same word, and
    question_chars / passage_chars hold each token's first `word_chars` character ids."""
    parts: dict[str, list[list[int]]] = {"question": [], "passage": []}
    chars: dict[str, list[list[list[int]]]] = {"question": [], "passage": []}
    unknown: dict[str, int] = {}
    for row in rows:
        for what, text in (("question", row.question), ("passage", row.passage)):
            tokens = tokenize(text, accents)
            # the encoder's rule; the graph's ids: vocabulary line + 1, unknown words after it
            ids = [
                i + 1 if i >= 0 else len(index) - 1 - i
                for i in word_ids(tokens, index, unknown if word_chars else None)
            ]
            if not ids:
                problem = NO_TOKEN if word_chars else NO_WORD
                raise UserError(f"{row.where}: {problem.format(what=what)}")
            parts[what].append(ids)
            chars[what].append([char_ids(t, word_chars) for t in tokens])
    arrays = {}
    for what, lists in parts.items():
        longest = max(map(len, lists))
        array = np.zeros((len(lists), longest), np.int64)
        for i, ids in enumerate(lists):
            array[i, : len(ids)] = ids
        arrays[what] = array
        if word_chars:
            table = np.zeros((len(lists), longest, word_chars), np.int64)
            for i, token_chars in enumerate(chars[what]):
                table[i, : len(token_chars)] = token_chars
            arrays[f"{what}_chars"] = table
    arrays["lengths"] = np.array(
        [[len(q), len(p)] for q, p in zip(parts["question"], parts["passage"], strict=True)],
        np.int64,
    ).reshape(-1, 2)
    return arrays


def manifest(run: OpenRun | OpenMix, inputs: list[str], threshold: float) -> dict:
    info = run.info
    layout = info.layout
    found = {
        "format": 1,
        "kboolq_version": kboolq.__version__,
        "model": "model.onnx",
        "inputs": {
            "question": "int64 (batch, any): the question's token ids, 0-padded",
            "passage": "int64 (batch, any): the passage's token ids, 0-padded",
            "lengths": "int64 (batch, 2): each row's number of question and passage ids",
            **(
                {
                    f"{part}_chars": f"int64 (batch, as {part}, {layout.word_chars}): each "
                    f"token's first {layout.word_chars} character ids, 0-padded"
                    for part in ("question", "passage")
                }
                if layout.word_chars
                else {}
            ),
        },
        "graph_inputs": inputs,  # the ones this graph reads (a baseline may read fewer)
        "output": "p_yes: float32 (batch, 1), P(answer is yes)",
        "threshold": threshold,
        "vocabulary": {
            "file": "vocab.txt",
            "ids": "a word's id is its line number in vocab.txt (from 0) plus 1; 0 pads",
            "unknown_words": (
                "kept, each distinct one with an id above the vocabulary's, the same for the "
                "same word (kboolq.export.token_ids gives len(vocab) + 1, + 2, ... as met); a "
                "question or passage with no word is refused"
                if layout.word_chars
                else "skipped; a question or passage with no known word is refused"
            ),
            **(
                {
                    "characters": CHARACTERS,
                    "character_ids": "a character's position in "
                    "'characters' plus 1; any other character: len(characters) + 1; 0 pads",
                }
                if layout.word_chars
                else {}
            ),  # fmt: skip
        },
        "tokenizer": {
            "version": TOKENIZER_VERSION,
            "file": reference.FILE,
            "steps": [
                f"accents: {info.data.accents} ('fold': NFKD, combining marks removed; "
                "'drop': kept, then lost in the ASCII step)",
                "lower-case, then keep ASCII characters only",
                "nltk's word_tokenize(text, preserve_line=True): its regular expressions, "
                f"written out in {reference.FILE}",
                "a final '.' removed from a token of 2 or more characters that holds no other '.'",
                "tokens made of punctuation only dropped",
            ],
            "reference": f"{reference.FILE}: tokenize(text) and encode(rows, vocabulary) on "
            f"Python's standard library; `python {reference.FILE}` checks model.onnx against "
            f"kboolq's answers in {reference.CHECK_FILE}",
        },
        "layout": {
            "q_max": info.layout.q_max,
            "p_max": info.layout.p_max,
            "separator": info.layout.separator,
            "word_chars": info.layout.word_chars,
            "inside_the_graph": "questions cut to q_max; a passage's ids from position "
            "p_max - 1 on averaged into one vector",
        },
        "vectors": {"source": info.vectors.source, "dim": info.vectors.dim},
        "hyperparameters": info.config.to_dict(),
    }
    if isinstance(run, OpenMix):
        return _mix_manifest(found, run)
    return found


def _mix_manifest(found: dict, run: OpenMix) -> dict:
    """The manifest of an ensemble over different vectors: ids over their joined vocabulary,
    which members know each word, and each member's own layout, vectors and settings."""
    members = leaves(run)
    found["vocabulary"]["ids"] += " (vocab.txt: every word some member's vectors have)"
    found["vocabulary"]["unknown_words"] = (
        f"skipped; {reference.KNOWN_FILE}'s line n says which members know word n (a 1 or 0 "
        "per member, in the order of 'members'): a question or passage with no word some "
        "member knows is refused"
    )
    found["layout"] = {
        "inside_the_graph": "each member reads only the words it knows, in order (the others "
        "removed), then its own layout: questions cut to its q_max, a passage's ids from its "
        "position p_max - 1 on averaged into one vector; P(yes) is the members' weighted mean",
    }
    found["members"] = [
        {
            "weight": weight,
            "vectors": {"source": member.info.vectors.source, "dim": member.info.vectors.dim},
            "layout": {
                k: getattr(member.info.layout, k)
                for k in ("q_max", "p_max", "separator", "word_chars")
            },
            "hyperparameters": member.info.config.to_dict(),
        }  # fmt: skip
        for member, weight in members
    ]
    del found["vectors"], found["hyperparameters"]
    return found


def graph_of(run: OpenRun | OpenMix) -> tuple[torch.nn.Module, list[str]]:
    """The torch module to trace, and its vocabulary (vocab.txt's words)."""
    if isinstance(run, OpenRun):
        stems = stem_classes(run.glove.words, 0)  # [0 (padding), a class per word's stem]
        vectors = np.asarray(run.glove.vectors)
        return TokenIds(run.model, run.info.layout, vectors, stems).eval(), run.glove.words
    members = leaves(run)
    words = joined_vocabulary([member for member, _ in members])
    parts = []
    for member, weight in members:
        mapping = np.zeros(len(words) + 1, np.int64)  # joined id -> the member's id (0: none)
        index = member.glove.index
        mapping[1:] = [index[word] + 1 if word in index else 0 for word in words]
        module, _ = graph_of(member)
        parts.append((module, mapping, weight))
    return MixIds(parts).eval(), words


def export_onnx(run: OpenRun | OpenMix, work: Path) -> list[str]:
    """model.onnx and vocab.txt into `work`; returns the graph's input names."""
    module, words = graph_of(run)
    word_chars = run.info.layout.word_chars
    example = token_ids(
        [Row("is the sky blue", "the sky is blue today", 1, "example")],
        {word: i for i, word in enumerate(words)},
        run.info.data.accents,
        word_chars,
    )
    names = [*INPUTS, *(CHAR_INPUTS if word_chars else ())]
    weights = [w for member, _ in leaves(run) for w in member.model.weights]
    device = weights[0].value.device if weights else torch.device("cpu")
    module = module.to(device)  # where Keras put the weights (a GPU, when there is one)
    args = tuple(torch.from_numpy(example[name]).to(device) for name in names)
    # weights the tracer does not reach as the module's parameters (an ensemble's members)
    # become constants of the graph, which it accepts only without gradients
    for variable in weights:
        variable.value.requires_grad_(False)
    axes = {"question": {0: "batch", 1: "question_ids"}, "passage": {0: "batch", 1: "passage_ids"}}
    axes |= {f"{part}_chars": {0: "batch", 1: f"{part}_ids"} for part in ("question", "passage")}
    with exporting(), torch.no_grad(), warnings.catch_warnings():
        # torch warns about GRUs of variable length in general; ours start from zeros of the
        # batch's own size, and the parity tests run batches of 1 to 200 rows
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(work / "model.onnx"),
            input_names=names,
            output_names=["p_yes"],
            dynamic_axes={
                **{name: axes[name] for name in names if name in axes},
                "lengths": {0: "batch"},
                "p_yes": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    write_text(work / "vocab.txt", "".join(f"{word}\n" for word in words))
    if isinstance(run, OpenMix):  # which members know each word: a part none reads is refused
        knows = [member.glove.index for member, _ in leaves(run)]
        write_text(
            work / reference.KNOWN_FILE,
            "".join("".join("1" if w in k else "0" for k in knows) + "\n" for w in words),
        )
    import onnx

    graph = onnx.load(str(work / "model.onnx"), load_external_data=False).graph
    return [tensor.name for tensor in graph.input]


def write_check(run: OpenRun | OpenMix, path: Path, given: Path | None = None) -> None:
    """check.jsonl: the rows of `given` (a JSONL file), else up to CHECK_ROWS rows of the run's
    valid split (EXAMPLES when its data cannot be read here), each with kboolq's own P(yes),
    for checking a tokenizer against."""
    data = run.info.data
    rows = [dict(example) for example in EXAMPLES]
    if given is not None:
        rows = [{"question": r.question, "passage": r.passage}
                for r in (parse_row(record, where, labelled=False)
                          for record, where in read_records(given))]  # fmt: skip
    elif boolq_source_problem(data.source) is None:
        valid = load_boolq(data.source, data.valid_size).splits["valid"]
        rows = [{"question": r.question, "passage": r.passage} for r in valid]
    else:
        print(f"kboolq.export: {data.source} cannot be read here; check.jsonl holds "
              f"{len(EXAMPLES)} example rows", file=sys.stderr)  # fmt: skip
    answerable = [
        row for i, row in enumerate(rows)
        if run.problem(parse_row(row, f"row {i}", labelled=False)) is None
    ][: None if given is not None else CHECK_ROWS]  # fmt: skip
    answers = run.predict(answerable)
    write_text(path, "".join(json.dumps({**row, "p_yes": float(p)}) + "\n"
                             for row, p in zip(answerable, answers, strict=True)))  # fmt: skip


def check_mix(run: OpenMix, run_dir: Path) -> None:
    """An ensemble over different vectors is exported over their joined vocabulary, through one
    tokenizer: its members must tokenize alike and read words, not characters."""
    members = leaves(run)
    accents = {member.info.data.accents for member, _ in members}
    if len(accents) > 1:
        raise UserError(
            f"{run_dir}: its members tokenize with --accents {' and '.join(sorted(accents))}; "
            "an export ships one tokenizer: serve this ensemble with kboolq.serve"
        )
    if any(member.info.layout.word_chars for member, _ in members):
        raise UserError(
            f"{run_dir}: a member reads characters (--chars) and its members read different "
            "vectors; the export of such a mix is not supported: serve it with kboolq.serve"
        )


def is_export(path: Path) -> bool:
    return (Path(path) / MANIFEST).exists() and (Path(path) / "model.onnx").exists()


EXPORT = Kind("export", is_export, lambda name: name in EXPORT_FILES)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kboolq.export",
        description="Write a trained run (or ensemble) as a portable model: --format onnx "
        "gives model.onnx (the word vectors inside; inputs: token ids), vocab.txt, "
        "manifest.json (tokenizer, layout, threshold) and the model card README.md.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    p.add_argument(
        "--format", choices=("onnx",), default="onnx", help="what to write (default: onnx)"
    )
    p.add_argument("--out", type=Path, required=True, help="the directory to write")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="the P(yes) from which the manifest says 'yes' (default: %(default)s)",
    )
    p.add_argument(
        "--check", type=Path, metavar="JSONL",
        help=f"rows (question and passage per line) to write into {reference.CHECK_FILE} with "
        "kboolq's answers, which `python tokenizer.py` in the export compares model.onnx "
        f"with (default: {CHECK_ROWS} rows of the run's valid split)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    add_cache_argument(p)
    add_threads_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_threshold(args.threshold)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("--format onnx needs pip install 'kboolq[export]'") from None
    set_threads(args.threads)
    run = open_run(args.run_dir, cache_dir(args))
    if isinstance(run, OpenMix):
        check_mix(run, args.run_dir)
    elif run.info.layout.word_chars and takes_stems(run.model):
        raise UserError(  # stem classes of unknown words come from their text, not ids
            f"{args.run_dir} reads characters (--chars) and stems (--exact-match stem): its "
            "unknown words' stem classes cannot be passed to the ONNX graph; serve it with "
            "kboolq.serve"
        )
    protect = run_and_members(args.run_dir)
    if keras.backend.backend() != "torch":  # every refusal said here; torch.onnx traces
        with claimed(args.out, EXPORT, args.overwrite, protect=protect):
            pass  # in a child on the torch backend, once this lock is free
        return on_backend("torch", "kboolq.export", argv)
    with (
        claimed(args.out, EXPORT, args.overwrite, protect=protect) as claim,
        claim.staged() as work,
    ):
        inputs = export_onnx(run, work)
        write_json(work / MANIFEST, manifest(run, inputs, args.threshold))
        layout = run.info.layout
        write_text(
            work / reference.FILE, reference.source(run.info.data.accents, layout.word_chars)
        )
        write_check(run, work / reference.CHECK_FILE, args.check)
        card = Path(args.run_dir) / CARD_FILE
        if card.exists():
            write_text(work / CARD_FILE, card.read_text())
    out = claim.path
    size = (out / "model.onnx").stat().st_size / 2**20
    print(f"exported {args.run_dir} to {out}: model.onnx ({size:.1f} MiB), vocab.txt, {MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.export")())
