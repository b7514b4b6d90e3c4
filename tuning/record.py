"""What a grid directory was made from (GRID_DIR/grid.json), so that a re-run or a worker with
other data, vectors or settings is refused with what differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kboolq.errors import UserError
from kboolq.runs.migration import FORMAT, migrate_grid_record
from kboolq.runs.rundir import RunInfo

RECORD = "grid.json"  # what the grid directory was made from


def grid_record(info: RunInfo, grid: dict[str, list[Any]]) -> dict[str, Any]:
    fixed = {k: v for k, v in info.config.to_dict().items() if k not in grid}
    data = info.to_dict()["data"]
    return {
        "format": FORMAT,
        "data": data,
        "embeddings": info.to_dict()["embeddings"],
        "fixed": fixed,
        "axes": grid,
    }


def record_changes(old: dict[str, Any], new: dict[str, Any], same_axes: bool) -> list[str]:
    """What differs between two grid records: data, vectors and fixed settings always; the
    axes must be equal (`same_axes`) or may only gain values."""
    old = migrate_grid_record(old)

    def was(section: str, key: str) -> Any:
        return old.get(section, {}).get(key)

    changed = [
        f"{section}.{key}: {was(section, key)!r} -> {value!r}"
        for section in ("data", "embeddings", "fixed")
        for key, value in new[section].items()
        if was(section, key) != value
    ]
    old_axes, axes = old.get("axes", {}), new["axes"]
    if set(old_axes) != set(axes):
        changed.append(f"axes: {', '.join(old_axes)} -> {', '.join(axes)}")
    else:
        changed += [
            f"axes.{name}: {old_axes[name]} -> {values}" + ("" if same_axes else " drops values")
            for name, values in axes.items()
            if (old_axes[name] != values if same_axes else not set(old_axes[name]) <= set(values))
        ]
    return changed


def check_same_grid(grid_dir: Path, record: dict[str, Any]) -> None:
    """A grid directory continues only the grid it was made for: the same data, vectors and
    fixed settings, and axes that keep every value they had (new values add grid points)."""
    path = grid_dir / RECORD
    if not path.exists():
        return  # a new grid (grid.json is written before the first trial)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"{path}: unreadable ({exc}); pass --fresh to start the grid over"
        ) from None
    changed = record_changes(old, record, same_axes=False)
    if changed:
        raise UserError(
            f"--out {grid_dir}: holds a grid made from other settings ({'; '.join(changed)}); "
            "pass --fresh to start it over, or choose another --out"
        )


def is_grid(path: Path) -> bool:
    """A directory this command wrote: KerasTuner's project folder is in it."""
    return (path / "trials").is_dir()
