"""The grid on a chief and workers (tuning/distributed.py, tuning/oracle.py).

The oracle's leases and the worker's back-off are checked in-process with a clock and a stub;
the processes themselves (127.0.0.1, the fixture's real BoolQ rows, a 6-point grid) in the
slow tests, each bounded in time.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import keras_tuner as kt
import pytest
from helpers import SOURCES, fixture_args, free_port

import kboolq
from kboolq.errors import UserError
from tuning import distributed, grid
from tuning.oracle import ResumableGridOracle

AXES = ["--hidden", "4,8", "--lr", "1e-3,1e-2,3e-2", "--dropout", "0", "--weight-decay", "0"]
POINTS = {(h, lr) for h in ("4", "8") for lr in ("0.001", "0.01", "0.03")}


def _oracle(tmp_path, lease=None):
    oracle = ResumableGridOracle(
        grid_size=2, lease=lease, objective=kt.Objective("score", "max"), seed=0
    )
    oracle._set_project_dir(str(tmp_path), "trials")
    oracle.hyperparameters.Choice("h", [1, 2])
    return oracle


def _end(oracle, trial, score):
    """What a worker does at the end of a trial, with its own copy of the trial as over gRPC."""
    oracle.update_trial(trial.trial_id, {"score": score})
    copy = kt.engine.trial.Trial.from_proto(trial.to_proto())
    copy.status = "COMPLETED"
    oracle.end_trial(copy)


def test_trials_run_concurrently_and_a_lost_lease_hands_the_point_on(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    oracle = _oracle(tmp_path, lease=30)
    a, b = oracle.create_trial("a"), oracle.create_trial("b")
    assert (a.status, b.status) == ("RUNNING", "RUNNING")  # two points at once, not one
    assert {a.hyperparameters.values["h"], b.hyperparameters.values["h"]} == {1, 2}
    assert oracle.create_trial("c").status == "IDLE"  # nothing free, but not the end
    now[0] += 20
    assert oracle.report(b.trial_id)  # b's heartbeat; a stays silent
    now[0] += 11  # a silent for 31 s > 30, b for 11 s
    c = oracle.create_trial("c")
    assert c.status == "RUNNING" and c.trial_id not in (a.trial_id, b.trial_id)
    assert c.hyperparameters.values == a.hyperparameters.values  # a's point, as a new trial
    assert oracle.trials[a.trial_id].status == "FAILED"
    assert "lease expired: a sent nothing for 31 s" in oracle.trials[a.trial_id].message
    assert not oracle.report(a.trial_id)  # a's worker learns it lost the trial
    _end(oracle, c, 0.7)
    _end(oracle, b, 0.6)
    late = kt.engine.trial.Trial(oracle.get_space(), trial_id=a.trial_id, status="COMPLETED")
    oracle.update_trial(a.trial_id, {"score": 0.99})  # the dead worker's late reports
    oracle.end_trial(late)
    assert oracle.trials[a.trial_id].status == "FAILED"
    assert oracle.get_best_trials(1)[0].trial_id == c.trial_id  # 0.99 did not count
    assert oracle.finished()
    assert oracle.create_trial("b").status == "STOPPED"


def test_tied_trials_rank_the_same_everywhere_and_after_a_resume(tmp_path):
    oracle = _oracle(tmp_path)
    a, b = oracle.create_trial("a"), oracle.create_trial("b")
    _end(oracle, b, 0.6)  # the later trial ends first
    _end(oracle, a, 0.6)
    assert [t.trial_id for t in oracle.get_best_trials(2)] == [a.trial_id, b.trial_id]
    oracle.trials = dict(reversed(list(oracle.trials.items())))  # as reloaded in another order
    assert [t.trial_id for t in oracle.get_best_trials(2)] == [a.trial_id, b.trial_id]
    again = _oracle(tmp_path)
    again.reload()
    assert [t.trial_id for t in again.get_best_trials(2)] == [a.trial_id, b.trial_id]


def test_a_restarted_oracle_keeps_running_trials_and_never_repeats_ended_ones(tmp_path):
    oracle = _oracle(tmp_path, lease=30)
    a, b = oracle.create_trial("a"), oracle.create_trial("b")
    _end(oracle, a, 0.5)
    again = _oracle(tmp_path, lease=30)
    again.reload()
    assert again.ongoing_trials == {"b": again.trials[b.trial_id]}
    assert again._retry_queue == []
    assert again.create_trial("a").status == "IDLE"  # a's point is done; b's is still running
    assert again.create_trial("b").trial_id == b.trial_id  # b's own trial, not a copy
    _end(again, again.trials[b.trial_id], 0.6)
    assert again.finished() and sorted(again.trials) == [a.trial_id, b.trial_id]


def test_a_trial_whose_start_the_killed_chief_never_recorded_is_run_again(tmp_path):
    """Killed between KerasTuner's writes of trial.json and oracle.json: the restarted chief
    finds a running trial that its state does not hold and that no worker received."""
    oracle = _oracle(tmp_path, lease=30)
    a = oracle.create_trial("a")
    state = (tmp_path / "trials" / "oracle.json").read_bytes()
    b = oracle.create_trial("b")  # writes trial_<b>/trial.json, then oracle.json
    (tmp_path / "trials" / "oracle.json").write_bytes(state)  # as if killed in between
    again = _oracle(tmp_path, lease=30)
    again.reload()
    assert again.trials[b.trial_id].status == "FAILED"
    assert "before recording this trial's start" in again.trials[b.trial_id].message
    c = again.create_trial("b")  # the worker asks again and gets b's point as a new trial
    assert c.status == "RUNNING" and c.trial_id not in (a.trial_id, b.trial_id)
    assert c.hyperparameters.values == b.hyperparameters.values
    _end(again, again.trials[a.trial_id], 0.5)
    _end(again, c, 0.6)
    assert again.finished()


def test_an_idle_worker_waits_longer_each_time(monkeypatch):
    """0.5, 1, 2, 4, 8, 8 s between asks while no grid point is free; back to 0.5 after one."""
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    role = distributed.Role("worker", "w", "127.0.0.1", 1)
    oracle = kt.Oracle(objective="val_loss", max_trials=1)
    client = distributed.GridClient(oracle, role, timeout=1, secret="s")
    statuses = ["IDLE"] * 6 + ["RUNNING", "IDLE"]

    def create(request, **kwargs):
        trial = kt.engine.trial.Trial(kt.HyperParameters(), "0", statuses.pop(0))
        return distributed.protos.get_service().CreateTrialResponse(trial=trial.to_proto())

    client.stub = type("Stub", (), {"CreateTrial": staticmethod(create)})()
    for _ in range(8):
        client.create_trial("w")
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 0.5]
    assert client.idle_asks == 7


def test_a_worker_without_a_chief_says_it_waits_then_stops_with_one_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KBOOLQ_GRID_SECRET", "s")
    monkeypatch.setattr(distributed, "WAIT_NOTICE", 0.5)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    args = fixture_args(tmp_path / "w", tmp_path / "cache", *AXES, "--epochs", "1")
    with pytest.raises(UserError) as error:
        grid.main([*args, "--worker", f"127.0.0.1:{port}", "--chief-timeout", "2.5"])
    assert str(error.value).startswith(
        f"cannot reach the grid chief at 127.0.0.1:{port} within 2.5 s (deadline_exceeded)"
    )
    assert time.monotonic() - started < 30
    waiting = [line for line in capsys.readouterr().err.splitlines() if "waiting" in line]
    assert len(waiting) >= 2  # at once (after 1 s), then again with the time left
    assert f"waiting for the grid chief at 127.0.0.1:{port} (" in waiting[0]
    assert "s left before giving up)" in waiting[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chief", "localhost"], "--chief 'localhost': expected HOST:PORT"),
        (["--worker", "h:99999"], "--worker 'h:99999': expected HOST:PORT"),
        (["--chief", "h:1", "--worker", "h:1"], "--chief and --worker: choose one"),
        (["--lease", "0"], "--lease and --chief-timeout must be positive"),
    ],
)
def test_bad_distributed_flags(tmp_path, argv, message):
    with pytest.raises(UserError, match=message):
        grid.main([*SOURCES, "--out", str(tmp_path / "g"), *argv])


def test_any_hyperparameter_is_an_axis(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('arch = ["bigru", "notebook"]\nembedding-dropout = [0.0, 0.3]\n')
    args = grid.parser().parse_args(
        ["--out", "x", "--grid", str(path), "--patience", "3", "--class-weight", "none,balanced"]
    )
    base, axes = grid.settings_from_args(args)
    assert base.patience == 3  # one value of a non-default axis: a fixed setting
    assert axes == {
        **grid.DEFAULT_GRID,
        "arch": ["bigru", "notebook"],
        "embedding_dropout": [0.0, 0.3],
        "class_weight": ["none", "balanced"],
    }
    bad = grid.parser().parse_args(["--out", "x", "--class-weight", "none,heavy"])
    with pytest.raises(UserError, match="--class-weight 'heavy': choose from none, balanced"):
        grid.settings_from_args(bad)


def test_a_grid_over_architectures_trains_each(tmp_path):
    out = tmp_path / "g"
    argv = [*AXES[:2], "--lr", "1e-3", "--dropout", "0", "--weight-decay", "0"]
    args = fixture_args(out, tmp_path / "cache", *argv, "--arch", "bigru,notebook", "--epochs", "1")
    args[args.index("--hidden") + 1] = "4"
    assert grid.main(args) == 0
    with open(out / "trials.csv") as handle:
        assert sorted(row["arch"] for row in csv.DictReader(handle)) == ["bigru", "notebook"]
    for trial in (out / "trials").glob("trial_*"):
        config = json.loads((trial / "config.json").read_text())["hyperparameters"]
        assert config["arch"] in ("bigru", "notebook") and config["hidden_size"] == 4


# --- processes on 127.0.0.1 -------------------------------------------------------------------


STARTED: list[subprocess.Popen] = []
SECRET = "test-grid-secret"


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def _start(out, cache, role, address, *extra, epochs=6):
    args = fixture_args(out, cache, *AXES, "--epochs", str(epochs), "--patience", str(epochs))
    command = [sys.executable, "-m", "tuning.grid", *args, f"--{role}", address, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KBOOLQ_GRID_SECRET": SECRET}
    log = open(Path(out).parent / f"{role}-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    process.log = log
    STARTED.append(process)
    return process


def _output(process) -> str:
    process.log.seek(0)
    return process.log.read()


def _wait(processes, seconds=300):
    deadline = time.monotonic() + seconds
    for process in processes:
        try:
            process.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"not done in {seconds} s:\n{_output(process)[-3000:]}")
        assert process.returncode == 0, _output(process)[-3000:]


def _grid_rows(out):
    with open(out / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def _assert_every_point_once(out):
    rows = _grid_rows(out)
    assert len(rows) == 6 and {row["status"] for row in rows} == {"COMPLETED"}
    assert {(row["hidden_size"], row["learning_rate"]) for row in rows} == POINTS
    best = kboolq.load_run(out / "best")  # a normal run directory
    assert len(best.predict([{"question": "is it", "passage": "it is"}])) == 1


def _spans(out):
    """(start, end) of each ended trial: the oracle's start time, the last trial.json write."""
    state = json.loads((out / "trials" / "oracle.json").read_text())
    starts = state["display"]["trial_start"]
    return [
        (
            datetime.fromisoformat(starts[t]).timestamp(),
            (out / "trials" / f"trial_{t}" / "trial.json").stat().st_mtime,
        )
        for t in starts
    ]


