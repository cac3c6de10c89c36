"""
A Coze access token kept alive: what the OAuth login (login.py) and the vendor's token
service (token_url.py) share.

Two ways to use one:

* **managed** (the daemon): a keeper service (the subclass's ``run``, under the
  supervisor) does every renewal. :meth:`KeptToken.token` only waits for a usable token
  (present, not the one Coze refused, not expired), and :meth:`KeptToken.rejected` wakes
  the keeper and waits for a different token. Nothing else talks to the token endpoint, so
  a flaky network costs retries in one place, never a loop.
* **unmanaged** (the commands: ``voices``, ``bind``): :meth:`KeptToken.token` renews by
  itself when needed (one renewal at a time; the others share it) and raises on failure.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from coze_edge.core.tokens import Token


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class SystemClock:
    """Wall-clock time (tokens expire at Unix times), slept in steps of at most a minute,
    so that a clock set by NTP after a boot, or a resume from suspend, is noticed."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        while (left := t - time.time()) > 0:  # noqa: ASYNC110 - waiting for a time, not an event
            await asyncio.sleep(min(left, 60.0))


class KeptToken:
    """The TokenSource half of a kept token; subclasses say how to renew it."""

    def __init__(self, *, managed: bool, clock: Clock | None) -> None:
        self._managed = managed
        self._clock = clock or SystemClock()
        self._token: Token | None = None
        self._rejected: str | None = None
        """The access token Coze refused, until a different one is in hand."""
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._kick = asyncio.Event()

    @property
    def managed(self) -> bool:
        """A keeper service does the renewals (the daemon)."""
        return self._managed

    async def _renew(self) -> None:
        """Unmanaged: get a token now (a login, a refresh, a request); raise on failure."""
        raise NotImplementedError

    # ------------------------------------------------------------------ TokenSource

    async def token(self) -> str:
        if self._managed:
            async with self._changed:
                await self._changed.wait_for(self._usable)
                assert self._token is not None
                return self._token.access_token
        async with self._lock:  # one renewal in flight; the others share it
            if self._token is None or self._token.needs_refresh(self._clock.now()):
                await self._renew()
            assert self._token is not None
            return self._token.access_token

    async def rejected(self, token: str) -> None:
        if self._managed:
            async with self._changed:
                if self._token is not None and self._token.access_token == token:
                    self._rejected = token
                    self._kick.set()
                await self._changed.wait_for(lambda: self._rejected is None)
            return
        async with self._lock:
            if self._token is not None and self._token.access_token == token:
                self._rejected = token
                try:
                    await self._renew()
                finally:
                    self._rejected = None

    def _usable(self) -> bool:
        token = self._token
        return (
            token is not None
            and token.access_token != self._rejected
            and token.expires_at > self._clock.now()
        )

    # ------------------------------------------------------------------ for the keeper

    async def _sleep_until(self, t: float) -> None:
        """Until ``t``, or until :meth:`rejected` asks for a new token."""
        self._kick.clear()
        if self._rejected is not None:
            return
        kicked = asyncio.ensure_future(self._kick.wait())
        slept = asyncio.ensure_future(self._clock.sleep_until(t))
        try:
            await asyncio.wait({kicked, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (kicked, slept):
                task.cancel()
            await asyncio.gather(kicked, slept, return_exceptions=True)

    async def _publish(self) -> None:
        """The token in hand changed: a refused one is forgotten once replaced, and every
        waiter looks again."""
        async with self._changed:
            if self._token is not None and self._token.access_token != self._rejected:
                self._rejected = None
            self._changed.notify_all()
