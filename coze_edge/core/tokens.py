"""OAuth tokens and RFC 8628 polling rules: pure, the time is passed in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

REFRESH_MARGIN_S = 120.0
"""Refresh this long before expiry (or at 80 % of a shorter lifetime)."""


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

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "obtained_at": self.obtained_at,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Token:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("token file is not a JSON object")
        access, refresh = data.get("access_token"), data.get("refresh_token", "")
        expires, obtained = data.get("expires_at"), data.get("obtained_at", 0.0)
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            raise ValueError("token file lacks access_token")
        if not isinstance(expires, int | float) or not isinstance(obtained, int | float):
            raise ValueError("token file has no valid expires_at")
        return cls(access, refresh, float(expires), float(obtained))


MIN_INTERVAL_S = 5.0


class DeviceFlow:
    """When to poll for the device-flow token (RFC 8628 section 3.5)."""

    def __init__(self, *, interval: float, expires_in: float, now: float) -> None:
        self.interval = max(MIN_INTERVAL_S, float(interval or MIN_INTERVAL_S))
        self.expires_at = now + expires_in
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
