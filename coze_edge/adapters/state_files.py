"""
The small JSON files in ``state_dir`` (token, bindings, conversation, controls): read
them whatever a power cut, an editor or a bug left there, and write them atomically.

A file that cannot be used (not JSON, the wrong shape, a directory, unreadable) is moved
aside as ``NAME.corrupt-<unix time>`` with one log line and treated as absent: the daemon
goes on with defaults instead of failing at every start, and the bad file is kept for
whoever wants to look at it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from coze_edge.adapters.atomic import atomic_write

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_STATE_FILE_BYTES = 1 << 20
"""No state file of ours is anywhere near this; a bigger one is not ours."""


def read_state(path: Path, parse: Callable[[Any], T], *, what: str) -> T | None:
    """
    ``parse(json)`` of the file at ``path``; None when there is no file, or when it is
    unusable (moved aside, logged once). ``parse`` raises ValueError (or TypeError) for a
    document of the wrong shape; ``what`` names the file's purpose in the log line.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_STATE_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory, no permission, an I/O error
        _set_aside(path, exc.strerror or str(exc), what)
        return None
    try:
        if len(raw) > MAX_STATE_FILE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_FILE_BYTES} bytes")
        return parse(json.loads(raw.decode("utf-8")))
    except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError is a ValueError
        _set_aside(path, str(exc) or type(exc).__name__, what)
        return None


def write_state(path: Path, document: Any) -> None:
    """Replace ``path`` with ``document`` as JSON (mode 0600); OSError when the disk refuses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(document, ensure_ascii=False).encode())


def _set_aside(path: Path, reason: str, what: str) -> None:
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        path.rename(aside)
    except OSError as exc:
        log.error(
            "! %s (%s) is unusable (%s) and cannot be moved aside (%s); ignoring it",
            path,
            what,
            reason,
            exc.strerror or exc,
        )
        return
    log.error("! %s (%s) is unusable (%s); moved to %s", path, what, reason, aside.name)
