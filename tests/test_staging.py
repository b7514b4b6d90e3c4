"""A refused or interrupted command leaves everything as it was (kboolq/runs/staging.py).

One rule for fit and ensemble: --overwrite replaces kboolq's files only; a new run is staged and
swapped in whole; kboolq removes only its own marked leftovers, and only after the output is
claimed; a symlinked run directory is written through.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import answers, fit_fixture, fixture_args

from kboolq import ensemble
from kboolq.cli import run_command
from kboolq.runs import rundir, staging
from kboolq.runs.rundir import is_kboolq_entry


def _tree(root):
    """Every file under root (links as links) with its bytes: what a test compares."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = path.read_bytes()
    return found


def _fit(run_dir, cache, *extra):
    return fit_fixture(run_dir, cache, *extra)


def _ensemble(trained, out, *extra):
    argv = [str(trained[0]), str(out.parent / "other"), "--out", str(out), *extra]
    return run_command(ensemble.main, "kboolq.ensemble")(argv)


def test_a_refused_fit_touches_no_sibling_not_even_ones_with_kboolqs_names(run, capsys):
    run_dir, cache = run
    siblings = {
        ".run.old": "the user's",
        ".run.kboolq-staging": "no mark inside: the user's",
        ".run.kboolq-old": "not a run: the user's",
    }
    for name, text in siblings.items():
        (run_dir.parent / name).mkdir()
        (run_dir.parent / name / "notes.txt").write_text(text)
    before = _tree(run_dir.parent)
    assert _fit(run_dir, cache) == 2
    assert "already holds a kboolq run; pass --overwrite" in capsys.readouterr().err
    assert _tree(run_dir.parent) == before
    assert _fit(run_dir, cache, "--overwrite") == 0  # claimed: still none of them is kboolq's
    for name, text in siblings.items():
        assert (run_dir.parent / name / "notes.txt").read_text() == text


@pytest.mark.parametrize("command", ["fit", "ensemble"])
def test_overwrite_replaces_kboolqs_files_only(trained, tmp_path, command):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    shutil.copytree(trained[0], tmp_path / "other")
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "predictions.jsonl").write_text('{"p_yes": 0.5}\n')
    (out / "valid_roc.png").write_bytes(b"kboolq's plot")  # evaluate's: kboolq's own
    old_model = (out / "model.keras").read_bytes()
    if command == "fit":
        assert _fit(out, trained[1], "--overwrite", "--seed", "3") == 0
    else:
        assert _ensemble(trained, out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "mine" / "predictions.jsonl").read_text() == '{"p_yes": 0.5}\n'
    assert not (out / "valid_roc.png").exists()
    assert (out / "model.keras").read_bytes() != old_model
    assert not (out / staging.MARK).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "run"]  # nothing beside


def test_a_crash_while_an_ensemble_is_written_leaves_the_old_one_whole(
    trained, tmp_path, monkeypatch
):
    out = tmp_path / "ens"
    shutil.copytree(trained[0], tmp_path / "other")
    assert _ensemble(trained, out) == 0
    (out / "notes.txt").write_text("mine")
    before = _tree(out)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "save_model", crash)  # killed while writing the model
    assert _ensemble(trained, out, "--overwrite") == 130
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens", "other"]


def test_leftovers_of_a_killed_command_are_cleaned_and_never_called_the_users(
    trained, tmp_path, capsys
):
    out = tmp_path / "ens"
    shutil.copytree(trained[0], tmp_path / "other")
    out.mkdir()
    (out / ".model.abc123.tmp.keras").write_bytes(b"half a model")  # killed mid-write
    leftover = staging.new_staging(out)
    (leftover / "config.json").write_text("{}")
    assert _ensemble(trained, out) == 0, capsys.readouterr().err
    assert not leftover.exists() and not list(out.glob(".*.tmp*"))
    # two copies of one run: their ensemble answers as the run does
    np.testing.assert_allclose(answers(out, trained[1]), answers(*trained), atol=1e-6)


