"""
The fault switches: what a test flips on a running simulator to make Coze misbehave.

``sim.faults`` is read when each request or frame is handled, so a test may flip one
switch, or put a whole new ``Faults()`` in place, at any time. All are off by default.
(Taking the network away is not a switch: ``await sim.go_down()``, ``await sim.come_up()``.)
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final, Literal

from coze_edge.simulator.plugins import ToolCallTurn

DEVICE_GRANT: Final = "urn:ietf:params:oauth:grant-type:device_code"
JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"

Grants = Literal["device", "refresh", "jwt", "both"]
"""Which token requests a ``TokenFault`` answers: the device-code grant's polls, refresh
grants, JWT grants, or all of them ("both": the name it had when there were two)."""

JsonValue = None | bool | int | float | str | list[Any] | dict[str, Any]


class _RealExpiry(enum.Enum):
    REAL_EXPIRY = "real"


REAL_EXPIRY: Final = _RealExpiry.REAL_EXPIRY
"""``Faults.token_expires_in``'s default: issued tokens say when they really expire."""


@dataclass
class TokenFault:
    """
    How the token endpoint answers instead of doing its job, for the next ``times``
    requests of the ``grants`` it applies to.

    Each shape is one a device meets in the field (coze-protocol.md 2.5 says which of them
    end a refresh: only ``invalid_grant``, and ``expired_token``/``access_denied``)::

        TokenFault(503, "<html>Sign in to the hotel Wi-Fi</html>", "text/html")  # portal
        TokenFault(429, '{"code": 4013, "msg": "too many requests"}')
        TokenFault(408, "")
        TokenFault(502, "Bad Gateway", "text/plain")
        TokenFault.slow(delay_s=3.0)  # longer than the client's read timeout
        TokenFault.oauth("invalid_grant", grants="refresh")
    """

    status: int = 200
    body: str | None = None
    """The answer's body, as is. None: the endpoint's own answer, after ``delay_s``."""
    content_type: str = "application/json"
    delay_s: float = 0.0
    """Seconds to wait before answering. A request whose client has gone by then (a read
    timeout) is dropped unanswered: with ``body=None`` it is not carried out, so a refresh
    token stays good when the client never saw its successor."""
    times: int | None = None
    """How many more requests get this answer; counts down as they do. None: every one,
    until the fault is cleared."""
    grants: Grants = "both"

    @classmethod
    def oauth(
        cls,
        error: str,
        *,
        status: int = 400,
        times: int | None = None,
        grants: Grants = "both",
    ) -> TokenFault:
        """An OAuth error answer (``invalid_grant``, ``expired_token``, ...), with every key
        some SDK reads, like the endpoint's own refusals."""
        body = {
            "error_code": error,
            "error": error,
            "error_message": f"simulated {error}",
            "error_description": f"simulated {error}",
        }
        return cls(status, json.dumps(body), times=times, grants=grants)

    @classmethod
    def slow(
        cls, delay_s: float, *, times: int | None = None, grants: Grants = "both"
    ) -> TokenFault:
        """The endpoint's own answer, ``delay_s`` late."""
        return cls(delay_s=delay_s, times=times, grants=grants)

    def take(self, grant: str) -> bool:
        """Whether this fault answers a request of ``grant`` (the body's ``grant_type``);
        if so, one of its ``times`` is used up."""
        kind = {"refresh_token": "refresh", DEVICE_GRANT: "device", JWT_GRANT: "jwt"}.get(grant)
        if self.grants != "both" and self.grants != kind:
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        return True


@dataclass
class Faults:
    """Switches a test flips at any time; all off by default."""

    # ---- the /v1/chat handshake and the configuration of a session
    reject_handshake: int | None = None
    """Refuse /v1/chat handshakes with this HTTP status (403 is what an account without
    the voice WebSocket's whitelisting got, coze-py #171)."""
    bot_error: int | None = None
    """Open the socket, then answer ``chat.update`` and every turn with an ``error`` of this
    code and no reply: 4015 bot not published to the API channel, 4101 no permission,
    4006 invalid bot id (coze-protocol.md 1.7)."""

    # ---- a turn's reply
    close_after_audio_deltas: int | None = None
    """Close the socket mid-reply after this many audio deltas."""
    error_on_complete: int | None = None
    """Answer a committed turn with an ``error`` event of this code instead of a reply."""
    silent: bool = False
    """Accept audio, never reply."""
    delay_s: float = 0.0
    """Wait this long before each reply event (a slow server)."""
    malformed_frame: bool = False
    """Send one non-JSON text frame before each reply."""
    unknown_event: bool = False
    """Send an event of an unknown type before each reply."""
    oversized_frame_bytes: int | None = None
    """Send one frame of this size before each reply."""
    cancel_too_late: bool = False
    """Answer every ``conversation.chat.cancel`` with error 4104 and let the reply go on,
    as when the chat completed just before the cancel arrived (the race a client meets
    when playback outlives the chat)."""

    # ---- device-side plugins (not a fault: the switch that makes the bot call one)
    tool_call: ToolCallTurn | None = None
    """Answer each turn with this tool call, then speak the outputs the client submits
    (simulator/plugins.py)."""

    # ---- REST
    bind_error_code: int | None = None
    """Answer bind requests with this business code."""
    rest_error_code: int | None = None
    """Answer the voice list and conversation create with this business code (4000, 4101,
    4200, 4013, 5000, ...; coze-protocol.md 1.7) and ``rest_error_status``."""
    rest_error_status: int = 200
    """The HTTP status of ``rest_error_code``'s answer: 200, as coze-py's tests mock
    business errors, or the status some other layer would add (coze-protocol.md 1.5)."""

    # ---- the token endpoint
    token_fault: TokenFault | None = None
    """Answer token requests this way (status, body, delay; see ``TokenFault``)."""
    token_error_code: str | None = None
    """Shorthand: answer every token request (both grants) with this OAuth error, HTTP 400,
    until cleared; ``token_fault`` goes first when both are set."""
    token_expires_in: JsonValue | _RealExpiry = REAL_EXPIRY
    """Put this in issued tokens' ``expires_in`` instead of the absolute epoch seconds the
    real server sends (coze-protocol.md 2.3): a relative 900, ``float("nan")`` (written as
    the bare literal NaN, as a broken server would), a string, a negative number, 1e30,
    None (null). The token itself still lives ``access_token_ttl_s``."""
