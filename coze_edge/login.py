"""
Logging in with a code typed on a phone (OAuth device flow, RFC 8628), and keeping the
token alive for months: refresh ahead of expiry and whenever Coze refuses it; refresh
tokens rotate, so the new pair is saved before it is used; one refresh at a time; a
refresh that fails for good falls back to a new device flow.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, TextIO

from coze_edge.adapters.coze_http import (
    AccessDenied,
    CozeHttp,
    DeviceFlowError,
    DevicePending,
    ExpiredToken,
    SlowDown,
)
from coze_edge.adapters.token_store import TokenStore
from coze_edge.config import Config
from coze_edge.core.backoff import backoff
from coze_edge.core.status import LoginPrompt
from coze_edge.core.tokens import DeviceFlow, Token
from coze_edge.credentials import TokenSource, pat_tokens
from coze_edge.errors import AuthError, CozeAPIError, CozeUnavailable
from coze_edge.logs import register_secret

log = logging.getLogger(__name__)

DENIED_WAIT_S = 60.0
"""After the user denied access, wait this long before offering a new code."""


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.time()))


class DeviceLogin:
    """Runs device flows until the user approves one; shows each code through on_prompt."""

    def __init__(
        self,
        http: CozeHttp,
        client_id: str,
        workspace_id: str | None,
        *,
        clock: Clock,
        on_prompt: Callable[[LoginPrompt | None], None],
    ) -> None:
        self._http = http
        self._client_id = client_id
        self._workspace_id = workspace_id
        self._clock = clock
        self._on_prompt = on_prompt

    async def run(self) -> Token:
        denied_waits = backoff(first=DENIED_WAIT_S, cap=3600.0)
        while True:
            code = await self._http.device_code(self._client_id, self._workspace_id)
            now = self._clock.now()
            flow = DeviceFlow(interval=code.interval, expires_in=code.expires_in, now=now)
            self._on_prompt(
                LoginPrompt(
                    code.user_code,
                    code.verification_url,
                    datetime.fromtimestamp(flow.expires_at, UTC),
                )
            )
            while not flow.expired(self._clock.now()):
                await self._clock.sleep_until(flow.next_poll_at())
                try:
                    token = await self._http.poll_token(self._client_id, code.device_code)
                except DevicePending:
                    flow.on_pending(self._clock.now())
                    continue
                except SlowDown:
                    flow.on_slow_down(self._clock.now())
                    continue
                except ExpiredToken:
                    break
                except AccessDenied:
                    wait = next(denied_waits)
                    log.warning("! the user denied access; a new code in %.0f s", wait)
                    await self._clock.sleep_until(self._clock.now() + wait)
                    break
                self._on_prompt(None)
                return token
            log.info("the login code expired; asking for a new one")


SAVE_RETRY_S = 30.0
"""How often a token the disk refused (full, read-only) is offered to it again."""


class OAuthTokens:
    """The daemon's TokenSource for ``auth.method: device_code``."""

    def __init__(
        self,
        http: CozeHttp,
        store: TokenStore,
        client_id: str,
        workspace_id: str | None = None,
        *,
        clock: Clock | None = None,
        on_prompt: Callable[[LoginPrompt | None], None] | None = None,
    ) -> None:
        self._http = http
        self._store = store
        self._client_id = client_id
        self._workspace_id = workspace_id
        self._clock = clock or SystemClock()
        self._on_prompt = on_prompt
        self._lock = asyncio.Lock()
        self._token = store.load()
        if self._token is not None:
            register_secret(self._token.access_token)
        self.unsaved = False
        """The token in memory is newer than the one on disk (the disk refused it)."""

    async def token(self) -> str:
        async with self._lock:  # one refresh or login in flight; the others share it
            if self._token is None:
                await self._login()
            elif self._token.needs_refresh(self._clock.now()):
                await self._refresh()
            assert self._token is not None
            return self._token.access_token

    async def rejected(self, token: str) -> None:
        async with self._lock:
            if self._token is not None and self._token.access_token == token:
                await self._refresh()

    async def run(self) -> None:
        """The token keeper: refresh ahead of expiry, forever."""
        while True:
            current = self._token
            if current is None:
                await self.token()
                continue
            wake = current.refresh_at()
            if self.unsaved:
                wake = min(wake, self._clock.now() + SAVE_RETRY_S)
            await self._clock.sleep_until(wake)
            if self.unsaved:
                async with self._lock:
                    self._persist()
            await self.token()

    async def _login(self) -> None:
        if self._on_prompt is None:
            raise AuthError("not logged in: run `coze-edge login`")
        login = DeviceLogin(
            self._http,
            self._client_id,
            self._workspace_id,
            clock=self._clock,
            on_prompt=self._on_prompt,
        )
        self._save(await login.run())

    async def _refresh(self) -> None:
        # Another process (coze-edge voices, bind) may have refreshed and rotated the pair
        # already: the one on disk is then the only refresh token that still works.
        stored = self._store.load()
        current = self._token
        if (
            stored is not None
            and current is not None
            and not self.unsaved  # else the one on disk is the stale one
            and stored.access_token != current.access_token
        ):
            self._token = stored
            register_secret(stored.access_token)
            if not stored.needs_refresh(self._clock.now()):
                return
        current = self._token
        assert current is not None
        delays = backoff(first=2.0, cap=60.0)
        while True:
            try:
                fresh = await self._http.refresh(self._client_id, current.refresh_token)
            except (DeviceFlowError, CozeAPIError) as exc:
                if isinstance(exc, CozeAPIError) and (exc.http_status or 0) >= 500:
                    await asyncio.sleep(next(delays))
                    continue
                log.warning("! token refresh refused (%s); logging in again", exc.describe())
                self._token = None
                await self._login()
                return
            except CozeUnavailable as exc:
                if current.expires_at <= self._clock.now():
                    log.warning("! token expired and Coze unreachable: %s", exc)
                await asyncio.sleep(next(delays))
                continue
            self._save(fresh)
            log.info("access token refreshed")
            return

    def _save(self, token: Token) -> None:
        # The old refresh token is dead once a new one is issued: keep the new pair in
        # memory whatever happens, and on disk as soon as the disk takes it.
        register_secret(token.access_token)
        register_secret(token.refresh_token)
        self._token = token
        self._persist()

    def _persist(self) -> None:
        assert self._token is not None
        try:
            self._store.save(self._token)
        except OSError as exc:
            if not self.unsaved:
                log.error(
                    "! cannot save the new token to %s (%s): kept in memory, retrying every %.0f s",
                    self._store.path,
                    exc.strerror or exc,
                    SAVE_RETRY_S,
                )
            self.unsaved = True
            return
        if self.unsaved:
            log.info("token saved to %s", self._store.path)
        self.unsaved = False


