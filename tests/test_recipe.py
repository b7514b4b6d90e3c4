"""The training recipe's parts: seed ensembles (fit --seeds), their spread, weight averaging,
learning-rate reduction and the input options (exact match, accent folding)."""

import dataclasses
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import fixture_args

from kboolq import ensemble, evaluate, fit, load_run
from kboolq.config import Config, DataSettings
from kboolq.data.batches import takes_stems
from kboolq.data.tokens import tokenize
from kboolq.errors import UserError
from kboolq.evaluation import spread
from kboolq.members import alternate_config, member_configs
from kboolq.models.architectures import build_model
from kboolq.runs.rundir import load_model, read_info

ROWS = [{"question": "is it true", "passage": "it is true that it rains"}, {
    "question": "does the sun rise", "passage": "the moon sets in the west"}]  # fmt: skip


def test_spread_by_hand():
    reports = [
        {"valid": {"accuracy": 0.6, "balanced_accuracy": 0.5, "macro_f1": 0.4}},
        {"valid": {"accuracy": 0.7, "balanced_accuracy": 0.5, "macro_f1": 0.6}},
    ]
    result = spread(reports)["valid"]
    assert result["accuracy"]["mean"] == pytest.approx(0.65)
    assert result["accuracy"]["std"] == pytest.approx(0.0707107, abs=1e-6)  # 0.05 * sqrt(2)
    assert result["balanced_accuracy"] == {"mean": 0.5, "std": 0.0}
    assert result["macro_f1"]["std"] == pytest.approx(0.1414214, abs=1e-6)


def test_fit_seeds_saves_the_members_average_and_resumes(tmp_path, capsys):
    out, cache = tmp_path / "ens", tmp_path / "cache"
    args = fixture_args(out, cache, "--hidden", "4", "--epochs", "1", "--seed", "7", "--seeds", "2")
    args += ["--exact-match", "off"]  # the value a config.json without the key is read with
    assert fit.main(args) == 0
    members = [out / "members" / f"seed_{s}" for s in (7, 8)]
    assert [read_info(m).config.seed for m in members] == [7, 8]
    # the default mix: the 1st member is --alternate's esim, the 2nd the configured bigru
    configs = [read_info(m).config for m in members]
    assert [(c.arch, c.hidden_size, c.exact_match) for c in configs] == [
        ("esim", 128, "off"), ("bigru", 4, "off")]  # fmt: skip
    assert read_info(out).config == dataclasses.replace(configs[1], seed=7)  # the flags given
    ensemble = load_run(out, cache).predict(ROWS)
    each = [load_run(m, cache).predict(ROWS) for m in members]
    np.testing.assert_allclose(ensemble, np.mean(each, axis=0), atol=1e-6)
    written = json.loads((out / "seeds.json").read_text())
    member_metrics = [json.loads((m / "metrics.json").read_text()) for m in members]
    valid = [m["valid"]["balanced_accuracy"] for m in member_metrics]
    assert written["seeds"] == [7, 8] and written["archs"] == ["esim", "bigru"]
    assert written["members"]["valid"]["balanced_accuracy"]["mean"] == pytest.approx(sum(valid) / 2)
    printed = capsys.readouterr().out
    assert "2 members: mean +- std" in printed and "ensemble of 2 seeds (esim, bigru)" in printed

    # a --seeds fit killed after its first member: the member is kept, only the rest trains
    (out / "metrics.json").unlink()
    (members[1] / "metrics.json").unlink()
    first_model = (members[0] / "model.keras").stat().st_mtime_ns
    assert fit.main(args) == 0
    assert "member seed 7: kept from an earlier run" in capsys.readouterr().out
    assert (members[0] / "model.keras").stat().st_mtime_ns == first_model
    np.testing.assert_allclose(load_run(out, cache).predict(ROWS), ensemble, atol=1e-6)

    # a member saved by an older kboolq (format 1) lacks the keys added since (read as they
    # trained) and is kept too; one trained with other settings is trained again
    config = json.loads((members[0] / "config.json").read_text())
    config["format"] = 1
    del config["hyperparameters"]["exact_match"]  # read back as "off", as trained
    (members[0] / "config.json").write_text(json.dumps(config))
    config = json.loads((members[1] / "config.json").read_text())
    config["hyperparameters"]["dropout"] = 0.5
    (members[1] / "config.json").write_text(json.dumps(config))
    (out / "metrics.json").unlink()
    assert fit.main(args) == 0
    printed = capsys.readouterr().out
    assert "member seed 7: kept from an earlier run" in printed
    assert "member seed 8 (2 of 2, bigru)" in printed
    assert (members[0] / "model.keras").stat().st_mtime_ns == first_model
    assert read_info(members[1]).config.dropout == 0.2


