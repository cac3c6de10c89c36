"""
The fault switches: what a test flips on a running simulator to make Coze misbehave.

``sim.faults`` is read when each request or frame is handled, so a test may flip one
switch, or put a whole new ``Faults()`` in place, at any time. All are off by default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Faults:
    """Switches a test flips at any time; all off by default."""

    reject_handshake: int | None = None
    """Refuse /v1/chat handshakes with this HTTP status."""
    bot_error: int | None = None
    """Open the socket, then answer ``chat.update`` and every turn with an ``error`` of this
    code and no reply: 4015 bot not published to the API channel, 4101 no permission,
    4006 invalid bot id (coze-protocol.md 1.7)."""
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
    bind_error_code: int | None = None
    """Answer bind requests with this business code."""
    token_error_code: str | None = None
    """Answer token requests (device and refresh grants) with this OAuth error."""
