"""
The ids the simulator hands out, shaped like the real server's.

Logids come in two shapes. A REST answer's is 34 characters: 14 digits of local time and
20 upper-case hex digits, as coze-protocol.md 1.4's example
``20241029152003BC531DC784F1897B****``. A WebSocket connection has one logid for its
handshake answer and every event, 53 characters: ``02``, the connection's time in epoch
milliseconds, 32 hex digits that read as an IPv6 address (``fdbd:dc02:...``) and 6 more,
as every logid in the recorded traces, e.g.
``021752474748819fdbddc030017070c0000000000000029f6daa2``. That a refused handshake's logid
has the WebSocket shape too is inferred.
"""

from __future__ import annotations

import secrets
import time
from typing import Final

WEBSOCKET_PATHS: Final = frozenset({"/v1/chat", "/v1/audio/transcriptions", "/v1/audio/speech"})
"""Paths served by Coze's WebSocket host (coze-protocol.md 1.1); only /v1/chat is simulated."""


def logid_for(path: str) -> str:
    return ws_logid() if path in WEBSOCKET_PATHS else rest_logid()


def rest_logid() -> str:
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def ws_logid() -> str:
    millis = int(time.time() * 1000)
    address = f"fdbddc0{secrets.choice('23')}{secrets.token_hex(4)}{secrets.randbelow(256):016x}"
    return f"02{millis}{address}{secrets.token_hex(3)}"


def numeric_id() -> str:
    """A 19-digit resource id (chat, conversation, message), a string as on the wire."""
    return str(7_000_000_000_000_000_000 + secrets.randbelow(10**18))
