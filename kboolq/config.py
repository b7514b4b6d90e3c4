"""The hyperparameters: one frozen dataclass shared by the CLI, the tuner and the saved run."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kboolq.errors import UserError

ARCHITECTURES = ("seed", "bigru", "attention", "question_only", "majority")
CLASS_WEIGHTS = ("none", "balanced")


def _option(default: Any, flag: str, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"flag": flag, "help": help, **extra})


@dataclass(frozen=True)
class Config:
    arch: str = _option(
        "bigru", "--arch",
        "model: bigru (shared BiGRU encoders + pooling; the best on valid so far), seed (the "
        "notebook's 2-layer GRU over the whole layout), attention (BiGRU + passage-to-question "
        "attention), and the baselines question_only and majority",
        choices=ARCHITECTURES,
    )  # fmt: skip
    hidden_size: int = _option(256, "--hidden", "GRU and dense hidden units")
    dropout: float = _option(
        0.2, "--dropout", "dropout on the GRU inputs (seed) or before the dense head (others)"
    )
    embedding_dropout: float = _option(
        0.1, "--embedding-dropout", "share of whole word vectors dropped while training"
    )
    learning_rate: float = _option(1e-3, "--lr", "AdamW learning rate")
    weight_decay: float = _option(0.0, "--weight-decay", "AdamW decoupled weight decay")
    batch_size: int = _option(64, "--batch-size", "rows per training batch")
    max_epochs: int = _option(50, "--epochs", "maximum training epochs")
    patience: int = _option(
        5, "--patience", "epochs without a better valid balanced accuracy before stopping"
    )
    seed: int = _option(0, "--seed", "seed for weights, dropout and shuffling")
    class_weight: str = _option(
        "none", "--class-weight",
        "'balanced' weighs each class's loss by n / (2 n_class), so the rarer 'no' answers count "
        "as much as the 'yes' ones (what balanced accuracy rewards); 'none' weighs rows alike",
        choices=CLASS_WEIGHTS,
    )  # fmt: skip

    def __post_init__(self) -> None:
        problems = []
        if self.arch not in ARCHITECTURES:
            problems.append(f"--arch {self.arch!r}: choose from {', '.join(ARCHITECTURES)}")
        if self.class_weight not in CLASS_WEIGHTS:
            problems.append(
                f"--class-weight {self.class_weight!r}: choose from {', '.join(CLASS_WEIGHTS)}"
            )
        for name, low in (
            ("hidden_size", 1),
            ("batch_size", 1),
            ("max_epochs", 1),
            ("patience", 0),
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
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must not be negative, got {self.weight_decay}")
        if problems:
            raise UserError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown hyperparameters: {', '.join(unknown)}")
        return cls(**values)


def flag_of(name: str) -> str:
    return next(f.metadata["flag"] for f in dataclasses.fields(Config) if f.name == name)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per Config field (defaults shown in --help); `skip` leaves fields to the caller."""
    group = parser.add_argument_group("hyperparameters")
    for f in dataclasses.fields(Config):
        if f.name in skip:
            continue
        extra = {k: v for k, v in f.metadata.items() if k not in ("flag", "help")}
        group.add_argument(
            f.metadata["flag"],
            dest=f.name,
            type=type(f.default),
            default=f.default,
            help=f"{f.metadata['help']} (default: {f.default})",
            **extra,
        )


def config_from_args(args: argparse.Namespace) -> Config:
    names = [f.name for f in dataclasses.fields(Config) if hasattr(args, f.name)]
    return Config(**{name: getattr(args, name) for name in names})
