"""
The device id: one positive int64, as a decimal string, that names this device to Coze.

It goes into the WebSocket ``device_id`` query parameter and is the ``value`` a device binds
through ``POST /v1/connectors/{connector_id}/user_configs``; both must be the same string.
Unless the config sets it, it is derived from ``/etc/machine-id`` so that a vendor can compute
it before shipping (CONTRACT.md, "Device id"). Pure: the caller reads the file.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

INT64_MAX: Final = 2**63 - 1

_DECIMAL = re.compile(r"[1-9][0-9]*", re.ASCII)


def device_id_from_machine_id(text: str) -> str:
    """
    The device id for a machine whose ``/etc/machine-id`` holds ``text``.

    The first 16 hex digits of the SHA-256 of the stripped text, read as an integer and
    masked to 63 bits, in decimal: stable, and a positive int64 (0 only with chance 2**-63).
    """
    digest = hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
    return str(int(digest[:16], 16) & INT64_MAX)


def is_int64_id(s: object) -> bool:
    """Whether ``s`` is a positive int64 in plain decimal: digits only, no sign, no leading 0."""
    return isinstance(s, str) and _DECIMAL.fullmatch(s) is not None and int(s) <= INT64_MAX