@pytest.mark.slow
def test_a_chief_and_two_workers_with_their_own_disks_run_each_point_once_at_once(tmp_path):
    address, cache = f"127.0.0.1:{free_port()}", tmp_path / "cache"
    chief = _start(tmp_path / "chief", cache, "chief", address)
    workers = [_start(tmp_path / f"w{i}", cache, "worker", address) for i in (1, 2)]
    stranger = _start(tmp_path / "w3", cache, "worker", address, epochs=5)  # other arguments
    stranger.wait(timeout=120)
    assert stranger.returncode == 2
    assert "the chief runs another grid (fixed.max_epochs: 6 -> 5" in _output(stranger)
    _wait([*workers, chief])
    _assert_every_point_once(tmp_path / "chief")
    spans = _spans(tmp_path / "chief")
    overlapping = [(a, b) for a in spans for b in spans if a < b and a[0] < b[1] and b[0] < a[1]]
    assert overlapping, spans
    ran = [int(_output(w).split("ran ")[1].split(" trials")[0]) for w in workers]
    assert sorted(ran) != [0, 6] and sum(ran) == 6  # both workers trained
    served = _output(chief).split("served ")[1]
    assert int(served.split("(")[1].split(" trial requests")[0]) <= 20  # no busy polling


@pytest.mark.slow
def test_a_killed_worker_loses_its_lease_and_the_grid_completes_once(tmp_path):
    address, out, cache = f"127.0.0.1:{free_port()}", tmp_path / "grid", tmp_path / "cache"
    chief = _start(out, cache, "chief", address, "--lease", "4", epochs=40)
    doomed = _start(out, cache, "worker", address, epochs=40)
    deadline = time.monotonic() + 120
    while not (out / "trials" / "trial_0" / "history.csv").exists():  # mid-trial
        assert time.monotonic() < deadline and doomed.poll() is None, _output(doomed)[-2000:]
        time.sleep(0.05)
    os.kill(doomed.pid, signal.SIGKILL)
    survivor = _start(out, cache, "worker", address, epochs=40)
    _wait([survivor, chief], seconds=400)
    _assert_every_point_once(out)
    lost = json.loads((out / "trials" / "trial_0" / "trial.json").read_text())
    assert lost["status"] == "FAILED" and "lease expired" in lost["message"]
    assert "trial 0 given up" in _output(chief)


