"""What must never lose a run: a signal that a library swallowed still stops the command before
it replaces anything; an output that is or holds one of the inputs is refused; --distill and
--refit check the rows by content (the recorded fingerprint), not by path."""

import contextlib
import json
import shutil
import signal
import threading
import time

import pytest
from helpers import FIXTURE_BOOLQ, fixture_args

from kboolq import cli, fit, signals, training
from kboolq.errors import Interrupted, UserError
from kboolq.runs.staging import staged

COMMON = ("--hidden", "4", "--epochs", "1")


def _snapshot(directory):
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _deliver(signum=signal.SIGTERM):
    """The signal to the main thread, and wait until its handler has run (a raising handler
    ends the wait with its exception; a recording one sets signals.received)."""
    signal.pthread_kill(threading.main_thread().ident, signum)
    deadline = time.monotonic() + 10
    while signals.received() is None and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """A --seeds 2 ensemble (members in ENS/members) trained once: (ENS, cache)."""
    root = tmp_path_factory.mktemp("ens")
    assert fit.main(fixture_args(root / "ens", root / "cache", *COMMON, "--seeds", "2")) == 0
    return root / "ens", root / "cache"


def test_a_swallowed_sigterm_still_leaves_the_old_run_whole(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"old model")
    with (
        cli.terminate_as_interrupt(),
        pytest.raises(Interrupted) as stopped,
        staged(run, lambda name: True) as work,
    ):
        (work / "model.keras").write_bytes(b"new model")
        with contextlib.suppress(BaseException):  # a library's bare `except:` at that moment
            _deliver()
    assert stopped.value.signum == signal.SIGTERM
    assert _snapshot(run) == {"model.keras": b"old model"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the staging is gone too


def test_a_signal_inside_a_finalizer_is_recorded_not_printed(capsys, monkeypatch):
    # a suite started in the background (`cmd &`) inherits SIGINT ignored, which kboolq keeps
    monkeypatch.setattr(signal, "getsignal", lambda signum: signal.default_int_handler)

    class Finalized:
        def __del__(self):
            _deliver(signal.SIGINT)

    with cli.terminate_as_interrupt():
        Finalized()  # collected at once: the handler runs inside its __del__
        assert signals.received() == signal.SIGINT
        with pytest.raises(Interrupted) as stopped:
            signals.raise_if_received()
    assert stopped.value.signum == signal.SIGINT
    assert capsys.readouterr().err == ""  # no "Exception ignored in ..." traceback


def test_a_signal_during_the_swap_ends_the_command_after_it_with_the_new_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"old")
    real_swap = __import__("kboolq.runs.staging", fromlist=["swap"]).swap

    def swap_with_a_signal(staging, run_dir, is_ours):
        _deliver()  # held: only recorded
        real_swap(staging, run_dir, is_ours)

    with cli.terminate_as_interrupt(), pytest.MonkeyPatch.context() as patch:
        patch.setattr("kboolq.runs.staging.swap", swap_with_a_signal)
        with pytest.raises(Interrupted) as stopped, staged(run, lambda n: True) as work:
            (work / "model.keras").write_bytes(b"new")
    assert str(stopped.value) == f"{run} holds the new run (the signal came as it was swapped in)"
    assert _snapshot(run) == {"model.keras": b"new"}


def test_fit_overwrite_stopped_while_the_model_is_built_exits_143_with_the_old_run(
    trained, tmp_path, monkeypatch, capsys
):
    source, cache = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    before = _snapshot(run)
    build = training.build_model

    def build_and_swallow(*args, **kwargs):
        with contextlib.suppress(BaseException):  # as Keras's bare `except:` did building it
            _deliver()
        return build(*args, **kwargs)

    monkeypatch.setattr(training, "build_model", build_and_swallow)
    command = cli.run_command(fit.main, "kboolq.fit")
    assert command(fixture_args(run, cache, *COMMON, "--overwrite")) == 143
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"kboolq.fit: interrupted: {run} still holds the previous run"
    )
    assert _snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_output_that_is_or_holds_an_input_is_refused_and_nothing_is_touched(ensemble, tmp_path):
    ens, cache = ensemble
    before = _snapshot(ens)
    member = ens / "members" / "seed_0"
    assert member.is_dir()
    link = tmp_path / "link"
    link.symlink_to(ens)
    cases = [
        (["--refit", str(member), "--out", str(ens)], f"--out {ens}: holds {member}"),
        (["--refit", str(member), "--out", str(link)], f"--out {ens}: holds {member}"),
        (["--refit", str(ens), "--out", str(member / "..")], f"--out {member / '..'}: holds"),
        (
            [*fixture_args(ens, cache, *COMMON), "--distill", str(ens)],
            f"--out {ens}: is one of this command's inputs; choose a new directory",
        ),
        (
            [*fixture_args(ens / "..", cache, *COMMON), "--distill", str(member)],
            f"--out {ens / '..'}: holds {ens}",
        ),
    ]
    for argv, message in cases:
        argv = [*argv, "--overwrite", "--cache-dir", str(cache), "--verbose", "0"]
        with pytest.raises(UserError) as refused:
            fit.main(argv)
        assert str(refused.value).startswith(message), (argv, str(refused.value))
    assert _snapshot(ens) == before


def _with_other_rows(tmp_path):
    """A copy of the fixture data whose first train row now says otherwise."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURE_BOOLQ, data)
    lines = (data / "train.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["answer"] = not row["answer"]
    lines[0] = json.dumps(row)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    return data


def _trained_on(data, out, cache, *extra):
    args = fixture_args(out, cache, *COMMON, *extra)
    args[args.index("--data") + 1] = str(data)
    assert fit.main(args) == 0
    return args


def test_distill_and_refit_refuse_a_teacher_whose_rows_changed_at_the_same_path(tmp_path):
    data, cache = _with_other_rows(tmp_path), tmp_path / "cache"
    teacher = tmp_path / "teacher"
    args = _trained_on(data, teacher, cache)
    recorded = json.loads((teacher / "config.json").read_text())["data"]["preprocess_fingerprint"]
    shutil.copy(FIXTURE_BOOLQ / "train.jsonl", data / "train.jsonl")  # the rows change
    student = tmp_path / "student"
    args[args.index("--out") + 1] = str(student)
    for argv, flag in (
        ([*args, "--distill", str(teacher)], "--distill"),
        (["--refit", str(teacher), "--out", str(student), "--cache-dir", str(cache)], "--refit"),
    ):
        with pytest.raises(UserError) as refused:
            fit.main(argv)
        message = str(refused.value)
        assert message.startswith(
            f"{flag} {teacher}: was made from other rows than those now at {data.resolve()} "
            f"(its preprocess fingerprint {recorded[:12]}, the rows now give "
        ), message
        assert message.endswith("); the data changed since it was trained")
        assert not student.exists()
