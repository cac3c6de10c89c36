"""OAuth tokens and RFC 8628 polling rules: pure, the time is passed in."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

REFRESH_MARGIN_S = 120.0
"""Refresh this long before expiry (or at 80 % of a shorter lifetime)."""

DEFAULT_LIFETIME_S = 900.0
"""Assumed when Coze's ``expires_in`` is unusable: the device flow's 15 minutes."""
MIN_LIFETIME_S = 60.0
"""A shorter lifetime is taken as this, so a refresher never spins on a bad answer."""
MAX_LIFETIME_S = 30 * 86400.0
"""A longer one as this (Coze's longest-lived token is 30 days)."""
ABSOLUTE_FROM = 1e9
"""An ``expires_in`` at least this big is a Unix time (Coze's, coze-protocol.md 2.3); a
smaller positive one is taken as the RFC 6749 relative lifetime in seconds."""


def expiry(expires_in: object, now: float) -> tuple[float, str | None]:
    """
    The absolute expiry for a token answer's ``expires_in`` received at ``now``, and why
    it was not taken as given (None when it was). Never raises: the answer also carries a
    new refresh token that must not be thrown away over a bad number.
    """
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return now + DEFAULT_LIFETIME_S, f"expires_in {expires_in!r} is not a number"
    value = float(expires_in)
    if not math.isfinite(value) or value <= 0:
        return now + DEFAULT_LIFETIME_S, f"expires_in {expires_in!r} is not a usable time"
    note = None
    if value < ABSOLUTE_FROM:
        value, note = now + value, f"expires_in {expires_in!r} taken as relative seconds"
    lifetime = value - now
    if lifetime < MIN_LIFETIME_S:
        return now + MIN_LIFETIME_S, f"expires_in {expires_in!r} is (nearly) past"
    if lifetime > MAX_LIFETIME_S:
        return now + MAX_LIFETIME_S, f"expires_in {expires_in!r} is too far ahead"
    return value, note


@dataclass(frozen=True, slots=True)
class Token:
    access_token: str
    refresh_token: str
    expires_at: float
    """Absolute Unix time (Coze's ``expires_in`` is absolute, coze-protocol.md 2.3)."""
    obtained_at: float

    def __repr__(self) -> str:
        return f"Token(expires_at={self.expires_at:.0f})"  # never the secrets

    def refresh_at(self) -> float:
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        return self.expires_at - min(REFRESH_MARGIN_S, lifetime * 0.2)

    def needs_refresh(self, now: float) -> bool:
        return now >= self.refresh_at()

    def to_document(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_document())

    @classmethod
    def from_json(cls, text: str) -> Token:
        return cls.from_document(json.loads(text))

    @classmethod
    def from_document(cls, data: Any) -> Token:
        """From the parsed token file; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("token file is not a JSON object")
        access, refresh = data.get("access_token"), data.get("refresh_token", "")
        expires, obtained = data.get("expires_at"), data.get("obtained_at", 0.0)
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            raise ValueError("token file lacks access_token")
        if not isinstance(expires, int | float) or not isinstance(obtained, int | float):
            raise ValueError("token file has no valid expires_at")
        expires, obtained = float(expires), float(obtained)
        if not (math.isfinite(expires) and math.isfinite(obtained)):
            expires = obtained = 0.0  # keep the refresh token; refresh at once
        return cls(access, refresh, expires, obtained)


MIN_INTERVAL_S = 5.0
MAX_INTERVAL_S = 60.0
"""RFC 8628 polling intervals outside these bounds are taken as the nearest one."""
MAX_CODE_LIFETIME_S = 3600.0
"""A login code is shown for at most this long before a new one is asked for."""


class DeviceFlow:
    """When to poll for the device-flow token (RFC 8628 section 3.5)."""

    def __init__(self, *, interval: float, expires_in: float, now: float) -> None:
        self.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(interval or 0)))
        self.expires_at = now + min(MAX_CODE_LIFETIME_S, max(MIN_INTERVAL_S, float(expires_in)))
        self._next = now + self.interval

    def next_poll_at(self) -> float:
        return self._next

    def on_pending(self, now: float) -> None:
        self._next = now + self.interval

    def on_slow_down(self, now: float) -> None:
        # RFC 8628 3.5: add 5 seconds for this and all subsequent requests.
        self.interval += 5.0
        self._next = now + self.interval

    def expired(self, now: float) -> bool:
        return now >= self.expires_at
