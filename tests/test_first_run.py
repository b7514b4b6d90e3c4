"""What a new user meets first: one message for every missing source, logs without progress-bar
escapes, one line for a missing backend, kboolq.load_run, learning curves, files they can read."""

import json
import os
import stat
import subprocess
import sys

import pytest
from helpers import FIXTURE_BOOLQ, FIXTURE_GLOVE, SOURCES, fixture_args

import kboolq
from kboolq import evaluate, fit, predict
from kboolq.cli import run_command, verbosity
from kboolq.errors import UserError
from kboolq.files import write_text


def test_every_missing_source_is_named_in_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "https://kboolq-offline.invalid")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    args = ["--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]
    assert run_command(fit.main, "kboolq.fit")(args) == 2
    err = capsys.readouterr().err
    assert "--data hub: cannot reach kboolq-offline.invalid" in err
    assert "--glove hub:300: cannot reach kboolq-offline.invalid" in err
    assert "--glove kumo50" in err and "Offline work" in err
    assert not (tmp_path / "run").exists()  # nothing is created before the sources are checked


def test_a_missing_directory_and_missing_vectors_together(tmp_path, capsys):
    args = ["--data", str(tmp_path / "nope"), "--glove", str(tmp_path / "g.txt")]
    code = run_command(fit.main, "kboolq.fit")([*args, "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--data {tmp_path / 'nope'}: no such directory" in err
    assert f"--glove {tmp_path / 'g.txt'}: no such file" in err


def test_verbosity_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch):
    class Args:
        verbose = None

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert verbosity(Args) == 1
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert verbosity(Args) == 2
    Args.verbose = 0
    assert verbosity(Args) == 0


def test_a_fit_logged_to_a_file_holds_no_progress_bar_escapes(tmp_path, capfd):
    args = fixture_args(tmp_path / "run", tmp_path / "cache", "--hidden", "4", "--epochs", "2")
    args.remove("--verbose")
    args.remove("0")
    assert fit.main(args) == 0
    out = capfd.readouterr().out
    assert "\r" not in out and "\x1b[" not in out
    assert "Epoch 2/2" in out
    png = tmp_path / "run" / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_backend_is_one_line_even_for_help():
    env = {**os.environ, "KERAS_BACKEND": "kboolq_no_such_backend"}
    result = subprocess.run(
        [sys.executable, "-m", "kboolq.fit", "--help"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "kboolq: KERAS_BACKEND=kboolq_no_such_backend, but kboolq_no_such_backend is not "
        "installed: pip install kboolq_no_such_backend, or unset KERAS_BACKEND to use torch\n"
    )


def test_load_run_answers_like_the_predict_command(trained, capsys):
    run_dir, cache = trained
    rows = [json.loads(line) for line in (FIXTURE_BOOLQ / "validation.jsonl").open()][:5]
    run = kboolq.load_run(run_dir, cache)
    p_yes = run.predict([{"question": r["question"], "passage": r["passage"]} for r in rows])
    capsys.readouterr()
    for row, expected in zip(rows, p_yes, strict=True):
        argv = [str(run_dir), "--question", row["question"], "--passage", row["passage"]]
        assert predict.main([*argv, "--cache-dir", str(cache)]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["p_yes"] == pytest.approx(float(expected), abs=1e-6)
    assert run.info.config.hidden_size == 4


@pytest.mark.slow
def test_load_run_from_a_fresh_interpreter(trained):
    run_dir, cache = trained
    code = (
        "import kboolq; "
        f"run = kboolq.load_run({str(run_dir)!r}, {str(cache)!r}); "
        "p = run.predict([{'question': 'is the moon old', 'passage': 'the moon is old'}]); "
        "print(float(p[0]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert 0.0 < float(result.stdout.strip()) < 1.0


def test_report_json_keeps_one_report_per_split(trained, tmp_path):
    run_dir, cache = trained
    for split in ("valid", "test"):
        assert evaluate.main([str(run_dir), "--split", split, "--cache-dir", str(cache)]) == 0
    reports = json.loads((run_dir / "report.json").read_text())
    assert set(reports) == {"valid", "test"}


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_the_fixture_sources_still_load_without_network(tmp_path):
    """SOURCES (local data, a GloVe text file) pass the source check without any probe."""
    from kboolq.config import DataSettings
    from kboolq.inputs import check_sources

    settings = DataSettings(source=SOURCES[1], glove=str(FIXTURE_GLOVE), valid_size=40)
    check_sources(settings, tmp_path)
    with pytest.raises(UserError, match="no such file"):
        check_sources(DataSettings(source=SOURCES[1], glove=str(tmp_path / "x")), tmp_path)


def test_threads_default_to_half_the_cores_and_are_checked(monkeypatch):
    import torch

    from kboolq import threads

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "available_cores", lambda: 6)
    try:
        assert threads.set_threads(None) == 3 and torch.get_num_threads() == 3
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(UserError, match="--threads must be at least 1, got 0"):
            threads.set_threads(0)
    finally:
        torch.set_num_threads(before)
