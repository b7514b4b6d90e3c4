"""python -m kboolq.serve RUN_DIR: answer yes/no questions over HTTP (JSON), on Starlette and
uvicorn (the ASGI stack).

POST /predict takes one row {"question": ..., "passage": ...} or a list of them and answers each
with {"p_yes", "answer"}, or {"error"} for a row it cannot answer (a missing field, no word in
the vocabulary): a list gets a list back, in order. POST /explain does the same for up to
MAX_EXPLAINED rows and adds each word's score (kboolq.explain). GET / is a page to try the
model in a browser (a question, a passage, the answer and the passage's words shaded by their
scores). GET /health says the service is up and what it serves; GET /card returns the run's
model card (README.md).

Rows of concurrent requests are gathered into one batch for the model (up to --max-batch rows,
waiting at most --batch-wait ms for more). Requests are bounded: --max-rows rows and
--max-chars characters per field, else 413 with the reason; a body that is not JSON is 400; one
row that cannot be answered is 422. A client gets READ_TIMEOUT seconds to send its headers and
as many for its body (else the connection is closed, or 408); SIGTERM or Ctrl-C stops the server
within SHUTDOWN_GRACE seconds however its clients behave. It listens on 127.0.0.1 unless --host
says otherwise; it has no authentication of its own, so put it behind one (a reverse proxy with
TLS and auth) before opening it to a network.

The model is the one loaded at start: GET /health gives its model.keras's sha256 and says when
RUN_DIR has been replaced since (restart to serve the new one); /card is that model's card.
"""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.boolq import Row, parse_row
from kboolq.errors import UserError
from kboolq.explain import STEPS, check_explainable, explain
from kboolq.runs.api import OpenMix, OpenRun, answer, check_threshold, open_run
from kboolq.runs.rundir import CARD_FILE, answering_file
from kboolq.threads import set_threads

READ_TIMEOUT = 10.0  # seconds a client has for its request headers, and again for its body
SHUTDOWN_GRACE = 5  # seconds requests in flight get after SIGTERM or Ctrl-C
CONNECTIONS = 256  # open connections at most; more are answered 503 at once
MAX_DEPTH = 8  # JSON nesting a request may have (a list of rows is 2)
# GET /: one self-contained page (kboolq/page.html): its own script and style, nothing fetched
# from anywhere but this server
PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")
PAGE_POLICY = ("default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; "
               "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")  # fmt: skip
MAX_EXPLAINED = 8  # rows per POST /explain: each costs about 2 * explain.STEPS model passes


@dataclass
class Limits:
    max_rows: int = 64  # rows per request
    max_chars: int = 20_000  # characters per question or passage
    max_batch: int = 64  # rows per model call
    batch_wait: float = 0.005  # seconds a batch waits for more rows

    @property
    def max_body(self) -> int:
        """Bytes: every field at its longest in JSON's longest escape (12 bytes, a surrogate
        pair such as \\ud83d\\ude00, for a character outside the BMP), and slack."""
        return self.max_rows * (2 * 12 * self.max_chars + 200) + 1024


