"""
Logging set-up: one plain line per event; under systemd no timestamps and syslog priority
prefixes (journald keeps the level); secrets masked in every line that leaves the process.

:func:`redact` is the one mask, for every way text leaves: log records
(:class:`RedactingFormatter`), what the commands print (:class:`RedactingWriter` over
stdout and stderr, see ``cli``), and MQTT events (:func:`redact_fields`). It masks the
values given to :func:`register_secret` (tokens, the MQTT password, a login's device code,
wherever they are read) and what looks like a credential by its shape.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, Final, TextIO

_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

# Bearer tokens, Coze token prefixes, and secret-looking keys in JSON or key=value text;
# not a config key ("set auth.pat_file", "mqtt.password: unknown key" name no secret).
_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+|authorization=)[^\s\"',&]+"),
    re.compile(r"(?<![.\w])(pat_|czu_|czs_|sat_)[A-Za-z0-9_\-]{8,}"),  # czs_: JWT apps'
    re.compile(
        r"(?i)(?<!\.)([\"']?(?:access_token|refresh_token|device_code|user_code|password|secret|token)"
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


def redact_fields(value: Any) -> Any:
    """``value`` with :func:`redact` applied to every string in it (in dicts and lists, keys
    and values alike); anything else unchanged."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_fields(key): redact_fields(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_fields(item) for item in value]
    return value


class RedactingWriter:
    """
    A text stream that passes what is written to ``target`` through :func:`redact`, a line
    at a time: a secret that arrives in pieces (``print`` writes the text, then the
    newline) is still whole when it is masked. ``flush`` passes on a partial line too, so
    a prompt shows at once. Everything else (``fileno``, ``isatty``, ``encoding``) is the
    target's.
    """

    MAX_PENDING: Final = 64 * 1024
    """A line this long is passed on without waiting for its end."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._pending = ""
        self._lock = threading.Lock()  # a traceback from a thread may interleave with a log

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            end = self._pending.rfind("\n") + 1
            if end == 0 and len(self._pending) >= self.MAX_PENDING:
                end = len(self._pending)
            if end:
                lines, self._pending = self._pending[:end], self._pending[end:]
                self.target.write(redact(lines))
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                rest, self._pending = self._pending, ""
                self.target.write(redact(rest))
            self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def redact_output() -> None:
    """From now on, mask secrets in everything this process writes to stdout and stderr
    (tracebacks included); once is enough, a second call changes nothing."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingWriter):
            setattr(sys, name, RedactingWriter(stream))


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