@pytest.mark.parametrize("kill_after", [0, 1])
def test_a_kill_between_the_renames_of_a_swap_is_recovered(run, monkeypatch, kill_after):
    run_dir, cache = run
    before = _tree(run_dir)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        if len(calls) == kill_after:
            raise SystemExit("killed")  # the process dies here
        calls.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(staging.os, "replace", replace)
    work = staging.new_staging(run_dir)
    (work / "model.keras").write_bytes(b"new")
    with pytest.raises(SystemExit):
        staging.swap(work, run_dir, is_kboolq_entry)
    monkeypatch.setattr(staging.os, "replace", real_replace)
    staging.recover(run_dir)  # what the next command does first, then after its claim:
    staging.remove_leftovers(run_dir)
    assert _tree(run_dir) == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["run"]


@pytest.mark.parametrize("kill_after", [0, 1, 2, 3])
def test_a_kill_while_the_parked_run_is_removed_leaves_it_marked_for_cleaning(
    run, tmp_path, monkeypatch, kill_after
):
    run_dir, _ = run
    copy = tmp_path / "w" / "copy"
    shutil.copytree(run_dir, copy)
    work = staging.new_staging(copy)
    (work / "model.keras").write_bytes(b"new")
    real_unlink, calls = Path.unlink, []

    def unlink(self, *args, **kwargs):  # the parked run's files go one by one
        if len(calls) == kill_after:
            raise SystemExit("killed")
        calls.append(self)
        real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(SystemExit):
        staging.swap(work, copy, is_kboolq_entry)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    (parked,) = copy.parent.glob(".copy.kboolq-old-*")
    assert (parked / staging.MARK).is_file()  # its mark goes last
    assert staging.remove_leftovers(copy) == [parked, copy / staging.MARK]
    assert sorted(p.name for p in copy.parent.iterdir()) == ["copy"]
    assert (copy / "model.keras").read_bytes() == b"new"


def test_an_empty_parked_directory_with_kboolqs_name_is_a_leftover_too(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    empty = tmp_path / ".run.kboolq-old-0a1b2c3d"
    empty.mkdir()  # a kill between the mark's removal and the rmdir
    users = tmp_path / ".run.kboolq-old-users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")  # not empty, not marked: never removed
    assert staging.remove_leftovers(run_dir) == [empty]
    assert (users / "notes.txt").read_text() == "mine"


def test_overwrite_through_a_symlink_writes_the_target_and_keeps_the_link(run, tmp_path):
    run_dir, cache = run
    link = tmp_path / "link"
    link.symlink_to(run_dir, target_is_directory=True)
    assert _fit(link, cache, "--overwrite", "--seed", "5") == 0
    assert link.is_symlink() and link.resolve() == run_dir.resolve()
    assert '"seed": 5' in (run_dir / "config.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "run"]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(trained, tmp_path, overwrite):
    out = tmp_path / "run"
    if overwrite:
        shutil.copytree(trained[0], out)
    before = _tree(out) if overwrite else None
    extra = ["--hidden", "8", "--epochs", "200", "--patience", "200", "--verbose", "2"]
    command = [
        sys.executable, "-m", "kboolq.fit", *fixture_args(out, trained[1], *extra),
        *(["--overwrite"] if overwrite else []),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    pattern = ".run.kboolq-staging-*/history.csv" if overwrite else "run/history.csv"
    while not list(tmp_path.glob(pattern)):
        assert process.poll() is None, process.stderr.read()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.strip()]
    if overwrite:
        assert lines[-1] == f"kboolq.fit: interrupted: {out} still holds the previous run"
        assert _tree(out) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    else:
        assert lines[-1] == (
            f"kboolq.fit: interrupted: best model so far kept in {out / 'model.keras'}; the "
            "same command goes on from the last finished epoch"
        )
        answers(out, trained[1])  # the kept checkpoint loads and answers
    assert "Traceback" not in err
