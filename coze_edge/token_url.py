"""
``auth.method: token_url``: short-lived Coze access tokens from the vendor's token service
(``coze-edge token-service``), so that no device holds the JWT app's private key.

The device proves who it is with its own secret (``auth.device_secret_file`` or the
``device_secret`` credential), sent as a bearer token with its device id; the answer is a
Coze access token and how many seconds it lives (relative, so a device whose clock is
still wrong after a boot without network gets it right). The rules are the OAuth keeper's
(coze_edge/login.py):

* In the daemon, :meth:`TokenServiceTokens.run` (the token keeper, a supervised service)
  is the only one that asks: ahead of expiry (:meth:`Token.refresh_at`) and at once when
  Coze refuses the token, which it then names, so that the service does not hand back its
  cached copy. The conversation only waits for a usable token.
* A failure that passes (no network, a timeout, 408, 429, 5xx, a page that is not the
  service's JSON) keeps the current token, used while it lasts, and is retried under the
  supervisor's backoff: :class:`TokenServiceUnavailable`, never sooner than Retry-After.
* A refusal only a person can fix (401/403: the secret is wrong or revoked; another 4xx or
  a redirect: ``auth.token_url`` is wrong) is :class:`TokenServiceRefused`: state
  ``error`` with what to do, asked again after ``auth.refused_retry_s``. The secret is
  read anew for every request, so a corrected file needs no restart.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from coze_edge import __version__
from coze_edge.core.tokens import MAX_LIFETIME_S, MIN_LIFETIME_S, Token
from coze_edge.errors import AuthError, ConfigError, TransientError
from coze_edge.kept_token import Clock, KeptToken
from coze_edge.logs import register_secret

if TYPE_CHECKING:
    from coze_edge.config import Config

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 3600.0
"""A Retry-After longer than this is taken as this."""


class TokenServiceUnavailable(TransientError):
    """The token service could not answer now; the current token is kept."""

    def __init__(self, msg: str, *, retry_after: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after = retry_after


class TokenServiceRefused(TransientError):
    """The token service refused this device: only a person can fix it (``detail`` says
    how); asked again after ``retry_after`` seconds."""

    def __init__(self, msg: str, *, detail: str, retry_after: float) -> None:
        super().__init__(msg)
        self.detail = detail
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # absent, or an HTTP date: the backoff alone
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def _error_text(response: httpx.Response) -> str:
    """The service's own ``error_message`` (or ``error``), if the body is its JSON."""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return ""
    if not isinstance(body, dict):
        return ""
    return str(body.get("error_message") or body.get("error") or "")


def parse_token(body: Any, now: float) -> Token:
    """The token of a token service answer; ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    access, lifetime = body.get("access_token"), body.get("expires_in")
    if not isinstance(access, str) or not access:
        raise ValueError("no access_token")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        raise ValueError(f"expires_in {lifetime!r} is not a number of seconds")
    if not math.isfinite(lifetime) or lifetime <= 0:
        raise ValueError(f"expires_in {lifetime!r} is not a lifetime")
    # Never spin on a token that is (nearly) gone, nor sit on one for months.
    lifetime = min(max(float(lifetime), MIN_LIFETIME_S), MAX_LIFETIME_S)
    return Token(access, "", now + lifetime, now)


class TokenServiceClient:
    """Asks the vendor's token service for this device's Coze token, one request each."""

    def __init__(
        self,
        url: str,
        device_id: str,
        secret: Callable[[], str],
        *,
        refused_retry_s: float = 300.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``secret`` reads the device's secret (called for each request); it raises
        AuthError or ConfigError when there is none to read."""
        self.url = url
        self._device_id = device_id
        self._secret = secret
        self._refused_retry_s = refused_retry_s
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._transport = transport

    def _refused(self, msg: str, detail: str) -> TokenServiceRefused:
        return TokenServiceRefused(msg, detail=detail, retry_after=self._refused_retry_s)

    async def fetch(self, *, now: float, rejected: str | None = None) -> Token:
        """A token, or TokenServiceUnavailable / TokenServiceRefused. ``now``: the time
        of the request; ``rejected``: the token Coze refused, which the service must not
        hand out again."""
        try:
            secret = self._secret()
        except (AuthError, ConfigError) as exc:
            reason = exc.render() if isinstance(exc, ConfigError) else str(exc)
            raise self._refused(
                f"no device secret: {reason}", reason.replace("\n", " ").strip()
            ) from exc
        body: dict[str, str] = {"device_id": self._device_id}
        if rejected is not None:
            body["rejected"] = rejected
        # One client per request: a token is fetched every few minutes at most, and a
        # connection kept open that long would be a stale one.
        async with httpx.AsyncClient(
            timeout=self._timeout,
            trust_env=True,
            transport=self._transport,
            follow_redirects=False,  # the secret goes only where auth.token_url says
            headers={"User-Agent": f"coze-edge/{__version__}"},
        ) as client:
            try:
                response = await client.post(
                    self.url, json=body, headers={"Authorization": f"Bearer {secret}"}
                )
            except httpx.HTTPError as exc:
                raise TokenServiceUnavailable(
                    f"token service {self.url}: {type(exc).__name__}: {exc}"
                ) from exc
        return self._answer(response, now)

    def _answer(self, response: httpx.Response, now: float) -> Token:
        status = response.status_code
        said = _error_text(response)
        said = f": {said}" if said else ""
        if status in (401, 403):
            raise self._refused(
                f"the token service refused this device (HTTP {status}{said})",
                f"the token service refused device {self._device_id}'s secret "
                f"(HTTP {status}{said}): put the secret the vendor issued for this device id "
                "in auth.device_secret_file (or the device_secret credential)",
            )
        if status in (408, 429) or status >= 500:
            raise TokenServiceUnavailable(
                f"token service {self.url}: HTTP {status}{said}",
                retry_after=_retry_after(response),
            )
        if 300 <= status < 500:
            where = response.headers.get("Location")
            moved = f" to {where}" if where and status < 400 else ""
            raise self._refused(
                f"the token service answered HTTP {status}{moved}{said}",
                f"the token service at {self.url} answered HTTP {status}{moved}{said}: "
                "check auth.token_url",
            )
        try:
            return parse_token(response.json(), now)
        except (ValueError, json.JSONDecodeError) as exc:
            # A captive portal's page, a proxy's: says nothing about the device.
            snippet = response.text[:80].replace("\n", " ")
            raise TokenServiceUnavailable(
                f"token service {self.url}: unusable answer ({exc}): {snippet!r}"
            ) from None


