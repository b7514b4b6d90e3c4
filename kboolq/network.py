"""Fail fast, with the offline alternative named, when a download source cannot be reached.

Hugging Face and TFDS clients retry for minutes when the network is missing; one short socket
probe before them turns that into an immediate, readable error.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from kboolq.errors import UserError

PROBE_TIMEOUT_S = 10.0


def hub_offline() -> bool:
    """True when the user asked the Hugging Face libraries to use their local cache only."""
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def hub_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""


@functools.cache
def unreachable(host: str, port: int = 443) -> str | None:
    """Why `host` cannot be reached (within PROBE_TIMEOUT_S), or None when it can; asked once
    per process, so checking data and vectors from the same hub costs one probe."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def require_host(host: str, what: str, alternative: str, port: int = 443) -> None:
    """Raise UserError within PROBE_TIMEOUT_S when `host` cannot be reached."""
    reason = unreachable(host, port)
    if reason is not None:
        raise UserError(
            f"cannot reach {host} to download {what} ({reason}).\n"
            f"Work offline instead: {alternative}"
        )
