"""
Reading the files the config names (the config itself, secrets) without trusting them.

Only a regular file under a size limit is read. Anything else would hang or exhaust the
daemon before it could say what is wrong: ``/dev/zero`` never ends, a FIFO blocks the open
until someone writes to it, a directory cannot be read. The check is made on the opened
file (``fstat``), so the file cannot be swapped between the check and the read, and the read
itself stops one byte past the limit, for files whose size ``stat`` does not tell (``/proc``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

CONFIG_LIMIT: Final = 256 * 1024
"""The config file's size limit; the documented example is under 8 KiB."""

SECRET_LIMIT: Final = 16 * 1024
"""A secret file's size limit; a token or a password is well under 1 KiB."""

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnusableFile(Exception):
    """Why a file cannot be used: ``str()`` completes "<path> ...", e.g. "is a FIFO, ...";
    :meth:`about` makes the sentence. ``denied``: it could not be opened for lack of
    permission (another user may be allowed to read it)."""

    def __init__(self, reason: str, *, unreadable: bool = False, denied: bool = False) -> None:
        super().__init__(reason)
        self.unreadable = unreadable
        self.denied = denied

    def about(self, name: str) -> str:
        """The sentence for the file called ``name`` (its path, or "the file")."""
        return f"cannot read {name}: {self}" if self.unreadable else f"{name} {self}"


def read_regular_file(path: Path, *, limit: int) -> bytes:
    """The bytes of ``path``: a regular file (symlinks followed) of at most ``limit`` bytes.

    Raises UnusableFile saying why not: it cannot be opened, is not a regular file, or is
    too large. Never blocks on a FIFO and never reads more than ``limit`` + 1 bytes.
    """
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        denied = isinstance(exc, PermissionError)
        raise UnusableFile(str(exc.strerror or exc), unreadable=True, denied=denied) from exc
    try:
        refuse_unless_regular(os.fstat(fd), limit=limit)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise UnusableFile(str(exc.strerror or exc), unreadable=True) from exc
    finally:
        os.close(fd)
    if left <= 0:
        raise UnusableFile(f"is over the limit of {limit} bytes")
    return b"".join(chunks)


def regular_file_problem(path: Path, *, limit: int) -> str | None:
    """What makes ``path`` unusable as :func:`read_regular_file` would find it, from its
    ``stat`` alone (no read, so no read permission needed); None if it looks fine or does
    not exist (the read that uses it says so)."""
    try:
        status = path.stat()
    except OSError:
        return None
    try:
        refuse_unless_regular(status, limit=limit)
    except UnusableFile as exc:
        return str(exc)
    return None


def refuse_unless_regular(status: os.stat_result, *, limit: int) -> None:
    """Raise UnusableFile unless ``status`` is a regular file of at most ``limit`` bytes."""
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "an unusual file")
        raise UnusableFile(f"is {kind}, not a regular file")
    if status.st_size > limit:
        raise UnusableFile(f"is {status.st_size} bytes, over the limit of {limit} bytes")
