"""The grid on many processes: KerasTuner's chief/worker mode over gRPC, made safe for a grid.

The chief holds the oracle (tuning/oracle.py) and serves KerasTuner's own Oracle service, plus
two methods of ours on the same port: `Record` (what the grid is made from, so a worker started
with other data or settings is refused) and `PutFiles` (a worker sends a finished trial's run
directory, so the chief can publish GRID_DIR/best when workers have their own disks). Workers
ask for trials, send a heartbeat while they train (the lease), wait longer and longer while
nothing is free (no busy polling), and stop with a one-line error when the chief cannot be
reached for `timeout` seconds.

KerasTuner's variables work as well as the flags: KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT
name the chief, KERASTUNER_TUNER_ID names the process ("chief" in it makes it the chief).

Who may talk to the chief is tuning/auth.py's (the grid's shared secret on every call, TLS);
what a worker's upload may hold is tuning/uploads.py's. The trial must be the one that worker
holds, and its files count only once `accept` (the grid's own check) has passed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt

from kboolq.errors import UserError
from tuning.auth import (
    AUTH_KEY,
    SECRET_ENV,
    SECRET_FILE,
    TUNER_KEY,
    SecretCheck,
    caller,
    mismatch,
)
from tuning.kt_private import protos, trial_dir
from tuning.oracle import ResumableGridOracle
from tuning.uploads import (
    MAX_UPLOAD,
    UploadRejected,
    move_in,
    pack_files,
    read_header,
    unpack_files,
)

Trial = kt.engine.trial.Trial
IDLE = kt.engine.trial.TrialStatus.IDLE
RUNNING = kt.engine.trial.TrialStatus.RUNNING
MAX_MESSAGE = MAX_UPLOAD + (1 << 20)  # a trial's run directory travels in one message
OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
SERVER_OPTIONS = [*OPTIONS, ("grpc.so_reuseport", 0)]  # a second chief on a served port fails
SERVICE = "kboolq.grid.Grid"
IDLE_WAIT = (0.5, 8.0)  # a worker with nothing to run asks again after 0.5, 1, 2, 4, 8, 8... s
WAIT_NOTICE = 30.0  # a worker waiting for its chief says so at once and every this many seconds


@dataclass(frozen=True)
class Role:
    """Which process this is in a distributed grid: 'chief' or 'worker', its id, the chief's
    address."""

    kind: str
    tuner_id: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{flag} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8470")
    return host.strip("[]"), int(port)


def role_from(chief: str | None, worker: str | None) -> Role | None:
    """The role given by --chief/--worker, else by KerasTuner's variables, else None (one
    process). The variables are only read: the grid gives its tuner the role itself."""
    if chief and worker:
        raise UserError("--chief and --worker: choose one (each process is one or the other)")
    env = os.environ
    if chief or worker:
        host, port = parse_address(chief or worker, "--chief" if chief else "--worker")
        kind = "chief" if chief else "worker"
        tuner_id = env.get("KERASTUNER_TUNER_ID", "")
        if kind == "chief" or not tuner_id or "chief" in tuner_id:
            tuner_id = (
                "chief" if kind == "chief" else f"worker-{socket.gethostname()}-{os.getpid()}"
            )
    elif "KERASTUNER_ORACLE_IP" in env:
        missing = [v for v in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID") if v not in env]
        if missing:
            raise UserError(f"KERASTUNER_ORACLE_IP is set but {' and '.join(missing)} is not")
        host, port = parse_address(
            f"{env['KERASTUNER_ORACLE_IP']}:{env['KERASTUNER_ORACLE_PORT']}",
            "KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT",
        )
        tuner_id = env["KERASTUNER_TUNER_ID"]
        kind = "chief" if "chief" in tuner_id else "worker"
    else:
        return None
    return Role(kind, tuner_id, host, port)


def _unary(handler: Callable[[bytes, grpc.ServicerContext], bytes]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(handler)  # raw bytes in and out


class GridServicer(protos.get_service_grpc().OracleServicer):
    """KerasTuner's Oracle service over our oracle, counting each worker's requests.

    `accept(trial, directory)` is the grid's check of a finished trial's files: None when they
    may count, else the one-line reason the trial fails.
    """

    def __init__(
        self,
        oracle: ResumableGridOracle,
        record: dict[str, Any],
        heartbeat: float,
        accept: Callable[[Trial, Path], str | None] = lambda trial, directory: None,
    ):
        self.oracle, self.record, self.heartbeat, self.accept = oracle, record, heartbeat, accept
        self.requests: dict[str, int] = {}
        self.lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self.lock:
            self.requests[name] = self.requests.get(name, 0) + 1

    def GetSpace(self, request, context):  # noqa: N802 (gRPC's method names)
        self._count("GetSpace")
        return protos.get_service().GetSpaceResponse(
            hyperparameters=self.oracle.get_space().to_proto()
        )

    def UpdateSpace(self, request, context):  # noqa: N802
        self._count("UpdateSpace")  # the grid's space is the chief's: a worker cannot widen it
        return protos.get_service().UpdateSpaceResponse()

    def CreateTrial(self, request, context):  # noqa: N802
        self._count("CreateTrial")
        trial = self.oracle.create_trial(caller(context) or request.tuner_id)
        return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

    def UpdateTrial(self, request, context):  # noqa: N802
        self._count("UpdateTrial")
        if not self.oracle.holds(caller(context), request.trial_id):
            trial = self.oracle.get_trial(request.trial_id)  # not the caller's: ignored
        else:
            trial = self.oracle.update_trial(request.trial_id, request.metrics, step=request.step)
        return protos.get_service().UpdateTrialResponse(trial=trial.to_proto())

    def EndTrial(self, request, context):  # noqa: N802
        self._count("EndTrial")
        trial = Trial.from_proto(request.trial)
        if self.oracle.holds(caller(context), trial.trial_id):
            self.oracle.end_trial(trial)
        return protos.get_service().EndTrialResponse()

    def GetTrial(self, request, context):  # noqa: N802
        self._count("GetTrial")
        trial = self.oracle.get_trial(request.trial_id)
        return protos.get_service().GetTrialResponse(trial=trial.to_proto())

    def GetBestTrials(self, request, context):  # noqa: N802
        self._count("GetBestTrials")
        trials = self.oracle.get_best_trials(request.num_trials)
        return protos.get_service().GetBestTrialsResponse(trials=[t.to_proto() for t in trials])

    # Ours, on the same port.
    def Record(self, request: bytes, context) -> bytes:  # noqa: N802
        self._count("Record")
        return json.dumps({"record": self.record, "heartbeat": self.heartbeat}).encode()

    def Heartbeat(self, request: bytes, context) -> bytes:  # noqa: N802
        self._count("Heartbeat")
        trial_id = request.decode(errors="replace")
        held = self.oracle.holds(caller(context), trial_id) and self.oracle.report(trial_id)
        return b"1" if held else b"0"

    def PutFiles(self, request: bytes, context) -> bytes:  # noqa: N802
        self._count("PutFiles")
        try:
            trial_id = read_header(request)["trial_id"]
        except UploadRejected as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not self.oracle.holds(caller(context), trial_id) or not self.oracle.report(trial_id):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"trial {trial_id} is not running on this worker (its lease ran out?)",
            )
        target = Path(trial_dir(self.oracle, trial_id))
        staging = None
        try:
            staging = unpack_files(request, target)
            reason = self.accept(self.oracle.trials[trial_id], staging or target)
        except UploadRejected as exc:
            reason = str(exc)
        if reason is not None:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            self.oracle.reject(trial_id, reason)
            print(f"grid chief: trial {trial_id} failed: {reason}", flush=True)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"trial {trial_id}: {reason}")
        if staging is not None:
            move_in(staging, target)
        self.oracle.accept(trial_id)
        return b"ok"

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {name: _unary(getattr(self, name)) for name in ("Record", "Heartbeat", "PutFiles")},
        )


def serve(
    oracle: ResumableGridOracle,
    role: Role,
    record: dict[str, Any],
    heartbeat: float,
    secret: str,
    tls: tuple[bytes, bytes] | None = None,
    accept: Callable[[Trial, Path], str | None] = lambda trial, directory: None,
    grace: float = 2 * IDLE_WAIT[1],
) -> dict[str, int]:
    """Serve the grid until every point has ended, then until every worker has been told to
    stop (or `grace` seconds passed); returns the requests served, by method."""
    servicer = GridServicer(oracle, record, heartbeat, accept)
    server = start_server(servicer, role.address, secret, tls)
    print(f"grid chief: serving on {role.address}{' with TLS' if tls else ''}", flush=True)
    done_at = None
    try:
        while True:
            time.sleep(0.2)
            oracle.expire_leases()
            if not oracle.finished():
                done_at = None
                continue
            done_at = done_at or time.monotonic()
            if not oracle.tuner_ids or time.monotonic() - done_at > grace:
                break
    finally:
        server.stop(grace=1).wait()
    return dict(servicer.requests)


def start_server(
    servicer: GridServicer, address: str, secret: str, tls: tuple[bytes, bytes] | None
) -> grpc.Server:
    """The chief's gRPC server on `address`, behind the secret check (and TLS when given);
    refuses a port that something else already serves."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[SecretCheck(secret)],
        options=SERVER_OPTIONS,
    )
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers([servicer.handlers()])
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(f"--chief {address}: cannot listen there (port in use?)")
    server.start()
    return server


