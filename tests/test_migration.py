"""kboolq.runs.migration: the one place that reads older config.json and grid.json formats."""

import json
import re
from pathlib import Path

import pytest

from kboolq.errors import UserError
from kboolq.runs import migration
from kboolq.runs.rundir import read_info
from tuning.record import record_changes

OLD_RUN = Path(__file__).parent / "data" / "runs" / "format1-bigru"
PACKAGES = Path(__file__).parent.parent


def test_a_format_1_run_reads_with_the_values_it_was_made_with(tmp_path):
    raw = json.loads((OLD_RUN / "config.json").read_text())
    assert raw["format"] == 1 and "ema" not in raw["hyperparameters"]
    migrated = migration.migrate_run(raw, OLD_RUN / "config.json")
    assert migrated["format"] == migration.FORMAT == 5
    assert (migrated["distillation"], migrated["held_out"]) == (None, None)
    hyper, data = migrated["hyperparameters"], migrated["data"]
    assert hyper["batching"] == "random"
    assert (hyper["ema"], hyper["lr_plateau"], hyper["exact_match"]) == (0.0, 0, "off")
    assert (hyper["chars"], migrated["layout"]["word_chars"]) == (0, 0)
    assert (data["passage_percentile"], data["accents"]) == (99.0, "drop")
    assert hyper["hidden_size"] == raw["hyperparameters"]["hidden_size"]  # kept as written
    assert migration.migrate_run(migrated, OLD_RUN) == migrated  # today's format: unchanged
    info = read_info(OLD_RUN)
    assert (info.config.ema, info.data.question_percentile) == (0.0, 100.0)


def test_a_key_written_in_format_1_wins_over_the_fill():
    raw = {"format": 1, "hyperparameters": {"ema": 0.5}, "data": {"accents": "fold"}}
    migrated = migration.migrate_run(raw, Path("c.json"))
    assert migrated["hyperparameters"]["ema"] == 0.5 and migrated["data"]["accents"] == "fold"


def test_a_format_2_run_reads_without_characters(trained, tmp_path):
    run, _ = trained
    raw = json.loads((run / "config.json").read_text())
    assert raw["format"] == 5 and raw["hyperparameters"]["chars"] == 0
    del raw["hyperparameters"]["chars"], raw["layout"]["word_chars"], raw["held_out"]
    path = tmp_path / "config.json"
    migrated = migration.migrate_run({**raw, "format": 2}, path)
    assert migrated["hyperparameters"]["chars"] == 0 and migrated["layout"]["word_chars"] == 0
    assert migrated == {**raw, "format": 5, "held_out": None,
                        "hyperparameters": {**raw["hyperparameters"], "chars": 0},
                        "layout": {**raw["layout"], "word_chars": 0}}  # fmt: skip
    with pytest.raises(UserError) as error:  # today's format: every key, read strictly
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.json").write_text(json.dumps(raw))
        read_info(tmp_path / "run")
    assert str(error.value).endswith("missing hyperparameters: chars")


def test_a_format_3_run_reads_as_trained_on_every_train_row(trained, tmp_path):
    run, _ = trained
    raw = json.loads((run / "config.json").read_text())
    assert raw["held_out"] is None
    del raw["held_out"]
    migrated = migration.migrate_run({**raw, "format": 3}, tmp_path / "config.json")
    assert migrated == {**raw, "format": 5, "held_out": None}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(raw))  # format 5 lacking the key
    with pytest.raises(UserError) as error:
        read_info(tmp_path / "run")
    assert str(error.value) == f"{tmp_path / 'run' / 'config.json'}: key 'held_out' is missing"


def test_a_format_4_run_reads_as_trained_on_randomly_dealt_batches(trained, tmp_path):
    run, _ = trained
    raw = json.loads((run / "config.json").read_text())
    raw["hyperparameters"]["batching"] = "length"
    migrated = migration.migrate_run(raw, tmp_path / "config.json")
    assert migrated["hyperparameters"]["batching"] == "length"  # today's format: as written
    del raw["hyperparameters"]["batching"]
    migrated = migration.migrate_run({**raw, "format": 4}, tmp_path / "config.json")
    assert migrated == {
        **raw,
        "format": 5,
        "hyperparameters": {**raw["hyperparameters"], "batching": "random"},
    }


@pytest.mark.parametrize("raw", [{"format": 6}, {"format": "2"}, {}, [1], None])
def test_an_unknown_run_format_is_refused_naming_the_file(raw):
    with pytest.raises(UserError) as error:
        migration.migrate_run(raw, Path("run/config.json"))
    found = raw.get("format") if isinstance(raw, dict) else None
    assert str(error.value) == (
        f"run/config.json: run format {found!r}, this kboolq reads formats 1 to 5"
    )


def test_a_grid_record_without_format_compares_with_the_values_it_was_made_with():
    today = {
        "format": 5,
        "data": {"source": "/d", "accents": "drop", "passage_percentile": 99.0},
        "embeddings": {"source": "kumo50"},
        "fixed": {
            "hidden_size": 8,
            "ema": 0.0,
            "exact_match": "off",
            "chars": 0,
            "batching": "random",
        },
        "axes": {"lr": [0.001]},
    }
    old = {
        "data": {"source": "/d"},
        "embeddings": {"source": "kumo50"},
        "fixed": {"hidden_size": 8},
        "axes": {"lr": [0.001]},
    }
    assert record_changes(old, today, same_axes=True) == []
    changed = {**today, "fixed": {**today["fixed"], "ema": 0.99}}
    assert record_changes(old, changed, same_axes=True) == ["fixed.ema: 0.0 -> 0.99"]
    assert record_changes(changed, today, same_axes=True) == ["fixed.ema: 0.99 -> 0.0"]
    format_2 = {**today, "format": 2, "fixed": {"hidden_size": 8, "ema": 0.0, "exact_match": "off"}}
    assert record_changes(format_2, today, same_axes=True) == []
    with_chars = {**today, "fixed": {**today["fixed"], "chars": 50}}
    assert record_changes(format_2, with_chars, same_axes=True) == ["fixed.chars: 0 -> 50"]
    format_4 = {**today, "format": 4, "fixed": {k: v for k, v in today["fixed"].items()
                                                if k != "batching"}}  # fmt: skip
    by_length = {**today, "fixed": {**today["fixed"], "batching": "length"}}
    assert record_changes(format_4, by_length, same_axes=True) == [
        "fixed.batching: 'random' -> 'length'"
    ]


def test_no_module_but_migration_knows_the_old_formats_values():
    """The older formats' fill values appear in kboolq.runs.migration only (one place)."""
    pattern = re.compile(r"FORMAT_[1-4]_|BEFORE_SETTING|\"format\"\) != 1|format == 1")
    knowing = sorted(
        str(path.relative_to(PACKAGES))
        for folder in ("kboolq", "tuning")
        for path in (PACKAGES / folder).rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert knowing == ["kboolq/runs/migration.py"]