def test_weight_averaging_saves_the_averaged_weights(tmp_path):
    """With a momentum of 0.999 the average after 4 steps is still almost the weights after the
    first step (Keras copies them then), so the saved model stays much nearer the initial
    weights than the model trained the same way without averaging."""
    distances = {}
    for ema in ("0", "0.999"):
        out = tmp_path / ema
        argv = ["--hidden", "4", "--epochs", "2", "--lr", "0.05", "--embedding-dropout", "0"]
        assert fit.main(fixture_args(out, tmp_path / "cache", *argv, "--ema", ema)) == 0
        info = read_info(out)
        keras.utils.set_random_seed(info.config.seed)
        initial = build_model(info.config, info.layout, info.vectors.dim).get_weights()
        saved = keras.saving.load_model(out / "model.keras").get_weights()
        distances[ema] = sum(
            float(np.sum((a - b) ** 2)) for a, b in zip(initial, saved, strict=True)
        )
        history = (out / "history.csv").read_text().splitlines()
        metrics = json.loads((out / "metrics.json").read_text())
        best = max(float(line.split(",")[header_index(history, "val_balanced_accuracy")])
                   for line in history[1:])  # fmt: skip
        assert metrics["valid"]["balanced_accuracy"] == pytest.approx(best, abs=1e-5)
    assert distances["0.999"] < 0.5 * distances["0"], distances


def header_index(lines, name):
    return lines[0].split(",").index(name)


def test_learning_rate_is_halved_on_a_plateau(tmp_path):
    out = tmp_path / "run"
    argv = ["--hidden", "4", "--epochs", "4", "--patience", "4", "--lr-plateau", "1"]
    assert fit.main(fixture_args(out, tmp_path / "cache", *argv, "--lr", "1e-6")) == 0
    lines = (out / "history.csv").read_text().splitlines()
    rates = [float(line.split(",")[header_index(lines, "learning_rate")]) for line in lines[1:]]
    assert rates[0] == pytest.approx(1e-6)
    assert rates[-1] < rates[0]  # lr 1e-6 learns nothing: the plateau halves it
    assert all(
        b in (a, a / 2) or b == pytest.approx(a / 2) for a, b in zip(rates, rates[1:], strict=False)
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ema", 1.0, r"--ema must be in \[0, 1\), got 1.0"),
        ("clipnorm", -1.0, "--clipnorm must not be negative"),
        ("min_epochs", -1, "--min-epochs must be at least 0"),
        ("lr_plateau", -2, "--lr-plateau must be at least 0"),
        ("exact_match", "yes", "--exact-match 'yes': choose from off, on, stem"),
        ("ema", float("nan"), "--ema must be a number, got nan"),
    ],
)
def test_bad_recipe_settings(field, value, message):
    with pytest.raises(UserError, match=message):
        Config(**{field: value})


def test_member_configs_alternate_from_the_first():
    config = Config(hidden_size=32, seed=5)
    esim = alternate_config(config, "--arch esim --hidden 8 --dropout 0.5")
    members = member_configs(config, esim, 3)
    assert [(m.arch, m.hidden_size, m.dropout, m.seed) for m in members] == [
        ("esim", 8, 0.5, 5), ("bigru", 32, 0.2, 6), ("esim", 8, 0.5, 7)]  # fmt: skip
    assert members[1] == dataclasses.replace(config, seed=6)
    assert member_configs(config, esim, 1) == [config]  # one model: the settings given
    assert alternate_config(config, "none") is None
    assert member_configs(config, None, 2) == [config, dataclasses.replace(config, seed=6)]
    # the default: esim at hidden 128 without exact match, everything else as given
    default = alternate_config(config, fit.ALTERNATE)
    assert default == dataclasses.replace(config, arch="esim", hidden_size=128, exact_match="off")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--arch lstm", "--alternate: argument --arch: invalid choice: 'lstm'"),
        ("--hidden many", "--alternate: argument --hidden: invalid int value: 'many'"),
        ("--hidden 0", "--alternate: --hidden must be at least 1, got 0"),
        ("--seed 3", "--alternate: unrecognized arguments: --seed 3"),
        ("--data x", "--alternate: unrecognized arguments: --data x"),
        ("--arch 'esim", "--alternate: No closing quotation"),
    ],
)
def test_bad_alternate_is_refused_before_anything_is_written(tmp_path, flags, message):
    out = tmp_path / "ens"
    with pytest.raises(UserError, match=re.escape(message)):
        fit.main(fixture_args(out, tmp_path / "c", "--seeds", "2", "--alternate", flags))
    assert not out.exists()


