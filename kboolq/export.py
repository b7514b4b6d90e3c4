"""python -m kboolq.export RUN_DIR --format onnx --out DIR: the run as a portable ONNX model.

DIR gets model.onnx, which answers from token ids with the word vectors inside it (no GloVe file
needed), vocab.txt (the ids: line n is id n + 1; 0 is padding), manifest.json (the tokenizer
settings, the layout, the inputs and the threshold: enough to encode a question and a passage
exactly as kboolq does) and the run's model card, README.md.

The graph is traced from the run's own Keras model by torch.onnx (no hand-written graph): a thin
torch module in front of it builds kboolq's layout from the ids (questions cut to q_max, a
passage's tail beyond p_max averaged into its last position, stem classes looked up), which is
what kboolq.data.layout does on the host.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np
import torch

import kboolq
from kboolq.api import OpenRun, open_run
from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.batches import STEMS, takes_stems
from kboolq.data.boolq import Row
from kboolq.data.layout import NO_WORD, Layout, stem_classes
from kboolq.data.tokens import TOKENIZER_VERSION, tokenize
from kboolq.errors import UserError
from kboolq.files import write_json, write_text
from kboolq.models import gru
from kboolq.outputs import claim_output, lock_output
from kboolq.staging import recover, remove_leftovers, staged, write_target
from kboolq.threads import set_threads

MANIFEST = "manifest.json"
EXPORT_FILES = ("model.onnx", "vocab.txt", MANIFEST, "README.md")
OPSET = 17
INPUTS = ("question", "passage", "lengths")
TAIL_STEM = -1  # the stem class of an averaged tail: one that no word has


class TokenIds(torch.nn.Module):
    """P(yes) from token ids: question (B, Lq) and passage (B, Lp) int64 ids (vocabulary line +
    1; 0 pads), lengths (B, 2) int64 (each row's ids in question and passage) -> (B, 1)."""

    def __init__(self, model: keras.Model, layout: Layout, vectors, stems) -> None:
        super().__init__()
        self.model, self.layout = model, layout
        self.takes_stems = takes_stems(model)
        table = np.zeros((len(vectors) + 1, vectors.shape[1]), np.float32)
        table[1:] = vectors
        self.register_buffer("table", torch.from_numpy(table))
        self.register_buffer("stems", torch.from_numpy(np.asarray(stems, np.int32)))

    def forward(self, question, passage, lengths):
        q_max, p_max = self.layout.q_max, self.layout.p_max
        batch = question.shape[0]
        q_len = torch.clamp(lengths[:, 0], max=q_max)
        p_all = lengths[:, 1]
        q_ids = torch.nn.functional.pad(question, (0, q_max))[:, :q_max]
        device = question.device
        q_ids = q_ids * (torch.arange(q_max, device=device) < q_len.unsqueeze(1))
        passage = torch.nn.functional.pad(passage, (0, p_max))
        positions = torch.arange(passage.shape[1], device=device).unsqueeze(0)
        head = passage[:, : p_max - 1] * (positions[:, : p_max - 1] < p_all.unsqueeze(1))
        in_tail = (positions >= p_max - 1) & (positions < p_all.unsqueeze(1))  # (B, L)
        weights = in_tail.to(torch.float32).unsqueeze(-1)
        tail = (self.table[passage] * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        separator = self.table.new_zeros((batch, self.layout.separator, self.table.shape[1]))
        vectors = torch.cat(
            [self.table[q_ids], separator, self.table[head], tail.unsqueeze(1)], dim=1
        )
        p_len = torch.clamp(p_all, max=p_max)
        inputs = {
            "vectors": vectors,
            "lengths": torch.stack([q_len, p_len], dim=1).to(torch.int32),
        }
        if self.takes_stems:
            last = self.stems[passage[:, p_max - 1]] * (p_all == p_max).to(torch.int32)
            last = torch.where(p_all > p_max, torch.full_like(last, TAIL_STEM), last)
            zeros = self.stems.new_zeros((batch, self.layout.separator))
            inputs[STEMS] = torch.cat(
                [self.stems[q_ids], zeros, self.stems[head], last.unsqueeze(1)], dim=1
            )
        return self.model(inputs, training=False)


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


def token_ids(rows: Sequence[Row], index: dict[str, int], accents: str) -> dict[str, np.ndarray]:
    """The ONNX model's inputs for `rows`: kboolq's tokens, words outside the vocabulary
    skipped (as kboolq does), ids = vocabulary position + 1. A part without a known word is a
    UserError naming the row."""
    parts: dict[str, list[list[int]]] = {"question": [], "passage": []}
    for row in rows:
        for what, text in (("question", row.question), ("passage", row.passage)):
            ids = [index[t] + 1 for t in tokenize(text, accents) if t in index]
            if not ids:
                raise UserError(f"{row.where}: {NO_WORD.format(what=what)}")
            parts[what].append(ids)
    arrays = {}
    for what, lists in parts.items():
        array = np.zeros((len(lists), max(map(len, lists))), np.int64)
        for i, ids in enumerate(lists):
            array[i, : len(ids)] = ids
        arrays[what] = array
    arrays["lengths"] = np.array(
        [[len(q), len(p)] for q, p in zip(parts["question"], parts["passage"], strict=True)],
        np.int64,
    ).reshape(-1, 2)
    return arrays


def manifest(run: OpenRun, inputs: list[str], threshold: float) -> dict:
    info = run.info
    return {
        "format": 1,
        "kboolq_version": kboolq.__version__,
        "model": "model.onnx",
        "inputs": {
            "question": "int64 (batch, any): the question's token ids, 0-padded",
            "passage": "int64 (batch, any): the passage's token ids, 0-padded",
            "lengths": "int64 (batch, 2): each row's number of question and passage ids",
        },
        "graph_inputs": inputs,  # the ones this graph reads (a baseline may read fewer)
        "output": "p_yes: float32 (batch, 1), P(answer is yes)",
        "threshold": threshold,
        "vocabulary": {
            "file": "vocab.txt",
            "ids": "a word's id is its line number in vocab.txt (from 0) plus 1; 0 pads",
            "unknown_words": "skipped; a question or passage with no known word is refused",
        },
        "tokenizer": {
            "version": TOKENIZER_VERSION,
            "steps": [
                f"accents: {info.data.accents} ('fold': NFKD, combining marks removed; "
                "'drop': kept, then lost in the ASCII step)",
                "lower-case, then keep ASCII characters only",
                "nltk.tokenize.word_tokenize(text, preserve_line=True)",
                "drop tokens made of punctuation only",
                "split a final '.' off a token that has no other '.'",
            ],
            "reference": "kboolq.data.tokens.tokenize(text, accents)",
        },
        "layout": {
            "q_max": info.layout.q_max,
            "p_max": info.layout.p_max,
            "separator": info.layout.separator,
            "inside_the_graph": "questions cut to q_max; a passage's ids from position "
            "p_max - 1 on averaged into one vector",
        },
        "vectors": {"source": info.vectors.source, "dim": info.vectors.dim},
        "hyperparameters": info.config.to_dict(),
    }


def export_onnx(run: OpenRun, work: Path) -> list[str]:
    """model.onnx and vocab.txt into `work`; returns the graph's input names."""
    glove = run.glove
    stems = stem_classes(glove.words, 0)  # [0 (padding), a class per word's stem]
    module = TokenIds(run.model, run.info.layout, np.asarray(glove.vectors), stems).eval()
    example = token_ids(
        [Row("is the sky blue", "the sky is blue today", 1, "example")],
        glove.index,
        run.info.data.accents,
    )
    device = run.model.weights[0].value.device if run.model.weights else torch.device("cpu")
    module = module.to(device)  # where Keras put the weights (a GPU, when there is one)
    args = tuple(torch.from_numpy(example[name]).to(device) for name in INPUTS)
    # weights the tracer does not reach as the module's parameters (an ensemble's members)
    # become constants of the graph, which it accepts only without gradients
    for variable in run.model.weights:
        variable.value.requires_grad_(False)
    axes = {"question": {0: "batch", 1: "question_ids"}, "passage": {0: "batch", 1: "passage_ids"}}
    with exporting(), torch.no_grad(), warnings.catch_warnings():
        # torch warns about GRUs of variable length in general; ours start from zeros of the
        # batch's own size, and the parity tests run batches of 1 to 200 rows
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(work / "model.onnx"),
            input_names=list(INPUTS),
            output_names=["p_yes"],
            dynamic_axes={**axes, "lengths": {0: "batch"}, "p_yes": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    write_text(work / "vocab.txt", "".join(f"{word}\n" for word in glove.words))
    import onnx

    graph = onnx.load(str(work / "model.onnx"), load_external_data=False).graph
    return [tensor.name for tensor in graph.input]


def is_export(path: Path) -> bool:
    return (Path(path) / MANIFEST).exists() and (Path(path) / "model.onnx").exists()


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
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    add_cache_argument(p)
    add_threads_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold must be from 0 to 1, got {args.threshold}")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("--format onnx needs pip install 'kboolq[export]'") from None
    run = open_run(args.run_dir, cache_dir(args))
    if run.info.layout.word_chars:  # the graph takes GloVe ids; unknown words have none
        raise UserError(
            f"{args.run_dir} reads characters (--chars): its unknown words need character ids, "
            "which the ONNX export's inputs do not carry yet; serve it with kboolq.serve"
        )
    out = write_target(args.out)
    with lock_output(out):
        recover(out)
        claim_output(out, "export", is_export, args.overwrite, protect=[args.run_dir])
        remove_leftovers(out)
        with staged(out, lambda name: name in EXPORT_FILES) as work:
            inputs = export_onnx(run, work)
            write_json(work / MANIFEST, manifest(run, inputs, args.threshold))
            card = Path(args.run_dir) / "README.md"
            if card.exists():
                write_text(work / "README.md", card.read_text())
    size = (out / "model.onnx").stat().st_size / 2**20
    print(f"exported {args.run_dir} to {out}: model.onnx ({size:.1f} MiB), vocab.txt, {MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.export")())
