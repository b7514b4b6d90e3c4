"""python -m kboolq.serve RUN_DIR: answer yes/no questions over HTTP (JSON), on Starlette and
uvicorn (the ASGI stack).

POST /predict takes one row {"question": ..., "passage": ...} or a list of them and answers each
with {"p_yes", "answer"}, or {"error"} for a row it cannot answer (a missing field, no word in
the vocabulary): a list gets a list back, in order. GET /health says the service is up and what
it serves; GET /card returns the run's model card (README.md).

Rows of concurrent requests are gathered into one batch for the model (up to --max-batch rows,
waiting at most --batch-wait ms for more). Requests are bounded: --max-rows rows and
--max-chars characters per field, else 413 with the reason; a body that is not JSON is 400.
It listens on 127.0.0.1 unless --host says otherwise; it has no authentication of its own, so
put it behind one (a reverse proxy with TLS and auth) before opening it to a network.
"""

from __future__ import annotations

import kboolq.backend  # noqa: F401  (first: picks Keras's backend, see its docstring)

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kboolq.api import OpenRun, open_run
from kboolq.card import CARD
from kboolq.cli import add_cache_argument, add_threads_argument, cache_dir, run_command
from kboolq.data.boolq import Row, parse_row
from kboolq.data.layout import vocabulary_problem
from kboolq.errors import UserError
from kboolq.threads import set_threads

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Limits:
    max_rows: int = 64  # rows per request
    max_chars: int = 20_000  # characters per question or passage
    max_batch: int = 64  # rows per model call
    batch_wait: float = 0.005  # seconds a batch waits for more rows

    @property
    def max_body(self) -> int:  # bytes: every field at its longest, JSON-escaped, and slack
        return self.max_rows * (2 * 6 * self.max_chars + 200) + 1024


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

    def __init__(self, run: OpenRun, limits: Limits, threshold: float) -> None:
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
                problem = vocabulary_problem(
                    row, self.run.glove, self.run.info.data.accents, self.run.info.layout.word_chars
                )
                if problem is not None:
                    raise UserError(f"{where}: {problem}")
            except UserError as exc:
                rows.append(None)
                errors.append({"error": str(exc)})
                continue
            rows.append(row)
            errors.append(None)
        return rows, errors, single

    async def answer(self, body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON answer) for a POST /predict body."""
        try:
            rows, errors, single = self.parse(body)
        except TooLarge as exc:
            return 413, {"error": str(exc)}
        except ValueError as exc:
            return 400, {"error": str(exc)}
        answerable = [row for row in rows if row is not None]
        try:
            scores = iter(await self.score(answerable) if answerable else [])
        except UserError as exc:  # a model that answers NaN: damaged weights or vectors
            return 500, {"error": str(exc)}
        answers = []
        for row, error in zip(rows, errors, strict=True):
            if row is None:
                answers.append(error)
                continue
            p_yes = next(scores)
            answers.append({"p_yes": p_yes, "answer": "yes" if p_yes >= self.threshold else "no"})
        return 200, answers[0] if single else answers


def app(answerer: Answerer):
    """The Starlette application around `answerer`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    limit = answerer.limits.max_body

    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": f"the body is over {limit} bytes"}, status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return JSONResponse({"error": f"the body is over {limit} bytes"}, status_code=413)
        status, answer = await answerer.answer(bytes(body))
        return JSONResponse(answer, status_code=status)

    async def health(request: Request):
        run = answerer.run
        return JSONResponse({"status": "ok", "run": run.path.name, "arch": run.info.config.arch})

    async def card(request: Request):
        path = answerer.run.path / CARD
        if not path.exists():
            return JSONResponse(
                {"error": f"{answerer.run.path.name} has no model card (a run made before "
                 "cards; fit it again to get one)"},
                status_code=404,
            )  # fmt: skip
        return PlainTextResponse(path.read_text(), media_type="text/markdown")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await answerer.start()
        yield
        await answerer.stop()

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/card", card, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


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


def _check_port(host: str, port: int) -> None:
    """A one-line error, before the model loads, for a port that cannot be served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"--host {host} --port {port}: cannot listen there ({exc.strerror})"
            ) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    set_threads(args.threads)
    for name in ("max_rows", "max_chars", "max_batch"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.batch_wait <= 1000:
        raise UserError("--batch-wait must be from 0 to 1000 ms")
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError(f"--threshold must be from 0 to 1, got {args.threshold}")
    if not 0 < args.port < 65536:
        raise UserError(f"--port must be from 1 to 65535, got {args.port}")
    try:
        import uvicorn
    except ImportError:
        raise UserError("kboolq.serve needs pip install 'kboolq[serve]'") from None
    _check_port(args.host, args.port)
    run = open_run(args.run_dir, cache_dir(args))
    limits = Limits(args.max_rows, args.max_chars, args.max_batch, args.batch_wait / 1000)
    answerer = Answerer(run, limits, args.threshold)
    if args.host not in LOOPBACK:
        print(
            f"kboolq.serve: listening on {args.host}, reachable from other machines, without "
            "authentication: anyone who reaches the port can use the model",
            file=sys.stderr,
        )
    print(
        f"serving {args.run_dir} ({run.info.config.arch}) on http://{args.host}:{args.port}: "
        "POST /predict, GET /health, GET /card; Ctrl-C stops",
        flush=True,
    )
    uvicorn.run(app(answerer), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "kboolq.serve")())
