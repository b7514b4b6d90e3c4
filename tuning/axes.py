"""The grid's axes: the notebook's default grid, and axes from flags (V,V,...) or a TOML/JSON
file, every one checked against the Config field it sets before any training."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tomllib
from pathlib import Path
from typing import Any

from kboolq.config import Config, flag_of
from kboolq.errors import UserError

# The notebook's W&B sweep: 3 x 3 x 3 x 3 = 81 configurations.
DEFAULT_GRID: dict[str, list[Any]] = {
    "hidden_size": [128, 256, 512],
    "dropout": [0.0, 0.1, 0.2],
    "learning_rate": [1e-3, 1e-4, 1e-5],
    "weight_decay": [0.0, 0.1, 0.01],
}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}  # every hyperparameter may be an axis


def _kind(name: str) -> type:
    return type(FIELDS[name].default)


def parse_axis(name: str, text: str) -> list[Any]:
    kind = _kind(name)
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(kind(item))
        except ValueError:
            raise UserError(f"{flag_of(name)}: {item!r} is not a {kind.__name__}") from None
    return values


def read_grid_file(path: Path) -> dict[str, list[Any]]:
    """A TOML or JSON table of axis -> list of values; axes by field name or flag."""
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as exc:
        raise UserError(f"--grid {path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(
            f"--grid {path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({exc})"
        ) from None
    if not isinstance(raw, dict):
        raise UserError(f"--grid {path}: expected a table of axis = [values]")
    by_flag = {flag_of(name).lstrip("-"): name for name in FIELDS}
    grid = {}
    for key, values in raw.items():
        name = by_flag.get(key, key)
        if name not in FIELDS:
            raise UserError(f"--grid {path}: unknown axis {key!r} (axes: {', '.join(FIELDS)})")
        if not isinstance(values, list) or not values:
            raise UserError(f"--grid {path}: axis {key!r} needs a non-empty list of values")
        grid[name] = [_check_type(name, value, path) for value in values]
    return grid


def _check_type(name: str, value: Any, path: Path) -> Any:
    kind = _kind(name)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int and not (numeric and float(value).is_integer()):
        raise UserError(f"--grid {path}: axis {name!r} takes integers, got {value!r}")
    if kind is float and not numeric:
        raise UserError(f"--grid {path}: axis {name!r} takes numbers, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise UserError(f"--grid {path}: axis {name!r} takes {kind.__name__}s, got {value!r}")
    return kind(value)


def settings_from_args(args: argparse.Namespace) -> tuple[Config, dict[str, list[Any]]]:
    """The fixed hyperparameters and the grid axes, checked before any training."""
    grid = dict(DEFAULT_GRID)
    if args.grid is not None:
        grid.update(read_grid_file(args.grid))
    fixed = {}
    for name in FIELDS:
        text = getattr(args, f"axis_{name}")
        if text is None:
            continue
        values = parse_axis(name, text)
        if len(values) == 1 and name not in grid:
            fixed[name] = values[0]
        else:
            grid[name] = values
    base = Config(**fixed)
    for name, values in grid.items():
        for value in values:
            dataclasses.replace(base, **{name: value})  # range errors before any training
    return base, grid


def grid_size(grid: dict[str, list[Any]]) -> int:
    return len(list(itertools.product(*grid.values())))
