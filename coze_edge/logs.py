"""
Logging set-up: one plain line per event; under systemd no timestamps and syslog priority
prefixes (journald keeps the level); secrets masked in every line that leaves the process.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Final, TextIO

_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

# Bearer tokens, Coze token prefixes, and secret-looking keys in JSON or key=value text.
_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+|authorization=)[^\s\"',&]+"),
    re.compile(r"\b(pat_|czu_|czs_|sat_)[A-Za-z0-9_\-]{4,}"),  # czs_: JWT apps' tokens
    re.compile(
        r"(?i)([\"']?(?:access_token|refresh_token|device_code|user_code|password|secret|token)"
        r"[\"']?\s*[:=]\s*[\"']?)([^\"'\s,&}]+)"
    ),
)
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in a log line from now on."""
    if len(value) >= 4:
        _registered.add(value)


def redact(text: str) -> str:
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, "***")
    text = _PATTERNS[0].sub(r"\1***", text)
    text = _PATTERNS[1].sub(r"\1***", text)
    return _PATTERNS[2].sub(r"\1***", text)


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, *, journald: bool) -> None:
        super().__init__(fmt)
        self._journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        if self._journald:
            priority = _PRIORITY.get(record.levelno, 6)
            return "\n".join(f"<{priority}>{line}" for line in text.splitlines())
        return text


def setup_logging(
    level: str = "info",
    *,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    values = os.environ if env is None else env
    journald = bool(values.get("JOURNAL_STREAM"))
    fmt = "%(name)s: %(message)s" if journald else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(fmt, journald=journald))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in ("websockets", "httpx", "httpcore", "aiohttp.access", "asyncio"):
        logging.getLogger(name).setLevel(quiet)