@pytest.mark.slow
def test_a_chief_killed_and_restarted_finishes_without_repeating_a_trial(tmp_path):
    address, out, cache = f"127.0.0.1:{free_port()}", tmp_path / "grid", tmp_path / "cache"
    chief = _start(out, cache, "chief", address, epochs=20)
    workers = [_start(out, cache, "worker", address, epochs=20) for _ in range(2)]
    deadline = time.monotonic() + 180
    while not any(json.loads(p.read_text())["status"] == "COMPLETED"
                  for p in (out / "trials").glob("trial_*/trial.json")):  # fmt: skip
        assert time.monotonic() < deadline, _output(chief)[-2000:]
        time.sleep(0.05)
    os.kill(chief.pid, signal.SIGKILL)
    chief.wait()
    time.sleep(1)
    chief = _start(out, cache, "chief", address, epochs=20)
    _wait([*workers, chief], seconds=400)
    _assert_every_point_once(out)
    states = {
        p.parent: json.loads(p.read_text()) for p in (out / "trials").glob("trial_*/trial.json")
    }
    assert sum(s["status"] == "COMPLETED" for s in states.values()) == 6  # none ran twice
    for trial_dir, state in states.items():  # killed between its two files: never trained
        if state["status"] != "COMPLETED":
            assert "before recording this trial's start" in state["message"]
            assert not (trial_dir / "history.csv").exists()


