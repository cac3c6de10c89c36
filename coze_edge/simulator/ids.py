"""The ids the simulator hands out, shaped like the real server's."""

from __future__ import annotations

import secrets
import time


def rest_logid() -> str:
    """
    A REST logid: 14 digits of local time, then 20 upper-case hex digits (34 characters).

    The shape of coze-protocol.md 1.4's example, ``20241029152003BC531DC784F1897B****``.
    """
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def numeric_id() -> str:
    """A 19-digit resource id (chat, conversation, message), a string as on the wire."""
    return str(7_000_000_000_000_000_000 + secrets.randbelow(10**18))