def _depth(value: Any) -> int:
    """How deeply JSON `value` nests (a list of rows is 2), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in
                         (value.values() if isinstance(value, dict) else value))  # fmt: skip
    return deepest


class TooLarge(Exception):
    """A request over the limits: answered with 413 and this message."""


@dataclass
class Job:
    rows: list[Row]
    future: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Answerer:
    """The run and the batcher: jobs from concurrent requests share model calls, which run one
    at a time on one thread beside the event loop."""

    def __init__(self, run: OpenRun | OpenMix, limits: Limits, threshold: float) -> None:
        self.run, self.limits, self.threshold = run, limits, threshold
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kboolq-model")
        self.queue: asyncio.Queue[Job] | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._batch_forever())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    async def score(self, rows: list[Row]) -> list[float]:
        job = Job(rows)
        await self.queue.put(job)
        return await job.future

    async def _batch_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0].rows)
            deadline = loop.time() + self.limits.batch_wait
            while size < self.limits.max_batch:
                try:
                    job = await asyncio.wait_for(self.queue.get(), deadline - loop.time())
                except TimeoutError:
                    break
                jobs.append(job)
                size += len(job.rows)
            rows = [row for job in jobs for row in job.rows]
            try:
                scores = await loop.run_in_executor(self.executor, self.run.predict, rows)
            except Exception as exc:  # a damaged model: every waiting request gets the error
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for job in jobs:
                job.future.set_result([float(s) for s in scores[start : start + len(job.rows)]])
                start += len(job.rows)

    def parse(self, body: bytes) -> tuple[list[Row | None], list[dict | None], bool]:
        """The request's rows (None where a row cannot be answered, with its error entry) and
        whether it was a single row; ValueError for a body that is not a row or list of rows,
        TooLarge over the limits."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"the body is not JSON ({exc})") from None
        if _depth(payload) > MAX_DEPTH:
            raise ValueError("the body nests too deeply to be a row or a list of rows")
        single = isinstance(payload, dict)
        records = [payload] if single else payload
        if not isinstance(records, list):
            raise ValueError('send one row {"question": ..., "passage": ...} or a list of rows')
        if len(records) > self.limits.max_rows:
            raise TooLarge(
                f"{len(records)} rows in one request; at most {self.limits.max_rows} (--max-rows)"
            )
        rows: list[Row | None] = []
        errors: list[dict | None] = []
        for index, record in enumerate(records):
            where = "row" if single else f"row {index}"
            for name in ("question", "passage"):
                value = record.get(name) if isinstance(record, dict) else None
                if isinstance(value, str) and len(value) > self.limits.max_chars:
                    raise TooLarge(
                        f"{where}: {name} has {len(value)} characters; at most "
                        f"{self.limits.max_chars} (--max-chars)"
                    )
            try:
                row = parse_row(record, where, labelled=False)
                problem = self.run.problem(row)
                if problem is not None:
                    raise UserError(f"{where}: {problem}")
            except UserError as exc:
                rows.append(None)
                errors.append({"error": str(exc)})
                continue
            rows.append(row)
            errors.append(None)
        return rows, errors, single

    async def answer(self, body: bytes, explaining: bool = False) -> tuple[int, Any]:
        """(HTTP status, JSON answer) for a POST /predict body, or a POST /explain body
        (`explaining`: each answer also has "explanation", kboolq.explain's)."""
        try:
            rows, errors, single = self.parse(body)
            if explaining and len(rows) > MAX_EXPLAINED:
                raise TooLarge(
                    f"{len(rows)} rows to explain in one request; at most {MAX_EXPLAINED} "
                    f"(each costs about {2 * STEPS} model passes)"
                )
        except RecursionError:  # json, or a message's repr, on a deeply nested value
            return 400, {"error": "the body nests too deeply to be a row or a list of rows"}
        except TooLarge as exc:
            return 413, {"error": str(exc)}
        except ValueError as exc:
            return 400, {"error": str(exc)}
        if single and rows[0] is None:
            return 422, errors[0]
        if explaining:
            try:
                check_explainable(self.run)
            except UserError as exc:
                return 501, {"error": str(exc)}
        answerable = [row for row in rows if row is not None]
        explained = iter([])
        try:
            if explaining and answerable:
                loop = asyncio.get_running_loop()
                found = await loop.run_in_executor(self.executor, explain, self.run, answerable)
                scores, explained = iter([e["p_yes"] for e in found]), iter(found)
            else:
                scores = iter(await self.score(answerable) if answerable else [])
        except UserError as exc:  # a model that answers NaN: damaged weights or vectors
            return 500, {"error": str(exc)}
        answers = []
        for row, error in zip(rows, errors, strict=True):
            if row is None:
                answers.append(error)
                continue
            p_yes = next(scores)
            answers.append({"p_yes": p_yes, "answer": answer(p_yes, self.threshold)})
            if explaining:
                answers[-1]["explanation"] = next(explained)
        return 200, answers[0] if single else answers


def app(answerer: Answerer):
    """The Starlette application around `answerer`."""
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    limit = answerer.limits.max_body
    served = Served.of(answerer.run)

    async def predict(request: Request):
        return await respond(request, explaining=False)

    async def explaining(request: Request):
        return await respond(request, explaining=True)

    async def respond(request: Request, explaining: bool):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": f"the body is over {limit} bytes"}, status_code=413)
        body = bytearray()
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        error = {"error": f"the body is over {limit} bytes"}
                        return JSONResponse(error, status_code=413)
        except TimeoutError:
            error = {"error": f"the body did not arrive within {READ_TIMEOUT:g} s"}
            return JSONResponse(error, status_code=408, headers={"connection": "close"})
        except ClientDisconnect:
            _log(request, "disconnected before sending the whole body")
            return Response(status_code=400)  # nobody reads it
        except asyncio.CancelledError:  # shutting down, SHUTDOWN_GRACE passed: the request ends
            _log(request, "had not sent its whole body when the server stopped")
            return Response(status_code=503)
        status, answer = await answerer.answer(bytes(body), explaining)
        return JSONResponse(answer, status_code=status)

    async def page(request: Request):
        return HTMLResponse(PAGE, headers={"content-security-policy": PAGE_POLICY})

    async def health(request: Request):
        run = answerer.run
        return JSONResponse(
            {"status": "ok", "run": run.path.name, "arch": run.info.config.arch,
             "model_sha256": served.sha256, "run_replaced": served.replaced(run.path)}
        )  # fmt: skip

    async def card(request: Request):
        if served.card is None:
            return JSONResponse(
                {"error": f"{answerer.run.path.name} has no model card (a run made before "
                 "cards; fit it again to get one)"},
                status_code=404,
            )  # fmt: skip
        return PlainTextResponse(served.card, media_type="text/markdown")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await answerer.start()
        yield
        await answerer.stop()

    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/explain", explaining, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/card", card, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


