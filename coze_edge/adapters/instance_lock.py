"""
One daemon per state directory: two would fight over the token (each rotating the refresh
token under the other), the control socket and the microphone. ``daemon.lock`` in
``state_dir`` is held with ``flock`` for the process's life; the kernel releases it
when the process dies, however it dies, so a stale lock never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from coze_edge.errors import ConfigError


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text(encoding="ascii").strip())
        return f"pid {pid}"
    return "unknown pid"


@contextlib.contextmanager
def only_instance(state_dir: Path) -> Iterator[None]:
    """Hold ``state_dir``'s lock; ConfigError (exit 78) when another process holds it."""
    path = state_dir / "daemon.lock"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(
            [("state_dir", f"cannot use {state_dir}: {exc.strerror or exc}")]
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                [("state_dir", f"another coze-edge ({_holder(path)}) uses {state_dir}")]
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
