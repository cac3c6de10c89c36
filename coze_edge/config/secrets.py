"""
Secrets never sit in the config file: :func:`read_secret` reads them from the files the
``*_file`` keys name, or from systemd's ``$CREDENTIALS_DIRECTORY``.
"""

from __future__ import annotations

import logging
import os
import types
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from coze_edge.config.files import SECRET_LIMIT, UnusableFile, read_regular_file
from coze_edge.errors import CredentialFileError

log = logging.getLogger(__name__)

CREDENTIAL_KEYS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "coze_pat": "auth.pat_file",
        "device_secret": "auth.device_secret_file",
        "mqtt_password": "mqtt.password_file",
    }
)
"""systemd credential name -> the config key that can name the same secret as a file."""


def warn_if_world_readable(path: Path) -> bool:
    """Log a warning if every user on the machine may read ``path``; whether that was so."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # the read that follows reports it
    if mode & 0o004:
        log.warning("! %s is readable by every user on this machine: chmod 600 it", path)
        return True
    return False


def read_secret(
    path: Path | None,
    credential: str,
    *,
    env: Mapping[str, str] | None = None,
    multiline: bool = False,
) -> str | None:
    """
    A secret, stripped: from ``path`` if given (a ``*_file`` key), else from the systemd
    credential ``$CREDENTIALS_DIRECTORY/<credential>`` if there is one, else None.

    A file :func:`read_secret_file` refuses (unreadable, not a regular file, too large, empty,
    whitespace or control characters inside) is a CredentialFileError (a ConfigError that
    the command line turns into exit 77, no usable credentials) naming the key or credential
    and the file. ``multiline``: a document such as a PEM key, whose lines and spaces are
    part of it (control characters are still refused). The secret is never logged; a file
    that every user may read gets a warning.
    """
    env = os.environ if env is None else env
    if path is not None:
        key = CREDENTIAL_KEYS.get(credential, credential)
    else:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory or not (Path(directory) / credential).exists():
            return None
        path = Path(directory) / credential
        key = f"credential {credential}"
    warn_if_world_readable(path)
    try:
        return read_secret_file(path, multiline=multiline)
    except UnusableFile as exc:
        raise CredentialFileError([(key, exc.about(str(path)))]) from None


def read_secret_file(path: Path, *, multiline: bool = False) -> str:
    """
    The secret in ``path``: a regular file under SECRET_LIMIT, UTF-8, one word once the
    whitespace around it (the trailing newline) is stripped.

    Raises UnusableFile otherwise, saying what is wrong but never showing the content: a
    space, tab, line break or control character inside would be sent as part of the token
    (or password), or would end an HTTP header early.
    """
    raw = read_regular_file(path, limit=SECRET_LIMIT)
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UnusableFile("is not UTF-8 text") from None
    if not secret:
        raise UnusableFile("is empty")
    for position, char in enumerate(secret, start=1):
        if multiline and char in "\r\n\t ":
            continue
        what = _unwanted(char)
        if what:
            raise UnusableFile(
                f"holds {what} inside the secret (character {position}): "
                "a secret is one word, on one line"
            )
    return secret


def _unwanted(char: str) -> str | None:
    """What ``char`` is, if a secret must not contain it: whitespace, a control character,
    or an invisible one (Unicode category C: format, private use, unassigned)."""
    if char in "\r\n":
        return "a line break"
    if char.isspace():
        return "whitespace"
    if unicodedata.category(char).startswith("C"):
        return "a control or invisible character"
    return None
