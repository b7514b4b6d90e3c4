"""Nothing of the user's is lost or trusted blindly: what each command may overwrite, locks,
staged replacement, grids that remember what they were made from, damaged caches rebuilt."""

import fcntl
import json
import shutil

import keras
import numpy as np
import pytest
from helpers import FIXTURE_BOOLQ, SOURCES, fixture_args

from kboolq import carve, fit, fitting, predict
from kboolq.cli import run_command
from kboolq.runs.outputs import lock_output, lock_path
from tuning import grid


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_overwrite_with_bad_input_leaves_the_old_run_whole(run, tmp_path, capsys):
    run_dir, cache = run
    before = _files(run_dir)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text("{oops\n")
    args = fixture_args(run_dir, cache, "--overwrite", "--hidden", "4", "--epochs", "1")
    args[args.index("--data") + 1] = str(bad)
    assert run_command(fit.main, "fit")(args) == 2
    assert "malformed JSON" in capsys.readouterr().err
    assert _files(run_dir) == before


def test_overwrite_interrupted_while_training_keeps_the_old_run(run, monkeypatch, capsys):
    run_dir, cache = run
    before = _files(run_dir)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "train_model", interrupted)
    args = fixture_args(run_dir, cache, "--overwrite", "--hidden", "4", "--epochs", "1")
    assert run_command(fit.main, "fit")(args) == 130
    assert f"{run_dir} still holds the previous run" in capsys.readouterr().err
    assert _files(run_dir) == before
    assert not list(run_dir.parent.glob(".run.*"))  # no staging directory left behind


def test_overwrite_replaces_the_run_once_the_new_one_is_complete(run):
    run_dir, cache = run
    args = fixture_args(run_dir, cache, "--overwrite", "--hidden", "6", "--epochs", "1")
    assert fit.main(args) == 0
    assert json.loads((run_dir / "config.json").read_text())["hyperparameters"]["hidden_size"] == 6
    assert not list(run_dir.parent.glob(".run.*"))