@dataclass(frozen=True)
class Served:
    """What was loaded at start: the answering file's (model.keras, or a mix's members.json)
    sha256 and file identity, and the card."""

    sha256: str
    identity: tuple[int, int, int]  # that file's inode, size and mtime when loaded
    card: str | None

    @classmethod
    def of(cls, run: OpenRun | OpenMix) -> Served:
        model = answering_file(run.path)
        digest = hashlib.sha256()
        with open(model, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        card = run.path / CARD_FILE
        text = card.read_text() if card.exists() else None
        return cls(digest.hexdigest(), _identity(model), text)

    def replaced(self, run_dir: Path) -> bool:
        try:
            return _identity(answering_file(run_dir)) != self.identity
        except OSError:
            return True


def _identity(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _log(request: Any, what: str) -> None:
    client = request.client
    who = f"{client.host}:{client.port}" if client else "a client"
    print(f"kboolq.serve: {who} {what}", file=sys.stderr, flush=True)


def _protocol():
    """uvicorn's HTTP/1.1 protocol, with a deadline on the request headers: a connection that
    has not sent a whole request line and headers within READ_TIMEOUT seconds is closed.
    (uvicorn's own keep-alive timer stops at a connection's first byte.)"""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.headers_due = self.loop.call_later(READ_TIMEOUT, self.headers_late)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None:  # a whole request line and headers arrived
                self.headers_due.cancel()

        def connection_lost(self, exc) -> None:
            self.headers_due.cancel()
            super().connection_lost(exc)

        def headers_late(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                who = "{}:{}".format(*self.client) if self.client else "a client"
                print(
                    f"kboolq.serve: {who} sent no whole request within {READ_TIMEOUT:g} s; "
                    "closed",
                    file=sys.stderr, flush=True,
                )  # fmt: skip
                self.transport.close()

    return Protocol


def parser() -> argparse.ArgumentParser:
    limits = Limits()
    p = argparse.ArgumentParser(
        prog="python -m kboolq.serve",
        description="Answer yes/no questions with a trained run over HTTP: POST /predict "
        '(one row {"question", "passage"} or a list; answers {"p_yes", "answer"} or '
        '{"error"} per row), GET /health, GET /card (the model card).',
        epilog="No authentication: it listens on 127.0.0.1 unless --host says otherwise; put a "
        "reverse proxy with TLS and authentication in front before opening it to a network.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run (or ensemble) directory")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--max-rows", type=int, default=limits.max_rows,
        help="most rows in one request; more is refused with 413 (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-chars", type=int, default=limits.max_chars,
        help="most characters in a question or passage; more is 413 (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-batch", type=int, default=limits.max_batch,
        help="most rows per model call, gathered from concurrent requests (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--batch-wait", type=float, default=limits.batch_wait * 1000, metavar="MS",
        help="milliseconds a model call waits for more rows to batch (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--threshold", type=float, default=0.5,
        help="answer yes when P(yes) >= this (default: %(default)s)",
    )  # fmt: skip
    add_cache_argument(p)
    add_threads_argument(p)
    return p


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening before the model loads: a port that cannot be
    served is a one-line error, and of two servers started at once on one port the second
    stops here. SO_REUSEADDR, as uvicorn sets it, lets a restart bind a port in TIME-WAIT."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(CONNECTIONS)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror})"
        ) from None
    return sock


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost reach this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    for name in ("max_rows", "max_chars", "max_batch"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.batch_wait <= 1000:
        raise UserError("--batch-wait must be from 0 to 1000 ms")
    check_threshold(args.threshold)
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be from 1 to 65535, got {args.port}")
    try:
        import uvicorn
    except ImportError:
        raise UserError("kboolq.serve needs pip install 'kboolq[serve]'") from None
    with listen(args.host, args.port) as sock:
        run = open_run(args.run_dir, cache_dir(args))
        limits = Limits(args.max_rows, args.max_chars, args.max_batch, args.batch_wait / 1000)
        answerer = Answerer(run, limits, args.threshold)
        if not is_loopback(args.host):
            print(
                f"kboolq.serve: listening on {args.host}, reachable from other machines, "
                "without authentication: anyone who reaches the port can use the model",
                file=sys.stderr,
            )
        config = uvicorn.Config(
            app(answerer), log_level="warning", http=_protocol(),
            limit_concurrency=CONNECTIONS, timeout_graceful_shutdown=SHUTDOWN_GRACE,
        )  # fmt: skip
        print(
            f"serving {args.run_dir} ({run.info.config.arch}) on {url(args.host, args.port)}: "
            "POST /predict, GET /health, GET /card; Ctrl-C stops",
            flush=True,
        )
        uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.serve")())
