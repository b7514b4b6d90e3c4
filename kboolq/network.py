"""Fail fast, with the offline alternative named, when a download source cannot be reached.

Hugging Face and TFDS clients retry for minutes when the network is missing; one short socket
probe before them turns that into an immediate, readable error.
"""

from __future__ import annotations

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


def require_host(host: str, what: str, alternative: str, port: int = 443) -> None:
    """Raise UserError within PROBE_TIMEOUT_S when `host` cannot be reached."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(
            f"cannot reach {host} to download {what} ({exc.strerror or exc}).\n"
            f"Work offline instead: {alternative}"
        ) from None
