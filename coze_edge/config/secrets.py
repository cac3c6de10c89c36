"""
Secrets never sit in the config file: :func:`read_secret` reads them from the files the
``*_file`` keys name, or from systemd's ``$CREDENTIALS_DIRECTORY``.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from coze_edge.errors import ConfigError

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
    path: Path | None, credential: str, *, env: Mapping[str, str] | None = None
) -> str | None:
    """
    A secret, stripped: from ``path`` if given (a ``*_file`` key), else from the systemd
    credential ``$CREDENTIALS_DIRECTORY/<credential>`` if there is one, else None.

    An unreadable or empty file is a ConfigError naming the key or credential. The secret is
    never logged; a file that every user may read gets a warning.
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
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([(key, f"cannot read {path}: {exc.strerror or exc}")]) from exc
    except ValueError as exc:
        raise ConfigError([(key, f"{path} is not UTF-8 text")]) from exc
    if not secret:
        raise ConfigError([(key, f"{path} is empty")])
    return secret