class TokenServiceTokens(KeptToken):
    """The TokenSource for ``auth.method: token_url`` (managed or not: kept_token.py).
    ``on_fault`` hears why the service refuses this device, and None once it accepts it
    again.
    """

    def __init__(
        self,
        client: TokenServiceClient,
        *,
        managed: bool = False,
        on_fault: Callable[[str | None], None] = lambda _: None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(managed=managed, clock=clock)
        self._client = client
        self._on_fault = on_fault

    @property
    def current(self) -> Token | None:
        """The token in hand (perhaps expired), None before the first answer."""
        return self._token

    async def _renew(self) -> None:
        await self._fetch()

    # ------------------------------------------------------------------ the keeper

    async def run(self) -> None:
        """The token keeper: a token before the current one needs renewing, and at once
        when Coze refused it; forever. A failure raises (the supervisor retries this
        service after its backoff) and keeps the current token."""
        while True:
            token = self._token
            if token is not None and self._rejected is None:
                wake = token.refresh_at()
                if self._clock.now() < wake:
                    await self._sleep_until(wake)
                    continue
            await self._fetch()
            await self._publish()

    async def _fetch(self) -> None:
        rejected = self._rejected
        try:
            fresh = await self._client.fetch(now=self._clock.now(), rejected=rejected)
        except TokenServiceRefused as exc:
            log.error("! %s", exc.detail)
            self._on_fault(exc.detail)
            raise
        self._on_fault(None)
        register_secret(fresh.access_token)
        if fresh.access_token == rejected:
            raise TokenServiceUnavailable(
                "the token service handed back the token Coze refused; asking again later"
            )
        first = self._token is None
        self._token, self._rejected = fresh, None
        log.info(
            "%s from the token service (valid %.0f s)",
            "access token" if first else "new access token",
            fresh.expires_at - fresh.obtained_at,
        )


def device_secret_reader(config: Config) -> Callable[[], str]:
    """Reads the device's secret for the token service (each call reads it anew); AuthError
    when there is none, ConfigError when its file cannot be read."""
    from coze_edge.config import read_secret

    def read() -> str:
        secret = read_secret(config.auth.device_secret_file, "device_secret")
        if not secret:
            raise AuthError(
                "auth.method is token_url but no device secret was found: set "
                "auth.device_secret_file, or give systemd the credential device_secret"
            )
        register_secret(secret)
        return secret

    return read


def token_service_tokens(
    config: Config,
    *,
    managed: bool = False,
    on_fault: Callable[[str | None], None] = lambda _: None,
) -> TokenServiceTokens:
    """The TokenSource of ``auth.method: token_url``. The secret is read once now, so that a
    device without one stops at start (AuthError: exit 77; an unreadable file: 78)."""
    if not config.auth.token_url:
        raise AuthError("auth.method is token_url but auth.token_url is not set")
    secret = device_secret_reader(config)
    secret()
    client = TokenServiceClient(
        config.auth.token_url,
        config.device.id,
        secret,
        refused_retry_s=config.auth.refused_retry_s,
        connect_timeout=config.coze.connect_timeout_s,
        read_timeout=config.coze.read_timeout_s,
    )
    return TokenServiceTokens(client, managed=managed, on_fault=on_fault)
