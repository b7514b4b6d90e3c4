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
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt
from keras_tuner.src import protos  # KerasTuner's compiled Oracle service (no public path)

from kboolq.errors import UserError
from kboolq.files import write_bytes
from tuning.oracle import ResumableGridOracle

Trial = kt.engine.trial.Trial
IDLE = kt.engine.trial.TrialStatus.IDLE
RUNNING = kt.engine.trial.TrialStatus.RUNNING
MAX_MESSAGE = 1 << 30  # a trial's run directory travels in one message
OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]
SERVICE = "kboolq.grid.Grid"
IDLE_WAIT = (0.5, 8.0)  # a worker with nothing to run asks again after 0.5, 1, 2, 4, 8, 8... s
NOT_SENT = {"trial.json"}  # the chief's own file in a trial directory


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


def pack_files(run_dir: Path, trial_id: str) -> bytes:
    """One message: a JSON header line, then a zip of the trial's run directory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(Path(run_dir).iterdir()):
            if path.is_file() and path.name not in NOT_SENT and not path.name.startswith("."):
                archive.write(path, path.name)
    header = {
        "trial_id": trial_id,
        "host": socket.gethostname(),
        "dir": str(Path(run_dir).resolve()),
    }
    return json.dumps(header).encode() + b"\n" + buffer.getvalue()


def unpack_files(message: bytes, trial_dir: Callable[[str], Path]) -> tuple[str, list[str]]:
    """Write a worker's trial files into the chief's trial directory, each file atomically;
    nothing to write when the worker's directory is the chief's (a shared filesystem)."""
    head, _, body = message.partition(b"\n")
    header = json.loads(head)
    target = Path(trial_dir(header["trial_id"])).resolve()
    if header["host"] == socket.gethostname() and Path(header["dir"]) == target:
        return header["trial_id"], []
    written = []
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        for name in archive.namelist():
            if Path(name).name != name or name in NOT_SENT or name.startswith("."):
                raise ValueError(f"unexpected file name {name!r}")
            write_bytes(target / name, archive.read(name))
            written.append(name)
    return header["trial_id"], written


class GridServicer(protos.get_service_grpc().OracleServicer):
    """KerasTuner's Oracle service over our oracle, counting each worker's requests."""

    def __init__(self, oracle: ResumableGridOracle, record: dict[str, Any], heartbeat: float):
        self.oracle, self.record, self.heartbeat = oracle, record, heartbeat
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
        self._count("UpdateSpace")
        hps = kt.HyperParameters.from_proto(request.hyperparameters)
        self.oracle.update_space(hps)
        return protos.get_service().UpdateSpaceResponse()

    def CreateTrial(self, request, context):  # noqa: N802
        self._count("CreateTrial")
        trial = self.oracle.create_trial(request.tuner_id)
        return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

    def UpdateTrial(self, request, context):  # noqa: N802
        self._count("UpdateTrial")
        trial = self.oracle.update_trial(request.trial_id, request.metrics, step=request.step)
        return protos.get_service().UpdateTrialResponse(trial=trial.to_proto())

    def EndTrial(self, request, context):  # noqa: N802
        self._count("EndTrial")
        self.oracle.end_trial(Trial.from_proto(request.trial))
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
        return b"1" if self.oracle.report(request.decode()) else b"0"

    def PutFiles(self, request: bytes, context) -> bytes:  # noqa: N802
        self._count("PutFiles")
        trial_id = json.loads(request.partition(b"\n")[0])["trial_id"]
        if not self.oracle.report(trial_id):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"trial {trial_id} is not running here any more (its lease ran out)",
            )
        unpack_files(request, self.oracle._get_trial_dir)
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
    grace: float = 2 * IDLE_WAIT[1],
) -> dict[str, int]:
    """Serve the grid until every point has ended, then until every worker has been told to
    stop (or `grace` seconds passed); returns the requests served, by method."""
    servicer = GridServicer(oracle, record, heartbeat)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers([servicer.handlers()])
    try:
        bound = server.add_insecure_port(role.address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(f"--chief {role.address}: cannot listen there (port in use?)")
    server.start()
    print(f"grid chief: serving on {role.address}", flush=True)
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


class ChiefUnreachable(UserError, kt.errors.FatalError):
    """Raised by a worker that cannot reach its chief; fatal, so KerasTuner does not retry."""


class GridClient:
    """A worker's view of the chief's oracle (what KerasTuner's OracleClient does), with a
    bounded wait for the chief and a growing pause while no trial is free."""

    def __init__(self, oracle: kt.Oracle, role: Role, timeout: float) -> None:
        self._oracle, self.role, self.timeout = oracle, role, timeout
        self.channel = grpc.insecure_channel(role.address, options=OPTIONS)
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

    def _call(self, method, request, timeout: float | None = None):
        """Every call waits up to `timeout` for the chief, also across a chief restart: a call
        cut off by the chief's death is sent again (each request is safe to repeat)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                left = max(0.01, deadline - time.monotonic())
                return method(request, wait_for_ready=True, timeout=left)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
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
        return json.loads(self._call(self.ours["Record"], b""))

    def heartbeat(self, trial_id: str, timeout: float) -> bool:
        return self._call(self.ours["Heartbeat"], trial_id.encode(), timeout) == b"1"

    def put_files(self, run_dir: Path, trial_id: str) -> bool:
        """Send a finished trial's files; False when the chief no longer counts this trial."""
        try:
            self._call(self.ours["PutFiles"], pack_files(run_dir, trial_id))
        except grpc.RpcError:
            return False
        return True

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
