"""
Logging in with a code typed on a phone (OAuth device flow, RFC 8628), and keeping the
token alive for months with nobody around.

The rules, in the order they matter to a device in a kitchen:

* A refresh token is thrown away only when Coze says it is dead (``invalid_grant`` and
  the like, :func:`refresh_token_dead`). Every other failure of a refresh (no network, a
  timeout, 408, 429, 5xx, a captive portal's HTML page) keeps the pair, in memory and on
  disk, and is retried under the supervisor's backoff, through the access token's expiry
  if need be.
* Refresh tokens rotate: the new pair is kept in memory whatever happens and saved as soon
  as the disk takes it. One refresh at a time; a pair another process (``coze-edge
  voices``) rotated on disk is adopted instead of refreshing a dead one.
* With no token the daemon starts a device flow as soon as Coze answers, shows the code
  (MQTT, ``ctl status``, optionally spoken), and keeps polling through network blips (a
  new code would invalidate the one the person is typing). A ``coze-edge login`` run
  beside it ends the wait: the daemon adopts the token file the moment it appears.

In the daemon, :meth:`OAuthTokens.run` (the token keeper, a supervised service) is the
only one that talks to the token endpoint; the conversation just waits for a usable
token. The commands (``voices``, ``bind``) use :meth:`OAuthTokens.token` directly, which
then refreshes by itself and fails fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar

from coze_edge.adapters.atomic import atomic_write
from coze_edge.adapters.coze_http import (
    AccessDenied,
    CozeHttp,
    DeviceFlowError,
    DevicePending,
    ExpiredToken,
    SlowDown,
    network_advice,
)
from coze_edge.adapters.token_store import TokenStore
from coze_edge.config import DEFAULT_STATE_DIR, Config
from coze_edge.core.backoff import backoff
from coze_edge.core.status import LoginPrompt
from coze_edge.core.tokens import DeviceFlow, Token
from coze_edge.credentials import TokenSource, pat_tokens
from coze_edge.errors import AuthError, CozeAPIError, CozeUnavailable
from coze_edge.kept_token import Clock, KeptToken, SystemClock
from coze_edge.logs import register_secret

log = logging.getLogger(__name__)

DENIED_WAIT_S = 60.0
"""After the user denied access, wait this long before offering a new code."""

SAVE_RETRY_S = 30.0
"""How often a token the disk refused (full, read-only) is offered to it again."""

STORE_POLL_S = 2.0
"""While a login waits: how often the token file is checked for a ``coze-edge login``."""

DEAD_REFRESH_ERRORS = frozenset({"invalid_grant", "invalid_token", "expired_token"})
"""OAuth errors that say the refresh token itself is dead: only these need a new login."""


class LoginDenied(AuthError):
    """The person said no on the phone (only ``coze-edge login`` stops on it)."""


def refresh_token_dead(exc: CozeAPIError) -> bool:
    """Whether a refresh failed because the refresh token is dead (log in again), rather
    than for a reason that passes (network, overload, a proxy's page: retry)."""
    return isinstance(exc, DeviceFlowError) and exc.error in DEAD_REFRESH_ERRORS


def _transient(what: str, exc: CozeAPIError | CozeUnavailable) -> CozeUnavailable:
    """A failure worth retrying, as the TransientError the supervisor's policy retries."""
    if isinstance(exc, CozeUnavailable):
        return CozeUnavailable(f"{what}: {exc}")
    return CozeUnavailable(f"{what}: {exc.describe()}", http_status=exc.http_status)


class DeviceLogin:
    """One device login: codes until the user approves one; each code through on_prompt."""

    def __init__(
        self,
        http: CozeHttp,
        client_id: str,
        workspace_id: str | None,
        *,
        clock: Clock,
        on_prompt: Callable[[LoginPrompt | None], None],
        stop_when_denied: bool = False,
    ) -> None:
        self._http = http
        self._client_id = client_id
        self._workspace_id = workspace_id
        self._clock = clock
        self._on_prompt = on_prompt
        self._stop_when_denied = stop_when_denied

    async def run(self) -> Token:
        """The approved token. CozeUnavailable when no code can be had (the caller retries:
        the supervisor in the daemon); while a code is shown, network trouble only delays
        the next poll, so the code the person is typing stays valid."""
        denied_waits = backoff(first=DENIED_WAIT_S, cap=3600.0)
        while True:
            try:
                code = await self._http.device_code(self._client_id, self._workspace_id)
            except (CozeAPIError, CozeUnavailable) as exc:
                raise _transient("cannot get a login code", exc) from exc
            # Whoever holds the device code gets the token once the person approves; the
            # user code is for showing, and stays readable.
            register_secret(code.device_code)
            now = self._clock.now()
            flow = DeviceFlow(interval=code.interval, expires_in=code.expires_in, now=now)
            self._on_prompt(
                LoginPrompt(
                    code.user_code,
                    code.verification_url,
                    datetime.fromtimestamp(flow.expires_at, UTC),
                )
            )
            token = await self._poll(code.device_code, flow, denied_waits)
            if token is not None:
                self._on_prompt(None)
                return token

    async def _poll(
        self, device_code: str, flow: DeviceFlow, denied_waits: Iterator[float]
    ) -> Token | None:
        trouble: str | None = None
        while not flow.expired(self._clock.now()):
            await self._clock.sleep_until(flow.next_poll_at())
            try:
                token = await self._http.poll_token(self._client_id, device_code)
            except DevicePending:
                flow.on_pending(self._clock.now())
                continue
            except SlowDown:
                flow.on_slow_down(self._clock.now())
                continue
            except ExpiredToken:
                break
            except AccessDenied as exc:
                if self._stop_when_denied:
                    raise LoginDenied(
                        "the login was denied on the phone; run `coze-edge login` again"
                    ) from exc
                wait = next(denied_waits)
                log.warning("! the user denied access; a new code in %.0f s", wait)
                await self._clock.sleep_until(self._clock.now() + wait)
                return None
            except DeviceFlowError as exc:
                log.warning("! the login code was refused (%s); asking for a new one", exc)
                return None
            except (CozeAPIError, CozeUnavailable) as exc:
                # A blip while the person types: keep the code, poll again later.
                reason = exc.describe() if isinstance(exc, CozeAPIError) else str(exc)
                if trouble is None:
                    log.warning("! polling for the login: %s; still waiting", reason)
                trouble = reason
                flow.on_pending(self._clock.now())
                continue
            return token
        log.info("the login code expired; asking for a new one")
        return None


class OAuthTokens(KeptToken):
    """The TokenSource for ``auth.method: device_code`` (managed or not: kept_token.py)."""

    def __init__(
        self,
        http: CozeHttp,
        store: TokenStore,
        client_id: str,
        workspace_id: str | None = None,
        *,
        clock: Clock | None = None,
        on_prompt: Callable[[LoginPrompt | None], None] | None = None,
        managed: bool = False,
    ) -> None:
        super().__init__(managed=managed, clock=clock)
        self._http = http
        self._store = store
        self._client_id = client_id
        self._workspace_id = workspace_id
        self._on_prompt = on_prompt
        self._token = store.load()
        if self._token is not None:
            self._remember(self._token)
        self.unsaved = False
        """The token in memory is newer than the one on disk (the disk refused it)."""

    @property
    def logged_out(self) -> bool:
        """No token at all: a device login is needed."""
        return self._token is None

    async def _renew(self) -> None:
        if self._token is None:
            await self._login()
        else:
            await self._refresh()

    # ------------------------------------------------------------------ the keeper

    async def run(self) -> None:
        """The token keeper: log in, refresh ahead of expiry and when Coze refuses the
        token, save what the disk refused; forever. A transient failure raises
        CozeUnavailable (the supervisor retries this service after its backoff) with the
        token pair kept."""
        while True:
            if self._token is None:
                await self._login_or_adopt()
                await self._publish()
                continue
            if self._rejected is None and not self._token.needs_refresh(self._clock.now()):
                wake = self._token.refresh_at()
                if self.unsaved:
                    wake = min(wake, self._clock.now() + SAVE_RETRY_S)
                await self._sleep_until(wake)
                if self.unsaved:
                    self._persist()
                continue
            async with self._lock:
                await self._refresh()
            await self._publish()

    async def _login_or_adopt(self) -> Token:
        """A device login, or the token a ``coze-edge login`` beside us saves first."""
        if self._on_prompt is None:
            raise AuthError("not logged in: run `coze-edge login`")
        on_prompt = self._on_prompt
        login = DeviceLogin(
            self._http,
            self._client_id,
            self._workspace_id,
            clock=self._clock,
            on_prompt=on_prompt,
        )
        outcome = await _first_of(login.run(), self._token_from_another_login())
        if isinstance(outcome, _Adopted):
            on_prompt(None)
            log.info("logged in by another process (%s); using its token", self._store.path)
            self._remember(outcome.token)
            self._token = outcome.token
            self.unsaved = False
            return outcome.token
        self._save(outcome)
        return outcome

    async def _token_from_another_login(self) -> _Adopted:
        stamp = self._store.stamp()
        while True:
            await asyncio.sleep(STORE_POLL_S)
            now = self._store.stamp()
            if now is None or now == stamp:
                continue
            stamp = now
            found = self._store.load()
            if found is not None and found.expires_at > self._clock.now():
                return _Adopted(found)

    # ------------------------------------------------------------------ one step each

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
        """One refresh. CozeUnavailable when it failed for a passing reason (the pair is
        kept); a dead refresh token leaves no token (the keeper logs in again; a command
        raises AuthError)."""
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
            self._remember(stored)
            if not stored.needs_refresh(self._clock.now()) and stored.access_token != (
                self._rejected
            ):
                return
        current = self._token
        assert current is not None
        try:
            fresh = await self._http.refresh(self._client_id, current.refresh_token)
        except CozeAPIError as exc:
            if not refresh_token_dead(exc):
                raise _transient("token refresh", exc) from exc
            log.warning(
                "! Coze says the refresh token is dead (%s); logging in again", exc.describe()
            )
            self._token = None
            if not self._managed:
                await self._login()
            return
        except CozeUnavailable as exc:
            raise _transient("token refresh", exc) from exc
        self._save(fresh)
        log.info("access token refreshed")

    def _remember(self, token: Token) -> None:
        register_secret(token.access_token)
        register_secret(token.refresh_token)

    def _save(self, token: Token) -> None:
        # The old refresh token is dead once a new one is issued: keep the new pair in
        # memory whatever happens, and on disk as soon as the disk takes it.
        self._remember(token)
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


class _Adopted:
    def __init__(self, token: Token) -> None:
        self.token = token


A = TypeVar("A")
B = TypeVar("B")


async def _first_of(a: Awaitable[A], b: Awaitable[B]) -> A | B:
    """The result of whichever finishes first; the other is cancelled."""
    first = asyncio.ensure_future(a)
    second = asyncio.ensure_future(b)
    try:
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (first, second):
            task.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
    if first in done:
        return first.result()
    return second.result()


def token_source_for(
    config: Config,
    http: CozeHttp,
    *,
    on_prompt: Callable[[LoginPrompt | None], None] | None = None,
    managed: bool = False,
) -> TokenSource:
    """PAT, OAuth or the vendor's token service, as the config says; AuthError when there
    is nothing to use."""
    if config.auth.method == "pat":
        return pat_tokens(config)
    if config.auth.method == "token_url":
        from coze_edge.token_url import token_service_tokens

        return token_service_tokens(config, managed=managed)
    if not config.auth.client_id:
        raise AuthError("auth.client_id is needed for the device login")
    return OAuthTokens(
        http,
        TokenStore(config.state_dir),
        config.auth.client_id,
        config.auth.workspace_id,
        on_prompt=on_prompt,
        managed=managed,
    )


def _qr(text: str) -> str:
    import qrcode

    code = qrcode.QRCode(border=1)
    code.add_data(text)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


def check_writable(directory: Path) -> str | None:
    """Why a token could not be saved in ``directory`` (None: it can): the same atomic
    write the token gets, of a probe file that is removed again."""
    probe = directory / f".login-check.{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(probe, b"")
    except OSError as exc:
        return f"cannot write to {directory}: {exc.strerror or exc}"
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return None


async def terminal_login(config: Config, *, out: TextIO) -> int:
    """``coze-edge login``: 0 logged in; 77 not possible (wrong method, no client id, an
    unwritable state_dir, the code denied); 1 Coze unreachable."""
    if config.auth.method != "device_code" or not config.auth.client_id:
        print("coze-edge login: set auth.method: device_code and auth.client_id", file=out)
        return 77
    problem = check_writable(config.state_dir)
    if problem is not None:
        print(f"coze-edge login: {problem}; {_state_dir_advice(config.state_dir)}", file=out)
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
            stop_when_denied=True,
        )
        try:
            token = await login.run()
        except LoginDenied as exc:
            print(f"coze-edge login: {exc}", file=out)
            return 77
        except CozeUnavailable as exc:
            print(
                f"coze-edge login: cannot reach Coze ({exc}): "
                f"{network_advice(config.coze.api_base)}",
                file=out,
            )
            return 1
    try:
        store.save(token)
    except OSError as exc:  # the disk filled up, or the directory changed, while it waited
        print(
            f"coze-edge login: approved, but the token cannot be saved in {store.path}: "
            f"{exc.strerror or exc}; {_state_dir_advice(config.state_dir)}, then log in again",
            file=out,
        )
        return 77
    print(f"Logged in; the token is saved in {store.path}", file=out)
    return 0


def _state_dir_advice(state_dir: Path) -> str:
    """What to do about a state_dir this user cannot write."""
    if state_dir == DEFAULT_STATE_DIR and not state_dir.exists():
        return (
            f"`sudo scripts/install` creates {state_dir} for the service's user coze-edge "
            f"(or: sudo install -d -m 0700 -o coze-edge -g coze-edge {state_dir})"
        )
    return (
        "run it as the service's user, who owns the state directory "
        "(sudo -u coze-edge coze-edge login), or fix state_dir"
    )
