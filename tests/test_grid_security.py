"""Who may use a grid chief's port, and what a worker's upload must be before it counts.

Fast tests check the pieces without a network: the secret check on fake call details, upload
unpacking, the oracle's bookkeeping and the chief's check of a trial's files. The slow ones talk
to a chief over 127.0.0.1 as a stranger would, with KerasTuner's own protos and no kboolq client:
no secret, a wrong secret, a planted model, a served port, TLS.
"""

import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import grpc
import keras_tuner as kt
import pytest
from helpers import fixture_args, free_port

from kboolq.errors import UserError
from tuning import auth, distributed, grid, tuner, uploads
from tuning.oracle import ResumableGridOracle

SECRET = "the-right-secret"
AXES = ["--hidden", "4", "--lr", "1e-3,1e-2", "--dropout", "0", "--weight-decay", "0"]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _upload(trial_id: str, files: dict[str, bytes], directory: str = "/elsewhere") -> bytes:
    header = {"trial_id": trial_id, "host": "another-host", "dir": directory}
    return json.dumps(header).encode() + b"\n" + _zip(files)


class _Details:
    def __init__(self, metadata):
        self.invocation_metadata = metadata
        self.method = "/keras_tuner.Oracle/GetSpace"


@pytest.mark.parametrize(
    ("metadata", "allowed"),
    [
        ((), False),
        ((("authorization", "Bearer wrong"),), False),
        ((("authorization", SECRET),), False),  # the scheme is part of the value
        ((("authorization", f"Bearer {SECRET}x"),), False),
        ((("authorization", f"Bearer {SECRET}"),), True),
    ],
)
def test_the_secret_check_passes_only_the_exact_secret(metadata, allowed):
    check = auth.SecretCheck(SECRET)
    handler = check.intercept_service(lambda details: "the real handler", _Details(metadata))
    assert (handler == "the real handler") is allowed
    if not allowed:
        context = type("Context", (), {})()
        aborted = []

        def abort(code, details):
            aborted.append((code, details))
            raise RuntimeError

        context.abort = abort
        never_read = iter(lambda: pytest.fail("the refusal read the request"), None)
        with pytest.raises(RuntimeError):
            handler.stream_unary(never_read, context)
        assert aborted == [(grpc.StatusCode.UNAUTHENTICATED, "wrong or missing grid secret")]


