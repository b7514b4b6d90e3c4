"""TLS on the grid's port: the chief's certificate and key, read and checked as a pair before
anything listens, a worker's CA, and the one-line reason a worker's TLS does not match its
chief's (found by one handshake of Python's ssl, in seconds, where gRPC would retry quietly
until --chief-timeout runs out)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

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
