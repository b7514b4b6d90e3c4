"""Who may talk to the grid's chief: the shared secret every call carries (made, read and
checked here; one server interceptor compares it before any handler runs), and TLS on the
port: the chief's certificate and key, read and checked as a pair before anything listens, a
worker's CA, and the one-line reason a worker's TLS does not match its chief's (found by one
handshake of Python's ssl, in seconds, where gRPC would retry quietly until --chief-timeout
runs out)."""

from __future__ import annotations

import hmac
import os
import secrets
import socket
import ssl
from pathlib import Path

import grpc

from kboolq.errors import UserError

HANDSHAKE_TIMEOUT = 5.0  # seconds


def read_tls(cert: Path | None, key: Path | None) -> tuple[bytes, bytes] | None:
    """The chief's TLS certificate chain and private key (PEM), both or neither; refused unless
    they are a certificate and its own key."""
    if (cert is None) != (key is None):
        raise UserError("--tls-cert and --tls-key go together (the chief's certificate and key)")
    if cert is None:
        return None
    pair = _read_pem(cert, "--tls-cert"), _read_pem(key, "--tls-key")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise UserError(
            f"--tls-cert {cert} --tls-key {key}: not a certificate and its private key "
            f"({exc.reason or exc})"
        ) from None
    return pair


def read_ca(path: Path | None) -> bytes | None:
    if path is None:
        return None
    data = _read_pem(path, "--tls-ca")
    try:
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise UserError(f"--tls-ca {path}: not a certificate ({exc.reason or exc})") from None
    return data


def _read_pem(path: Path, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot read ({exc.strerror or exc})") from None
    if b"-----BEGIN" not in data:
        raise UserError(f"{flag} {path}: not a PEM file")
    return data


def mismatch(host: str, port: int, ca: bytes | None) -> str | None:
    """Why a worker with this CA (None: no TLS) cannot talk to what listens at host:port, in
    one line; None when the two agree, or when nothing listens there yet."""
    try:
        sock = socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT)
    except OSError:
        return None  # no chief yet: waiting for it is right
    if ca is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cadata=ca.decode("ascii", "replace"))
    try:
        with context.wrap_socket(sock, server_hostname=host):
            pass
    except ssl.SSLCertVerificationError as exc:
        return (
            f"TLS handshake failed: {exc.verify_message}; give --tls-ca the chief's "
            "certificate (or the CA that signed it)"
        )
    except (ssl.SSLError, OSError) as exc:
        if ca is None:
            return None  # a plain chief, as this worker expects
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        return (
            f"TLS handshake failed ({reason}): the chief does not speak TLS; start it with "
            "--tls-cert and --tls-key, or leave out --tls-ca"
        )
    finally:
        sock.close()
    if ca is None:
        return "the chief speaks TLS: give this worker --tls-ca (the chief's certificate)"
    return None


SECRET_ENV = "KBOOLQ_GRID_SECRET"


SECRET_FILE = "grid.secret"


AUTH_KEY = "authorization"  # the metadata key of the secret ("Bearer SECRET")


TUNER_KEY = "kboolq-tuner-id"  # which worker sends a call


def chief_secret(grid_dir: Path) -> str:
    """The secret every call to this chief must carry: $KBOOLQ_GRID_SECRET, else the one in
    GRID_DIR/grid.secret (a resumed grid), else a new one written there, readable by its owner
    only. Says where it comes from, never the secret itself."""
    given = os.environ.get(SECRET_ENV, "")
    if given:
        check_secret(given, f"${SECRET_ENV}")
        print(f"grid chief: workers must present ${SECRET_ENV} (set here)", flush=True)
        return given
    path = Path(grid_dir) / SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    secret = read_secret(path)
    print(
        f"grid chief: the grid secret is in {path} (readable by its owner only); start each "
        f"worker with {SECRET_ENV} set to its content, or with this --out on a shared disk",
        flush=True,
    )
    return secret


def read_secret(path: Path) -> str:
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the grid secret ({exc.strerror or exc})") from None
    if not secret:
        raise UserError(f"{path}: the grid secret file is empty; delete it to make a new one")
    return check_secret(secret, str(path))


def check_secret(secret: str, where: str) -> str:
    """gRPC metadata carries printable ASCII only: a secret with a space, a control character
    or a non-ASCII letter would be refused by every worker's call, so it is refused here."""
    bad = sorted({c for c in secret if not "!" <= c <= "~"})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise UserError(
            f"{where}: the grid secret holds {shown}; use visible ASCII characters only "
            "(letters, digits and punctuation; no spaces), e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return secret


def worker_secret(grid_dir: Path) -> str:
    """$KBOOLQ_GRID_SECRET, else the chief's GRID_DIR/grid.secret when this worker shares the
    chief's --out; a worker with neither stops before it contacts anyone."""
    given = os.environ.get(SECRET_ENV, "")
    if given:
        return check_secret(given, f"${SECRET_ENV}")
    path = Path(grid_dir) / SECRET_FILE
    if path.exists():
        return read_secret(path)
    raise UserError(
        f"no grid secret: set {SECRET_ENV} to the content of the chief's GRID_DIR/{SECRET_FILE} "
        "(the chief prints where it is), or give this worker the chief's --out on a shared disk"
    )


class SecretCheck(grpc.ServerInterceptor):
    """Refuses every call that does not carry the grid's secret, before any handler runs.

    The refusal is a handler that takes the request as a stream and never reads it: a unary
    handler would first wait for the request message on one of the server's threads, so that
    a stranger who opens calls and never sends one could hold every thread (8 did)."""

    def __init__(self, secret: str) -> None:
        self.expected = f"Bearer {secret}".encode()

        def refuse(requests, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong or missing grid secret")

        self.refusal = grpc.stream_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation, details):
        given = dict(details.invocation_metadata or ()).get(AUTH_KEY, "")
        if isinstance(given, bytes):
            given = given.decode("latin-1")
        if hmac.compare_digest(given.encode(), self.expected):
            return continuation(details)
        return self.refusal


def caller(context: grpc.ServicerContext) -> str:
    return dict(context.invocation_metadata() or ()).get(TUNER_KEY, "")