def token_source_for(
    config: Config,
    http: CozeHttp,
    *,
    on_prompt: Callable[[LoginPrompt | None], None] | None = None,
) -> TokenSource:
    """PAT or OAuth, as the config says; AuthError when there is nothing to use."""
    if config.auth.method == "pat":
        return pat_tokens(config)
    if not config.auth.client_id:
        raise AuthError("auth.client_id is needed for the device login")
    return OAuthTokens(
        http,
        TokenStore(config.state_dir),
        config.auth.client_id,
        config.auth.workspace_id,
        on_prompt=on_prompt,
    )


def _qr(text: str) -> str:
    import qrcode

    code = qrcode.QRCode(border=1)
    code.add_data(text)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


async def terminal_login(config: Config, *, out: TextIO) -> int:
    """``coze-edge login``: 0 logged in; 77 not possible (wrong method, no client id)."""
    if config.auth.method != "device_code" or not config.auth.client_id:
        print("coze-edge login: set auth.method: device_code and auth.client_id", file=out)
        return 77

    def show(prompt: LoginPrompt | None) -> None:
        if prompt is None:
            return
        print(f"\nOpen {prompt.verification_url.split('?')[0]}", file=out)
        print(f"and enter the code:  {prompt.user_code}\n", file=out)
        print(_qr(prompt.verification_url), file=out)
        print(
            f"(the code expires at {prompt.expires_at:%H:%M:%S} UTC; waiting...)",
            file=out,
            flush=True,
        )

    store = TokenStore(config.state_dir)
    async with CozeHttp(
        config.coze.api_base,
        connect_timeout=config.coze.connect_timeout_s,
        read_timeout=config.coze.read_timeout_s,
    ) as http:
        login = DeviceLogin(
            http,
            config.auth.client_id,
            config.auth.workspace_id,
            clock=SystemClock(),
            on_prompt=show,
        )
        token = await login.run()
    store.save(token)
    print(f"Logged in; the token is saved in {store.path}", file=out)
    return 0