def test_kerastuner_variables_name_the_role(monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "10.0.0.5")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8470")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner7")
    assert distributed.role_from(None, None) == distributed.Role(
        "worker", "tuner7", "10.0.0.5", 8470
    )
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert distributed.role_from(None, None).kind == "chief"
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT")
    with pytest.raises(UserError, match="KERASTUNER_ORACLE_IP is set but KERASTUNER_ORACLE_PORT"):
        distributed.role_from(None, None)
    monkeypatch.delenv("KERASTUNER_ORACLE_IP")
    assert distributed.role_from(None, None) is None  # one process


# --- one command: --workers N ------------------------------------------------------------------


def _launch(out, cache, workers, *extra, epochs=2):
    args = fixture_args(out, cache, *AXES, "--epochs", str(epochs), "--patience", str(epochs))
    command = [sys.executable, "-m", "tuning.grid", *args, "--workers", str(workers), *extra]
    env = {k: v for k, v in os.environ.items() if k != "KBOOLQ_GRID_SECRET"}
    log = open(Path(out).parent / f"launch-{time.monotonic_ns()}.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    process.log = log
    STARTED.append(process)
    return process


def _pids(process, name):
    """The pids the launcher reported for `name` (chief, worker 1, ...)."""
    prefix = f"[launcher] {name}: pid "
    return [int(line[len(prefix) :].split(",")[0]) for line in _output(process).splitlines()
            if line.startswith(prefix)]  # fmt: skip


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (ended, not yet reaped) is not alive
        return stat.read().split(") ")[1][0] != "Z"


@pytest.mark.slow
def test_workers_runs_every_point_once_in_one_command(tmp_path):
    out = tmp_path / "grid"
    process = _launch(out, tmp_path / "cache", 2, "--threads", "2")
    _wait([process])
    _assert_every_point_once(out)
    output = _output(process)
    assert "[launcher] a chief and 2 workers on 127.0.0.1:" in output
    assert "1 threads each" in output
    ran = [int(line.split("ran ")[1].split(" trials")[0]) for line in output.splitlines()
           if "the grid is done; ran" in line]  # fmt: skip
    assert len(ran) == 2 and sum(ran) == 6
    assert "[chief] grid: trial 6 of 6 done" in output
    assert not (out / "grid.secret").exists()  # the launcher's secret travels in the environment
    # run again: the grid is done, so the chief says so and every process ends, no traceback
    started = time.monotonic()
    again = _launch(out, tmp_path / "cache", 2, "--threads", "2")
    _wait([again], seconds=120)
    output = _output(again)
    assert again.returncode == 0 and "Traceback" not in output
    assert "[chief] grid chief: all 6 points done" in output
    assert time.monotonic() - started < 90  # loading, no waiting for a chief that is gone
    _assert_every_point_once(out)


@pytest.mark.slow
def test_a_worker_waiting_for_its_chief_obeys_sigterm_within_seconds(tmp_path):
    args = fixture_args(tmp_path / "grid", tmp_path / "cache", *AXES, "--epochs", "1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tuning.grid", *args, "--worker", f"127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "KBOOLQ_GRID_SECRET": "s3cret"},
    )  # fmt: skip
    try:
        for line in worker.stdout:  # nobody serves that port: it waits for a chief
            if "waiting for the grid chief" in line:
                break
        time.sleep(2)
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 143
        assert time.monotonic() - started < 5
        assert worker.stdout.read().strip().splitlines()[-1] == "tuning.grid: interrupted (SIGTERM)"
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.slow
def test_ctrl_c_stops_the_chief_and_every_worker(tmp_path):
    out = tmp_path / "grid"
    process = _launch(out, tmp_path / "cache", 2, epochs=200)
    deadline = time.monotonic() + 180
    while not list((out / "trials").glob("trial_*/history.csv")):
        assert time.monotonic() < deadline and process.poll() is None, _output(process)[-3000:]
        time.sleep(0.1)
    pids = _pids(process, "chief") + _pids(process, "worker 1") + _pids(process, "worker 2")
    assert len(pids) == 3 and all(_alive(pid) for pid in pids)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    assert process.returncode == 130
    lines = _output(process).strip().splitlines()
    assert lines[-1] == (
        "tuning.grid: interrupted: every grid process stopped; run the same command to resume"
    )
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_the_grid_completes_once(tmp_path):
    out = tmp_path / "grid"
    process = _launch(out, tmp_path / "cache", 2, "--lease", "4", epochs=30)
    deadline = time.monotonic() + 180
    while not list((out / "trials").glob("trial_*/history.csv")):
        assert time.monotonic() < deadline and process.poll() is None, _output(process)[-3000:]
        time.sleep(0.1)
    doomed = _pids(process, "worker 1")[0]
    os.kill(doomed, signal.SIGKILL)
    _wait([process], seconds=400)
    _assert_every_point_once(out)
    output = _output(process)
    assert (
        f"[launcher] worker 1 (pid {doomed}) died (killed by SIGKILL); starting another" in output
    )
    assert len(_pids(process, "worker 1")) == 2


def test_kerastuners_private_names_are_refused_with_another_minor_version(monkeypatch):
    import importlib

    from tuning import kt_private

    monkeypatch.setattr(kt, "__version__", "1.5.0")
    with pytest.raises(UserError) as error:
        importlib.reload(kt_private)
    assert str(error.value) == (
        "kboolq's grid uses private parts of keras-tuner 1.4.x, found 1.5.0: pip install "
        "'keras-tuner>=1.4.7,<1.5'"
    )
    monkeypatch.undo()
    importlib.reload(kt_private)


@pytest.mark.slow
def test_no_grid_process_outlives_a_killed_launcher(tmp_path):
    out = tmp_path / "grid"
    process = _launch(out, tmp_path / "cache", 2, epochs=200)
    deadline = time.monotonic() + 180
    while len(_pids(process, "worker 2")) < 1 or not list((out / "trials").glob("trial_*")):
        assert time.monotonic() < deadline and process.poll() is None, _output(process)[-3000:]
        time.sleep(0.1)
    pids = _pids(process, "chief") + _pids(process, "worker 1") + _pids(process, "worker 2")
    process.kill()  # SIGKILL: the launcher cannot stop anything itself
    process.wait()
    deadline = time.monotonic() + 90
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [_where(pid) for pid in pids if _alive(pid)]
        time.sleep(0.2)


@pytest.mark.slow
def test_an_orphan_ends_at_its_exit_handlers_before_a_teardown_that_hangs(tmp_path):
    """A grid process whose launcher is gone and that returns from main ends before the
    interpreter's teardown, where follow_launcher's thread can no longer run: here an object
    whose clean-up would hang for two minutes, with the thread's grace made longer still."""
    child = (
        "import os, sys, time\n"
        "from tuning import launch\n"
        "launch.ORPHAN_GRACE = 600\n"
        "class Hangs:\n"
        "    def __del__(self, sleep=time.sleep):  # module globals are gone by then\n"
        "        sleep(120)\n"
        "held = Hangs()\n"
        "parent = os.getppid()\n"
        "launch.follow_launcher()\n"
        "print('ready', flush=True)\n"
        "while os.getppid() == parent:\n"
        "    time.sleep(0.1)\n"
    )
    _assert_orphan_ends(child)


def _assert_orphan_ends(child: str, seconds: float = 20) -> None:
    """Runs `child` (Python code that prints 'ready' once set up) as a process started by a
    launcher that then exits, and asserts that it ends within `seconds` after. Its output goes
    to the launcher's pipe, which is gone with the launcher, as in a real grid."""
    parent = (
        "import os, subprocess, sys\n"
        f"env = {{**os.environ, 'KBOOLQ_GRID_LAUNCHER': str(os.getpid())}}\n"
        f"child = subprocess.Popen([sys.executable, '-c', {child!r}], env=env, "
        "stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)\n"
        "assert child.stdout.readline() == 'ready\\n'\n"
        "print(child.pid, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", parent], capture_output=True, text=True, timeout=120, check=True
    )
    orphan = int(done.stdout)
    deadline = time.monotonic() + seconds
    while _alive(orphan):
        assert time.monotonic() < deadline, _where(orphan)
        time.sleep(0.1)


def _where(pid: int) -> str:
    """What a process is and where it waits, for a failure message."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        return f"{pid}: {cmdline} (waits in {wchan})"
    except OSError as exc:
        return f"{pid}: {exc}"


@pytest.mark.slow
def test_a_grid_process_ends_after_its_launcher_even_ignoring_sigterm(tmp_path):
    """The backstop behind the parent-death signal: follow_launcher's thread, also when its
    output goes to the launcher's pipe, which is gone with the launcher (writing to it fails)."""
    child = (
        "import signal, sys, time\n"
        "from tuning import launch\n"
        "launch.ORPHAN_GRACE = 0.5\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "launch.follow_launcher()\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    _assert_orphan_ends(child)