class ChiefUnreachable(UserError, kt.errors.FatalError):
    """Raised by a worker that cannot reach its chief; fatal, so KerasTuner does not retry."""


class GridClient:
    """A worker's view of the chief's oracle: derived from KerasTuner's OracleClient
    (keras_tuner/src/distribute/oracle_client.py, Apache License 2.0), with the grid secret on
    every call, TLS, a bounded wait for the chief that says it waits, and a growing pause
    while no trial is free."""

    def __init__(
        self,
        oracle: kt.Oracle,
        role: Role,
        timeout: float,
        secret: str,
        ca: bytes | None = None,
    ) -> None:
        self._oracle, self.role, self.timeout = oracle, role, timeout
        self.metadata = ((AUTH_KEY, f"Bearer {secret}"), (TUNER_KEY, role.tuner_id))
        self.ca = ca
        if ca is None:
            self.channel = grpc.insecure_channel(role.address, options=OPTIONS)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
            self.channel = grpc.secure_channel(role.address, credentials, options=OPTIONS)
        self.stub = protos.get_service_grpc().OracleStub(self.channel)
        self.ours = {
            name: self.channel.unary_unary(f"/{SERVICE}/{name}")
            for name in ("Record", "Heartbeat", "PutFiles")
        }
        self.tuner_id = role.tuner_id
        self.idle_wait = IDLE_WAIT[0]
        self.idle_asks = 0
        self.multi_worker, self.should_report = False, True  # what KerasTuner's Tuner reads

    def __getattr__(self, name: str) -> Any:
        if name in {"objective", "max_trials", "allow_new_entries", "tune_new_entries"}:
            return getattr(self._oracle, name)
        raise AttributeError(f"GridClient has no attribute {name!r}")

    def wait_for_chief(self) -> None:
        """Until the chief answers: says at once that this worker waits for it, then every
        WAIT_NOTICE seconds with the time left; a UserError when `timeout` runs out."""
        deadline = time.monotonic() + self.timeout
        ready = grpc.channel_ready_future(self.channel)
        first = True
        while True:
            left = deadline - time.monotonic()
            try:
                ready.result(timeout=max(0.01, min(1.0 if first else WAIT_NOTICE, left)))
                return
            except grpc.FutureTimeoutError:
                problem = mismatch(self.role.host, self.role.port, self.ca)
                if problem is not None:
                    ready.cancel()
                    raise ChiefUnreachable(f"--worker {self.role.address}: {problem}") from None
                left = deadline - time.monotonic()
                if left <= 0:
                    ready.cancel()
                    raise ChiefUnreachable(
                        f"cannot reach the grid chief at {self.role.address} within "
                        f"{self.timeout:g} s (deadline_exceeded): start `python -m tuning.grid "
                        f"... --chief {self.role.address}` first, or check the address and "
                        "--chief-timeout"
                    ) from None
                print(
                    f"grid worker {self.tuner_id}: waiting for the grid chief at "
                    f"{self.role.address} ({left:.0f} s left before giving up)",
                    file=sys.stderr,
                    flush=True,
                )
                first = False

    def _call(self, method, request, timeout: float | None = None):
        """Every call waits up to `timeout` for the chief, also across a chief restart: a call
        cut off by the chief's death is sent again (each request is safe to repeat)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                left = max(0.01, deadline - time.monotonic())
                return method(request, wait_for_ready=True, timeout=left, metadata=self.metadata)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise ChiefUnreachable(
                        f"the grid chief at {self.role.address} refused this worker: wrong or "
                        f"missing grid secret (${SECRET_ENV} must equal the chief's, as in its "
                        f"GRID_DIR/{SECRET_FILE})"
                    ) from None
                if exc.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ):
                    raise
                if exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline:
                    time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                    continue
                error = exc
                break
        if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise ChiefUnreachable(
                f"the grid chief at {self.role.address} failed ({error.code().name.lower()}: "
                f"{error.details()}); see the chief's output"
            )
        raise ChiefUnreachable(
            f"cannot reach the grid chief at {self.role.address} within {timeout:g} s "
            f"({error.code().name.lower()}): start `python -m tuning.grid ... --chief "
            f"{self.role.address}` first, or check the address and --chief-timeout"
        )

    def record(self) -> dict[str, Any]:
        self.wait_for_chief()
        return json.loads(self._call(self.ours["Record"], b""))

    def heartbeat(self, trial_id: str, timeout: float) -> bool:
        return self._call(self.ours["Heartbeat"], trial_id.encode(), timeout) == b"1"

    def put_files(self, run_dir: Path, trial_id: str) -> str | None:
        """Send a finished trial's files; None when the chief took them, else why not (the
        trial's lease ran out, or the chief refused the files)."""
        try:
            self._call(self.ours["PutFiles"], pack_files(run_dir, trial_id))
        except grpc.RpcError as exc:
            return exc.details() or exc.code().name.lower()
        return None

    def get_space(self) -> kt.HyperParameters:
        response = self._call(self.stub.GetSpace, protos.get_service().GetSpaceRequest())
        return kt.HyperParameters.from_proto(response.hyperparameters)

    def update_space(self, hyperparameters: kt.HyperParameters) -> None:
        request = protos.get_service().UpdateSpaceRequest(
            hyperparameters=hyperparameters.to_proto()
        )
        self._call(self.stub.UpdateSpace, request)

    def create_trial(self, tuner_id: str) -> Trial:
        request = protos.get_service().CreateTrialRequest(tuner_id=tuner_id)
        trial = Trial.from_proto(self._call(self.stub.CreateTrial, request).trial)
        if trial.status == IDLE:  # every free point is taken: wait before asking again
            self.idle_asks += 1
            time.sleep(self.idle_wait)
            self.idle_wait = min(2 * self.idle_wait, IDLE_WAIT[1])
        else:
            self.idle_wait = IDLE_WAIT[0]
        return trial

    def update_trial(self, trial_id: str, metrics: dict[str, float], step: int = 0) -> Trial:
        request = protos.get_service().UpdateTrialRequest(
            trial_id=trial_id, metrics=metrics, step=step
        )
        return Trial.from_proto(self._call(self.stub.UpdateTrial, request).trial)

    def end_trial(self, trial: Trial) -> None:
        request = protos.get_service().EndTrialRequest(trial=trial.to_proto())
        self._call(self.stub.EndTrial, request)

    def get_trial(self, trial_id: str) -> Trial:
        request = protos.get_service().GetTrialRequest(trial_id=trial_id)
        return Trial.from_proto(self._call(self.stub.GetTrial, request).trial)

    def get_best_trials(self, num_trials: int = 1) -> list[Trial]:
        request = protos.get_service().GetBestTrialsRequest(num_trials=num_trials)
        response = self._call(self.stub.GetBestTrials, request)
        return [Trial.from_proto(t) for t in response.trials]


class Heartbeat:
    """A thread that tells the chief every `interval` seconds that this worker still runs
    `trial_id`; `lost` is set once the chief answers that the trial was handed elsewhere."""

    def __init__(self, client: GridClient, trial_id: str, interval: float) -> None:
        self.client, self.trial_id, self.interval = client, trial_id, interval
        self.stopped, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if not self.client.heartbeat(self.trial_id, timeout=self.interval):
                    self.lost.set()
            except UserError:
                pass  # the chief is away (restarting?); the trial's own calls wait for it

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