def test_a_directory_in_use_is_refused_and_a_dead_holder_does_not_block(run, capsys):
    import os
    import subprocess
    import sys

    run_dir, cache = run
    args = fixture_args(run_dir, cache, "--overwrite", "--hidden", "4", "--epochs", "1")
    with lock_output(run_dir):
        assert run_command(fit.main, "fit")(args) == 2
    assert f"in use by pid {os.getpid()}" in capsys.readouterr().err
    lock = lock_path(run_dir)
    holder = subprocess.Popen(  # holds the lock as a kboolq command would, then is killed
        [
            sys.executable, "-c",
            "import fcntl, time\n"
            f"handle = open({str(lock)!r}, 'a')\n"
            "fcntl.flock(handle, fcntl.LOCK_EX)\n"
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    assert run_command(fit.main, "fit")(args) == 2  # held by the other process
    holder.kill()
    holder.wait()
    with lock_output(run_dir), open(lock) as handle, pytest.raises(BlockingIOError):
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken again at once, and held


def test_carve_overwrites_only_its_own_dataset(tmp_path, capsys):
    out = tmp_path / "carved"
    argv = [str(FIXTURE_BOOLQ), str(out), "--size", "10", "--valid-size", "10"]
    assert carve.main(argv) == 0
    assert run_command(carve.main, "carve")(argv) == 2
    assert "already holds a kboolq dataset; pass --overwrite" in capsys.readouterr().err
    assert carve.main([*argv, "--overwrite"]) == 0


def test_a_grid_refuses_other_data_and_runs_only_new_points(tmp_path, capsys):
    out, cache = tmp_path / "grid", tmp_path / "cache"
    axes = ["--dropout", "0", "--lr", "1e-3", "--weight-decay", "0", "--epochs", "1"]
    assert grid.main(fixture_args(out, cache, "--hidden", "4,8", *axes)) == 0
    other = tmp_path / "other"
    shutil.copytree(FIXTURE_BOOLQ, other)
    args = fixture_args(out, cache, "--hidden", "4,8", *axes)
    args[args.index("--data") + 1] = str(other)
    capsys.readouterr()
    assert run_command(grid.main, "grid")(args) == 2
    assert "holds a grid made from other settings (data.source" in capsys.readouterr().err
    args = fixture_args(out, cache, "--hidden", "4", *axes)
    assert run_command(grid.main, "grid")(args) == 2
    assert "axes.hidden_size: [4, 8] -> [4] drops values" in capsys.readouterr().err
    assert grid.main(fixture_args(out, cache, "--hidden", "4,8,16", *axes)) == 0
    printed = capsys.readouterr().out
    assert printed.count("Search: Running Trial") == 1  # only the new point ran
    rows = (out / "trials.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[2] for row in rows) == ["16", "4", "8"]


def test_a_damaged_vector_cache_is_rebuilt_and_answers_stay_finite(run, tmp_path, capsys):
    run_dir, cache = run[0], tmp_path / "own-cache"  # this test damages it: not the shared one
    question = ["--question", "is the moon red", "--passage", "the moon is red"]
    assert predict.main([str(run_dir), *question, "--cache-dir", str(cache)]) == 0
    expected = json.loads(capsys.readouterr().out)["p_yes"]
    (vectors,) = cache.glob("glove/*/vectors.npy")
    damaged = np.load(vectors)
    damaged[:] = np.nan
    np.save(vectors, damaged)  # same size, new contents
    assert predict.main([str(run_dir), *question, "--cache-dir", str(cache)]) == 0
    out, err = capsys.readouterr()
    assert "is damaged; rebuilding it" in err
    assert json.loads(out)["p_yes"] == expected


def test_damaged_preprocessed_and_meta_caches_are_rebuilt(tmp_path, capsys):
    cache = tmp_path / "cache"
    args = [*SOURCES, "--cache-dir", str(cache)]
    from kboolq import preprocess

    assert preprocess.main(args) == 0
    (entry,) = cache.glob("prepared/*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    (meta,) = cache.glob("glove/*/meta.json")
    meta.write_text("{}")
    capsys.readouterr()
    assert preprocess.main(args) == 0
    out, err = capsys.readouterr()
    assert f"the cache entry {entry} is damaged; rebuilding it" in err
    assert "the vector cache" in err and "cold" in out
    assert preprocess.main(args) == 0
    assert "from cache" in capsys.readouterr().out


def test_a_model_with_nan_weights_is_an_error_not_a_nan_answer(run, capsys):
    run_dir, cache = run
    model = keras.saving.load_model(run_dir / "model.keras")
    weights = model.get_weights()
    weights[-1] = weights[-1] * np.nan
    model.set_weights(weights)
    model.save(run_dir / "model.keras")
    argv = [str(run_dir), "--question", "q is", "--passage", "the moon", "--cache-dir", str(cache)]
    assert run_command(predict.main, "predict")(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "the model gave no valid P(yes)" in err


def test_suspicious_training_data_is_warned_about(tmp_path, capsys):
    rows = [json.loads(line) for line in (FIXTURE_BOOLQ / "train.jsonl").open()]
    data = tmp_path / "data"
    data.mkdir()
    same = [{**row, "answer": True} for row in rows[:100]] + [
        {**row, "answer": True} for row in rows[:40]
    ]  # one class, and every valid row is also a training row
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in same))
    args = fixture_args(tmp_path / "run", tmp_path / "cache", "--hidden", "4", "--epochs", "1")
    args[args.index("--data") + 1] = str(data)
    assert fit.main(args) == 0
    err = capsys.readouterr().err
    assert "every training row has the answer True: one class only" in err
    assert "40 of 40 valid rows also appear in the training rows" in err
    assert "the valid split has 40 rows, fewer than a batch of 64" in err


def test_a_save_killed_midway_leaves_no_temporary_file_after_the_next_command(run, capsys):
    run_dir, cache = run
    stale = run_dir / ".model.k3j2.tmp.keras"  # what atomic_path leaves if killed
    stale.write_bytes(b"partial")
    from kboolq import evaluate

    assert evaluate.main([str(run_dir), "--cache-dir", str(cache)]) == 0
    assert not stale.exists()