def test_a_chief_without_a_secret_makes_one_only_its_owner_can_read(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KBOOLQ_GRID_SECRET", raising=False)
    secret = auth.chief_secret(tmp_path)
    path = tmp_path / "grid.secret"
    assert path.read_text().strip() == secret and len(secret) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"the grid secret is in {path}" in capsys.readouterr().out
    assert secret not in capsys.readouterr().out
    assert auth.chief_secret(tmp_path) == secret  # a resumed grid keeps it
    assert auth.worker_secret(tmp_path) == secret  # a worker sharing the chief's --out
    monkeypatch.setenv("KBOOLQ_GRID_SECRET", "from-env")
    assert auth.chief_secret(tmp_path) == "from-env"
    assert auth.worker_secret(tmp_path / "elsewhere") == "from-env"


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("with space", "' '"),
        ("line\nbreak", "'\\n'"),
        ("pässword", "'ä'"),
        ("tab\tand ", "'\\t', ' '"),
    ],
)
def test_a_secret_that_grpc_metadata_cannot_carry_is_refused_at_both_ends(
    secret, shown, tmp_path, monkeypatch
):
    monkeypatch.setenv("KBOOLQ_GRID_SECRET", secret)
    message = (
        f"$KBOOLQ_GRID_SECRET: the grid secret holds {shown}; use visible ASCII characters only "
        "(letters, digits and punctuation; no spaces)"
    )
    for role in (auth.chief_secret, auth.worker_secret):
        with pytest.raises(UserError) as error:
            role(tmp_path)
        assert str(error.value).startswith(message)
    monkeypatch.delenv("KBOOLQ_GRID_SECRET")
    (tmp_path / "grid.secret").write_text(secret + "x\n")
    with pytest.raises(UserError, match="grid.secret: the grid secret holds "):
        auth.chief_secret(tmp_path)
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_worker_without_a_secret_stops_before_contacting_anyone(tmp_path, monkeypatch):
    monkeypatch.delenv("KBOOLQ_GRID_SECRET", raising=False)
    args = fixture_args(tmp_path / "w", tmp_path / "cache", *AXES, "--epochs", "1")
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        grid.main([*args, "--worker", "127.0.0.1:9", "--chief-timeout", "60"])
    assert str(error.value).startswith(
        "no grid secret: set KBOOLQ_GRID_SECRET to the content of the chief's GRID_DIR/grid.secret"
    )
    assert time.monotonic() - started < 5
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-cert", "c.pem"], "--tls-cert, --tls-key and --tls-ca are for a grid on"),
        (["--chief", "127.0.0.1:9", "--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--chief", "127.0.0.1:9", "--tls-ca", "c.pem"], "--tls-ca is a worker's"),
    ],
)
def test_tls_flags_are_checked(tmp_path, monkeypatch, argv, message):
    monkeypatch.setenv("KBOOLQ_GRID_SECRET", SECRET)
    args = fixture_args(tmp_path / "g", tmp_path / "cache", *AXES, "--epochs", "1")
    with pytest.raises(UserError, match=message):
        grid.main([*args, *argv])
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"../escape.txt": b"x"}, "the upload holds '../escape.txt', not a run's file"),
        ({"/etc/passwd": b"x"}, "the upload holds '/etc/passwd', not a run's file"),
        ({"notes.txt": b"x"}, "the upload holds 'notes.txt', not a run's file"),
        ({"trial.json": b"{}"}, "the upload holds 'trial.json', not a run's file"),
    ],
)
def test_an_upload_with_other_files_is_refused_and_nothing_is_written(tmp_path, files, reason):
    target = tmp_path / "trials" / "trial_0"
    with pytest.raises(uploads.UploadRejected, match=reason):
        uploads.unpack_files(_upload("0", files), target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_an_upload_over_the_size_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_UPLOAD", 1000)
    target = tmp_path / "trial_0"
    message = _upload("0", {"model.keras": b"0" * 600, "history.csv": b"1" * 600})
    with pytest.raises(uploads.UploadRejected, match="unpacks to 1200 bytes, over 1000"):
        uploads.unpack_files(message, target)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(uploads.UploadRejected, match="not a kboolq trial header"):
        uploads.unpack_files(b"garbage\n" + b"x", target)


def test_an_upload_is_unpacked_beside_the_trial_and_moved_in(tmp_path):
    target = tmp_path / "trial_0"
    target.mkdir()
    staging = uploads.unpack_files(_upload("0", {"history.csv": b"epoch\n1\n"}), target)
    assert staging.parent == tmp_path and staging.name.startswith(".upload-trial_0-")
    assert list(target.iterdir()) == []  # nothing in the trial before the check
    assert uploads.move_in(staging, target) == ["history.csv"]
    assert (target / "history.csv").read_bytes() == b"epoch\n1\n" and not staging.exists()


def _oracle(tmp_path):
    oracle = ResumableGridOracle(
        grid_size=2,
        lease=30,
        require_files=True,
        max_consecutive_failed_trials=None,
        objective=kt.Objective("score", "max"),
        seed=0,
    )
    oracle._set_project_dir(str(tmp_path), "trials")
    oracle.hyperparameters.Choice("h", [1, 2])
    return oracle


def _end(oracle, trial, score, **changes):
    oracle.update_trial(trial.trial_id, {"score": score})
    copy = kt.engine.trial.Trial.from_proto(trial.to_proto())
    copy.status = "COMPLETED"
    for name, value in changes.items():
        copy.hyperparameters.values[name] = value
    oracle.end_trial(copy)


def test_on_a_chief_only_accepted_files_complete_a_trial(tmp_path):
    oracle = _oracle(tmp_path)
    a, b = oracle.create_trial("a"), oracle.create_trial("b")
    assert oracle.holds("a", a.trial_id) and not oracle.holds("b", a.trial_id)
    oracle.reject(a.trial_id, "model.keras: not a readable kboolq model")
    _end(oracle, a, 0.999)  # the planted score
    _end(oracle, b, 0.6, h=7)  # no files sent, and a changed grid point
    assert oracle.trials[a.trial_id].status == "FAILED"
    assert oracle.trials[a.trial_id].message == "model.keras: not a readable kboolq model"
    assert oracle.trials[b.trial_id].status == "FAILED"
    assert oracle.trials[b.trial_id].message == "the worker sent no files for this trial"
    assert oracle.trials[b.trial_id].hyperparameters.values["h"] != 7
    assert oracle.get_best_trials(1) == []
    again = _oracle(tmp_path)
    again.reload()
    assert again.rejected == {a.trial_id: "model.keras: not a readable kboolq model"}


def test_the_chief_checks_a_trials_files_against_its_grid_point(trained, tmp_path):
    run, cache = trained
    from kboolq.cli import data_settings
    from kboolq.config import Config
    from kboolq.inputs import load_inputs

    parsed = grid.parser().parse_args(fixture_args(tmp_path / "g", cache, "--hidden", "4"))
    inputs = load_inputs(data_settings(parsed), cache)
    hypermodel = tuner.ConfigHyperModel(
        Config(max_epochs=1), {"hidden_size": [4, 8]}, inputs.prepared
    )
    accept = uploads.trial_check(hypermodel.config, hypermodel.prepared)
    hps = kt.HyperParameters()
    hps.Choice("hidden_size", [4, 8])
    trial = kt.engine.trial.Trial(hps, trial_id="0")
    good = tmp_path / "good"
    shutil.copytree(run, good)
    assert accept(trial, good) is None
    trial.hyperparameters.values["hidden_size"] = 8
    assert accept(trial, good) == (
        "config.json holds other hyperparameters than the trial's grid point"
    )
    trial.hyperparameters.values["hidden_size"] = 4
    (good / "model.keras").write_bytes(b"PK\x03\x04 not a model")
    assert accept(trial, good).startswith("the uploaded run/model.keras: damaged")
    (good / "model.keras").unlink()
    assert accept(trial, good).startswith("the uploaded run: no model.keras")


# --- a chief on 127.0.0.1, and strangers ------------------------------------------------------


def _start_chief(tmp_path, address, *extra, secret=SECRET):
    out = tmp_path / "grid"
    args = fixture_args(out, tmp_path / "cache", *AXES, "--epochs", "2", "--patience", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KBOOLQ_GRID_SECRET": secret}
    log = open(tmp_path / "chief.log", "w+")  # noqa: SIM115
    command = [sys.executable, "-m", "tuning.grid", *args, "--chief", address, *extra]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    process.log = log
    return process, out


def _log(process) -> str:
    process.log.seek(0)
    return process.log.read()


def _stub(address, secret=None, tuner="stranger"):
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=120)
    metadata = [("kboolq-tuner-id", tuner)]
    if secret is not None:
        metadata.append(("authorization", f"Bearer {secret}"))
    return channel, distributed.protos.get_service_grpc().OracleStub(channel), metadata


def _code(method, request, metadata) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as error:
        method(request, metadata=metadata)
    return error.value.code()


def _wait_for_port(address, process, seconds=120):
    host, port = address.split(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, _log(process)
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.2)
    pytest.fail("the chief never listened")


@pytest.mark.slow
def test_strangers_and_a_planted_model_are_refused_and_the_grid_ends_with_its_own_best(
    tmp_path, trained
):
    address = f"127.0.0.1:{free_port()}"
    chief, out = _start_chief(tmp_path, address)
    try:
        _wait_for_port(address, chief)
        service = distributed.protos.get_service()
        ours = f"/{distributed.SERVICE}/"
        for secret in (None, "wrong"):
            channel, stub, metadata = _stub(address, secret)
            calls = [
                (channel.unary_unary(ours + "Record"), b""),
                (channel.unary_unary(ours + "PutFiles"), _upload("0", {"model.keras": b"x"})),
                (stub.GetSpace, service.GetSpaceRequest()),
                (stub.CreateTrial, service.CreateTrialRequest(tuner_id="stranger")),
                (stub.GetBestTrials, service.GetBestTrialsRequest(num_trials=1)),
            ]
            for method, request in calls:
                assert _code(method, request, metadata) == grpc.StatusCode.UNAUTHENTICATED
            channel.close()
        assert not list((out / "trials").glob("trial_*"))  # no trial was even created
        # A worker with the secret that plants a model of the wrong shape and a top score.
        channel, stub, metadata = _stub(address, SECRET, tuner="planter")
        trial = stub.CreateTrial(
            service.CreateTrialRequest(tuner_id="planter"), metadata=metadata
        ).trial
        trial_id = trial.trial_id
        import keras

        inputs = keras.Input(shape=(3, 2), name="vectors")
        lengths = keras.Input(shape=(2,), dtype="int32", name="lengths")
        flat = keras.layers.Flatten()(inputs)
        model = keras.Model([inputs, lengths], keras.layers.Dense(1, activation="sigmoid")(flat))
        model.save(tmp_path / "planted.keras")
        # config.json as the chief expects it: the grid's record, the trial's own point
        record = json.loads(channel.unary_unary(ours + "Record")(b"", metadata=metadata))
        config = json.loads((trained[0] / "config.json").read_text())
        config["hyperparameters"].update(record["record"]["fixed"])
        values = kt.engine.trial.Trial.from_proto(trial).hyperparameters.values
        config["hyperparameters"].update(values)
        planted = _upload(
            trial_id,
            {
                "model.keras": (tmp_path / "planted.keras").read_bytes(),
                "config.json": json.dumps(config).encode(),
            },
        )
        put = channel.unary_unary(ours + "PutFiles")
        with pytest.raises(grpc.RpcError) as refused:
            put(planted, metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        request = service.UpdateTrialRequest(
            trial_id=trial_id, metrics={"val_balanced_accuracy": 0.999}, step=0
        )
        stub.UpdateTrial(request, metadata=metadata)
        trial.status = distributed.protos.get_proto().TrialStatus.COMPLETED
        stub.EndTrial(service.EndTrialRequest(trial=trial), metadata=metadata)
        assert not (out / "trials" / f"trial_{trial_id}" / "model.keras").exists()
        channel.close()
        # Now an honest worker trains what is left.
        args = fixture_args(tmp_path / "w", tmp_path / "cache", *AXES, "--epochs", "2")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "KBOOLQ_GRID_SECRET": SECRET}
        worker = subprocess.run(
            [sys.executable, "-m", "tuning.grid", *args, "--patience", "2", "--worker", address],
            capture_output=True,
            text=True,
            env=env,
            timeout=400,
        )
        assert worker.returncode == 0, worker.stderr[-3000:]
        chief.wait(timeout=120)
        assert chief.returncode == 0, _log(chief)[-3000:]
    finally:
        chief.kill()
        chief.wait()
    state = json.loads((out / "trials" / f"trial_{trial_id}" / "trial.json").read_text())
    assert state["status"] == "FAILED"
    assert "but model.keras takes 3" in state["message"]
    assert f"grid chief: trial {trial_id} failed: " in _log(chief)
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == "COMPLETED" and rows[1].split(",")[0] != trial_id
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["layout"]["q_max"] > 0
    assert (out / "best" / "model.keras").read_bytes() != (tmp_path / "planted.keras").read_bytes()


@pytest.mark.slow
def test_a_wrong_secret_stops_a_worker_at_once_and_a_served_port_is_refused(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    chief, out = _start_chief(tmp_path, address)
    try:
        _wait_for_port(address, chief)
        args = fixture_args(tmp_path / "w", tmp_path / "cache", *AXES, "--epochs", "2")
        env = {**os.environ, "KBOOLQ_GRID_SECRET": "wrong"}
        command = [sys.executable, "-m", "tuning.grid", *args, "--worker", address]
        worker = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert worker.returncode == 2
        assert worker.stderr.strip().splitlines()[-1] == (
            f"tuning.grid: error: the grid chief at {address} refused this worker: wrong or "
            "missing grid secret ($KBOOLQ_GRID_SECRET must equal the chief's, as in its "
            "GRID_DIR/grid.secret)"
        )
        second = subprocess.run(
            [
                sys.executable, "-m", "tuning.grid",
                *fixture_args(tmp_path / "g2", tmp_path / "cache", *AXES, "--epochs", "2"),
                "--chief", address,
            ],
            capture_output=True, text=True, env={**os.environ, "KBOOLQ_GRID_SECRET": SECRET},
            timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1] == (
            f"tuning.grid: error: --chief {address}: cannot listen there (port in use?)"
        )
        assert chief.poll() is None  # the first chief serves on
    finally:
        chief.kill()
        chief.wait()


@pytest.mark.slow
def test_fifty_stalled_calls_of_a_stranger_do_not_hold_up_the_worker(tmp_path):
    """A stranger opens calls and never sends their request (nor ends them): each must be
    refused at once, not hold one of the chief's handler threads while it waits."""
    import threading

    servicer = distributed.GridServicer(_oracle(tmp_path), {"grid": 1}, heartbeat=1.0)
    port = free_port()
    server = distributed.start_server(servicer, f"127.0.0.1:{port}", SECRET, None)
    release = threading.Event()

    def never():  # a request that never comes
        release.wait(120)
        yield b""

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stalled = [
            channel.stream_unary(f"/{distributed.SERVICE}/{name}").future(
                never(), metadata=[("kboolq-tuner-id", "stranger")], timeout=120
            )
            for name in ("Record", "Heartbeat", "PutFiles") * 16 + ("Record", "Record")
        ]
        assert len(stalled) == 50
        role = distributed.Role("worker", "w", "127.0.0.1", port)
        local = kt.Oracle(objective=kt.Objective("score", "max"), max_trials=1)
        started = time.monotonic()
        client = distributed.GridClient(local, role, 60, SECRET)
        assert client.record() == {"record": {"grid": 1}, "heartbeat": 1.0}
        assert time.monotonic() - started < 5
        for call in stalled:  # refused without their request
            assert call.exception(timeout=10).code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        release.set()
        channel.close()
        server.stop(0)


def _certificate(tmp_path) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert, key = tmp_path / "chief.pem", tmp_path / "chief.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_over_tls_a_worker_that_trusts_the_chief_connects_and_a_plain_one_cannot(tmp_path):
    cert, key = _certificate(tmp_path)
    oracle = _oracle(tmp_path)
    servicer = distributed.GridServicer(oracle, {"grid": 1}, heartbeat=1.0)
    address = f"127.0.0.1:{free_port()}"
    server = distributed.start_server(servicer, address, SECRET, auth.read_tls(cert, key))
    try:
        role = distributed.Role("worker", "w", "127.0.0.1", int(address.split(":")[1]))
        local = kt.Oracle(objective=kt.Objective("score", "max"), max_trials=1)
        client = distributed.GridClient(local, role, 20, SECRET, auth.read_ca(cert))
        assert client.record() == {"record": {"grid": 1}, "heartbeat": 1.0}
        wrong = distributed.GridClient(local, role, 20, "wrong", auth.read_ca(cert))
        with pytest.raises(UserError, match="refused this worker: wrong or missing grid secret"):
            wrong.record()
        other, _ = _certificate(tmp_path / "other")  # a CA that did not sign the chief's
        cases = [
            (None, "the chief speaks TLS: give this worker --tls-ca (the chief's certificate)"),
            (
                auth.read_ca(other),
                "TLS handshake failed: self-signed certificate; give --tls-ca the chief's "
                "certificate (or the CA that signed it)",
            ),
        ]
        for ca, reason in cases:
            started = time.monotonic()
            with pytest.raises(UserError) as error:
                distributed.GridClient(local, role, 600, SECRET, ca).record()
            assert str(error.value) == f"--worker {address}: {reason}"
            assert time.monotonic() - started < 10  # not --chief-timeout's 600 s
    finally:
        server.stop(0)
    plain_address = f"127.0.0.1:{free_port()}"
    server = distributed.start_server(servicer, plain_address, SECRET, None)
    try:
        role = distributed.Role("worker", "w", "127.0.0.1", int(plain_address.split(":")[1]))
        with pytest.raises(UserError) as error:
            distributed.GridClient(local, role, 600, SECRET, auth.read_ca(cert)).record()
        assert str(error.value).startswith(f"--worker {plain_address}: TLS handshake failed (")
        assert str(error.value).endswith(
            "): the chief does not speak TLS; start it with --tls-cert and --tls-key, or leave "
            "out --tls-ca"
        )
    finally:
        server.stop(0)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_chief_certificate_and_key_that_do_not_match_are_refused_before_listening(tmp_path):
    cert, key = _certificate(tmp_path)
    _, other_key = _certificate(tmp_path / "other")
    with pytest.raises(UserError) as error:
        auth.read_tls(cert, other_key)
    assert str(error.value) == (
        f"--tls-cert {cert} --tls-key {other_key}: not a certificate and its private key "
        "(KEY_VALUES_MISMATCH)"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(UserError, match=f"--tls-cert {garbage} --tls-key {key}: not a certificate"):
        auth.read_tls(garbage, key)
    with pytest.raises(UserError, match=f"--tls-ca {garbage}: not a certificate"):
        auth.read_ca(garbage)