def test_fit_seeds_alternate_none_trains_every_member_alike(tmp_path, capsys):
    out = tmp_path / "ens"
    argv = ["--hidden", "4", "--epochs", "1", "--seeds", "2", "--alternate", "none"]
    assert fit.main(fixture_args(out, tmp_path / "cache", *argv)) == 0
    configs = [read_info(out / "members" / f"seed_{s}").config for s in (0, 1)]
    assert configs == [read_info(out).config, dataclasses.replace(read_info(out).config, seed=1)]
    assert "ensemble of 2 seeds (bigru, bigru)" in capsys.readouterr().out
    assert json.loads((out / "seeds.json").read_text())["alternate"] == "none"


def test_fit_seeds_past_the_last_seed_are_refused(tmp_path):
    out = tmp_path / "ens"
    with pytest.raises(UserError, match=re.escape("got 4294967296")):
        fit.main(fixture_args(out, tmp_path / "c", "--seed", "4294967295", "--seeds", "2"))
    assert not out.exists()


def test_fit_seeds_must_be_positive(tmp_path):
    with pytest.raises(UserError, match="--seeds must be from 1 to 25, got 0"):
        fit.main(fixture_args(tmp_path / "r", tmp_path / "c", "--seeds", "0"))


def test_accents_fold_or_drop():
    text = "Is Pokémon sold in São Paulo's café?"
    assert tokenize(text, "fold") == ["is", "pokemon", "sold", "in", "sao", "paulo", "'s", "cafe"]
    assert tokenize(text, "drop") == ["is", "pokmon", "sold", "in", "so", "paulo", "'s", "caf"]
    assert tokenize(text) == tokenize(text, "fold")  # the library's default is the commands'
    assert DataSettings().accents == "fold"


def test_a_run_saved_before_accent_folding_keeps_dropping_accents(tmp_path):
    out = tmp_path / "run"
    assert fit.main(fixture_args(out, tmp_path / "cache", "--hidden", "4", "--epochs", "1")) == 0
    assert read_info(out).data.accents == "fold"  # new runs fold
    config = json.loads((out / "config.json").read_text())
    del config["data"]["accents"]  # as written by kboolq before the setting (format 1)
    (out / "config.json").write_text(json.dumps({**config, "format": 1}))
    assert read_info(out).data.accents == "drop"


def test_runs_saved_before_the_recipe_settings_read_as_trained():
    """config.json files written before --ema etc. existed mean 'off', not today's defaults."""
    info = read_info(Path(__file__).parent / "data" / "runs" / "format1-bigru")
    assert (info.config.ema, info.config.lr_plateau, info.config.min_epochs) == (0.0, 0, 0)
    assert (info.config.clipnorm, info.config.exact_match) == (0.0, "off")
    assert Config().ema == 0.99 and Config().patience == 6  # what a new fit uses
    assert Config().exact_match == "on"


def test_a_stem_matching_run_trains_evaluates_predicts_and_joins_an_ensemble(tmp_path, capsys):
    """--exact-match stem models take each word's stem class as a third input: every command
    that scores rows hands it over, and an ensemble with a model that does not take it works."""
    cache, stem_run, plain_run = tmp_path / "cache", tmp_path / "stem", tmp_path / "plain"
    common = ("--hidden", "4", "--epochs", "1")
    assert fit.main(fixture_args(stem_run, cache, *common, "--exact-match", "stem")) == 0
    assert fit.main(fixture_args(plain_run, cache, *common, "--seed", "1")) == 0
    assert takes_stems(load_model(stem_run)) and not takes_stems(load_model(plain_run))
    assert read_info(stem_run).config.exact_match == "stem"
    stem_p, plain_p = (load_run(run, cache).predict(ROWS) for run in (stem_run, plain_run))
    assert evaluate.main([str(stem_run), "--cache-dir", str(cache)]) == 0
    report = json.loads((stem_run / "report.json").read_text())["valid"]
    trained = json.loads((stem_run / "metrics.json").read_text())["valid"]
    assert report["loss"] == pytest.approx(trained["loss"], abs=1e-6)  # evaluate reads stems too
    out = tmp_path / "ens"
    args = [str(stem_run), str(plain_run), "--out", str(out), "--cache-dir", str(cache)]
    assert ensemble.main(args) == 0
    assert takes_stems(load_model(out))
    np.testing.assert_allclose(
        load_run(out, cache).predict(ROWS), (stem_p + plain_p) / 2, atol=1e-6
    )
