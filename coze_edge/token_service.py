"""
``coze-edge token-service``: the vendor's half of ``auth.method: token_url``, so that no
device holds the JWT app's private key.

A device posts its id with its secret as a bearer token; the service checks the secret,
signs an RS256 JWT for the vendor's Coze JWT app (coze-protocol.md 2.7: header ``kid``;
claims ``iss`` the app id, ``aud`` the Coze API host, ``iat``, ``exp``, a fresh ``jti``,
``session_name`` and ``session_context.device_info`` naming the device, so that Coze
counts usage and quota per device), exchanges it at ``/api/permission/oauth2/token``
(grant ``urn:ietf:params:oauth:grant-type:jwt-bearer``) and hands the access token back.

Stateless, so that a vendor runs as many replicas as the fleet needs behind any load
balancer:

* A device's secret is HMAC-SHA256(master key, device id) (:func:`device_secret`): the
  service needs the master key, not a table; ``token-service issue-secret`` prints the
  secrets to provision.
* Each replica caches each device's token in memory until shortly before it expires
  (:class:`TokenCache`), and runs one exchange per device at a time; a device that Coze
  refused a token for names it, and gets a fresh one.

The device's API (``POST /token``, JSON ``{"device_id": "..."}`` and optionally
``"rejected": "<the token Coze refused>"``, header ``Authorization: Bearer <secret>``):

* 200 ``{"access_token", "expires_in": <seconds left>, "expires_at": <Unix time>,
  "token_type": "Bearer"}``
* 400 a malformed request; 401 an unknown device or a wrong secret (``invalid_client``)
* 429 / 502 / 503 / 504 Coze is rate limiting, refusing the JWT (the vendor's
  configuration: the log says why, with Coze's logid), failing or unreachable: the device
  retries with backoff and keeps its current token meanwhile.

``GET /healthz`` answers 200 for load balancers. Errors carry ``error`` and
``error_message``, the keys Coze's own OAuth errors use.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp
from aiohttp import web

from coze_edge import __version__
from coze_edge.core.events import LOGID_HEADER
from coze_edge.core.identity import is_int64_id
from coze_edge.core.tokens import Token, expiry
from coze_edge.errors import ConfigError

log = logging.getLogger(__name__)

JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH: Final = "/api/permission/oauth2/token"

SECRET_CONTEXT: Final = b"coze-edge device secret v1\x00"
"""Bound into every device secret, so that the master key signs nothing else by accident."""
MIN_MASTER_KEY_CHARS: Final = 32

JWT_LIFETIME_S: Final = 300
"""The signed JWT is exchanged at once; Coze takes each one only once (``jti``)."""
TOKEN_LIFETIME_S: Final = 3600
"""The access token lifetime asked of Coze (``duration_seconds``) by default."""
MIN_TOKEN_LIFETIME_S: Final = 600
MAX_TOKEN_LIFETIME_S: Final = 86399
"""Coze's limit for ``duration_seconds``."""
CACHE_MIN_LEFT_S: Final = 300.0
"""A cached token is handed out only with at least this long (or half its life) left: a
device renews 2 minutes (or a fifth of the life it got) before expiry, and must then get
a new one, not the copy it is renewing."""

MASTER_KEY_CREDENTIAL: Final = "token_master_key"
PRIVATE_KEY_CREDENTIAL: Final = "coze_jwt_private_key"


def device_secret(master_key: bytes, device_id: str) -> str:
    """The secret of ``device_id``: HMAC-SHA256 under the master key, base64url (43 chars)."""
    mac = hmac.new(master_key, SECRET_CONTEXT + device_id.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def read_master_key(path: Path | None) -> bytes:
    """The master key from ``path`` or the ``token_master_key`` credential; ConfigError
    when there is none or it is short."""
    from coze_edge.config import read_secret

    text = read_secret(path, MASTER_KEY_CREDENTIAL)
    if text is None:
        raise ConfigError(
            [
                (
                    "--master-key-file",
                    f"required (or the systemd credential {MASTER_KEY_CREDENTIAL})",
                )
            ],
            source="token-service",
        )
    if len(text) < MIN_MASTER_KEY_CHARS:
        raise ConfigError(
            [
                (
                    "--master-key-file",
                    f"the master key must be at least {MIN_MASTER_KEY_CHARS} characters "
                    "(make one with: openssl rand -base64 48)",
                )
            ],
            source="token-service",
        )
    return text.encode()


# --------------------------------------------------------------------------- signing


class JwtSigner:
    """Signs the JWT app's RS256 JWTs (coze-protocol.md 2.7)."""

    def __init__(self, *, app_id: str, key_id: str, private_key_pem: str, audience: str) -> None:
        try:
            import jwt
            from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
        except ImportError as exc:
            raise ConfigError(
                [("", f"{exc.name} is missing: pip install 'coze-edge[token-service]'")],
                source="token-service",
            ) from None
        try:
            key = load_pem_private_key(private_key_pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                [("--private-key-file", f"not a PEM private key without a passphrase: {exc}")],
                source="token-service",
            ) from None
        if not isinstance(key, RSAPrivateKey):
            raise ConfigError(
                [("--private-key-file", "Coze's JWT apps use RSA keys (RS256)")],
                source="token-service",
            )
        del jwt  # imported to check it is there; sign() uses it
        self._key = key
        self.app_id = app_id
        self.key_id = key_id
        self.audience = audience

    def sign(self, device_id: str, *, now: float, custom_consumer: str | None = None) -> str:
        """A JWT for one exchange on behalf of ``device_id``."""
        device_info = {"device_id": device_id}
        if custom_consumer:
            device_info["custom_consumer"] = custom_consumer
        issued = int(now)
        claims: dict[str, Any] = {
            "iss": self.app_id,
            "aud": self.audience,
            "iat": issued,
            "exp": issued + JWT_LIFETIME_S,
            "jti": secrets.token_urlsafe(32),  # Coze: random, over 32 bytes, never reused
            "session_name": device_id,  # conversation isolation per device
            "session_context": {"device_info": device_info},
        }
        import jwt

        headers = {"kid": self.key_id, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)


# --------------------------------------------------------------------------- the cache


class TokenCache:
    """Each device's newest access token, handed out while enough of its life is left."""

    def __init__(self, lifetime_s: float) -> None:
        self.min_left_s = min(CACHE_MIN_LEFT_S, lifetime_s / 2)
        self._tokens: dict[str, Token] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._tokens)

    def get(self, device_id: str, now: float) -> Token | None:
        token = self._tokens.get(device_id)
        if token is None or token.expires_at - now < self.min_left_s:
            return None
        return token

    def put(self, device_id: str, token: Token, now: float) -> None:
        self._tokens[device_id] = token
        if len(self._tokens) >= self._sweep_at:
            # Devices that went quiet: drop what has expired, at most once per doubling.
            self._tokens = {d: t for d, t in self._tokens.items() if t.expires_at > now}
            self._sweep_at = max(1024, 2 * len(self._tokens))

    def drop(self, device_id: str) -> None:
        self._tokens.pop(device_id, None)


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class ExchangeFailed(Exception):
    """Coze did not give a token; ``status`` and ``body`` are what the device gets."""

    def __init__(self, status: int, error: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.retry_after = retry_after


def _error(
    status: int, error: str, message: str, *, retry_after: float | None = None
) -> web.Response:
    headers = {"Retry-After": str(round(retry_after))} if retry_after is not None else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="coze-edge"'
    return web.json_response(
        {"error": error, "error_message": message}, status=status, headers=headers
    )


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """What ``coze-edge token-service serve`` is told; secrets are left out of the repr."""

    app_id: str
    key_id: str
    private_key_pem: str = field(repr=False)
    master_key: bytes = field(repr=False)
    coze_api_base: str = "https://api.coze.cn"
    token_lifetime_s: int = TOKEN_LIFETIME_S
    custom_consumer: str | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        if not self.app_id.strip():
            problems.append(("--app-id", "required: the JWT app's id (the JWT's iss)"))
        if not self.key_id.strip():
            problems.append(("--key-id", "required: the public key's fingerprint (the kid)"))
        parts = urllib.parse.urlsplit(self.coze_api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(("--coze-api-base", f"not an http(s) URL: {self.coze_api_base!r}"))
        if not MIN_TOKEN_LIFETIME_S <= self.token_lifetime_s <= MAX_TOKEN_LIFETIME_S:
            problems.append(
                (
                    "--token-lifetime",
                    f"must be {MIN_TOKEN_LIFETIME_S} to {MAX_TOKEN_LIFETIME_S} s "
                    f"(Coze's limit), got {self.token_lifetime_s}",
                )
            )
        if problems:
            raise ConfigError(problems, source="token-service")

    @property
    def audience(self) -> str:
        """The JWT's ``aud``: the Coze API host (``api.coze.cn``)."""
        return urllib.parse.urlsplit(self.coze_api_base).netloc


class TokenService:
    """The service on one port. ``async with TokenService(settings) as service:``."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        """The port it listens on; the real one once started with ``port=0``."""
        self.signer = JwtSigner(
            app_id=settings.app_id,
            key_id=settings.key_id,
            private_key_pem=settings.private_key_pem,
            audience=settings.audience,
        )
        self.cache = TokenCache(settings.token_lifetime_s)
        self.hits = 0
        """Tokens handed out from the cache."""
        self.exchanges = 0
        """JWTs exchanged at Coze (successful or not)."""
        self.refused = 0
        """Requests refused for a wrong or missing secret."""
        self._coze: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Task[Token]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where devices post (``auth.token_url``)."""
        return f"http://{self.host}:{self.port}/token"

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([web.post("/token", self._token), web.get("/healthz", self._healthz)])
        return app

    async def start(self) -> None:
        # aiohttp rather than httpx here: httpx's pool costs more CPU than the RSA
        # signature once hundreds of exchanges are in flight (a fleet after an outage).
        self._coze = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                connect=self.settings.connect_timeout_s, sock_read=self.settings.read_timeout_s
            ),
            trust_env=True,
            headers={"User-Agent": f"coze-edge-token-service/{__version__}"},
        )
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._coze is not None:
            await self._coze.close()
            self._coze = None

    async def __aenter__(self) -> TokenService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ endpoints

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _token(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            return _error(400, "invalid_request", "the body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "the body must be a JSON object")
        device_id, rejected = body.get("device_id"), body.get("rejected")
        if not is_int64_id(device_id):
            return _error(400, "invalid_request", "device_id must be a positive int64 in decimal")
        assert isinstance(device_id, str)
        if rejected is not None and not isinstance(rejected, str):
            return _error(400, "invalid_request", "rejected must be the refused token")
        header = request.headers.get("Authorization", "")
        presented = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        expected = device_secret(self.settings.master_key, device_id)
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            self.refused += 1
            log.warning("! device %s: wrong or missing secret", device_id)
            return _error(401, "invalid_client", "unknown device or wrong secret")
        try:
            token = await self.token_for(device_id, rejected=rejected)
        except ExchangeFailed as exc:
            return _error(exc.status, exc.error, exc.message, retry_after=exc.retry_after)
        now = time.time()
        return web.json_response(
            {
                "access_token": token.access_token,
                "expires_in": max(1, int(token.expires_at - now)),
                "expires_at": int(token.expires_at),
                "token_type": "Bearer",
            }
        )

    # ------------------------------------------------------------------ tokens

    async def token_for(self, device_id: str, *, rejected: str | None = None) -> Token:
        """The device's token: the cached one, else one exchange (shared by every request
        for the device meanwhile). ExchangeFailed when Coze gave none."""
        cached = self.cache.get(device_id, time.time())
        if cached is not None:
            if cached.access_token != rejected:
                self.hits += 1
                return cached
            self.cache.drop(device_id)
        task = self._inflight.get(device_id)
        if task is None:
            task = asyncio.create_task(self._exchange(device_id), name=f"exchange-{device_id}")
            self._inflight[device_id] = task
            task.add_done_callback(lambda done: self._finished(device_id, done))
        # A device that hangs up must not cancel the exchange the others wait for.
        return await asyncio.shield(task)

    def _finished(self, device_id: str, task: asyncio.Task[Token]) -> None:
        if self._inflight.get(device_id) is task:
            del self._inflight[device_id]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have hung up

    async def _exchange(self, device_id: str) -> Token:
        assert self._coze is not None, "the service is not started"
        self.exchanges += 1
        now = time.time()
        assertion = self.signer.sign(
            device_id, now=now, custom_consumer=self.settings.custom_consumer
        )
        body = {"grant_type": JWT_GRANT, "duration_seconds": self.settings.token_lifetime_s}
        try:
            async with self._coze.post(
                self.settings.coze_api_base + TOKEN_PATH,
                json=body,
                headers={"Authorization": f"Bearer {assertion}"},
            ) as response:
                answer = _Answer(response.status, response.headers.copy(), await response.read())
        except TimeoutError as exc:
            log.warning("! Coze timed out for device %s", device_id)
            raise ExchangeFailed(504, "temporarily_unavailable", "Coze did not answer") from exc
        except aiohttp.ClientError as exc:
            log.warning(
                "! Coze unreachable for device %s: %s: %s", device_id, type(exc).__name__, exc
            )
            raise ExchangeFailed(503, "temporarily_unavailable", "Coze is unreachable") from exc
        token = self._answer(device_id, answer, now)
        self.cache.put(device_id, token, now)
        log.debug("< token for device %s, %.0f s", device_id, token.expires_at - now)
        return token

    def _answer(self, device_id: str, response: _Answer, now: float) -> Token:
        logid = response.headers.get(LOGID_HEADER) or "-"
        try:
            data = json.loads(response.body)
        except ValueError:  # not JSON, not UTF-8
            data = None
        if not isinstance(data, dict):
            data = {}
        error = data.get("error_code") or data.get("error")
        status = response.status
        if status == 429:
            log.warning("! Coze rate limits the JWT exchange (logid %s)", logid)
            retry = response.headers.get("Retry-After", "")
            raise ExchangeFailed(
                429,
                "slow_down",
                "Coze rate limits token requests",
                retry_after=float(retry) if retry.isdigit() else None,
            )
        access = data.get("access_token")
        if status != 200 or error or not isinstance(access, str) or not access:
            message = str(data.get("error_message") or data.get("error_description") or "")
            what = f"{error or 'no token'}{': ' + message if message else ''}"
            if status >= 500 or not data:
                log.warning(
                    "! Coze failed the JWT exchange for device %s: HTTP %d %s (logid %s)",
                    device_id,
                    status,
                    what,
                    logid,
                )
                raise ExchangeFailed(502, "upstream_error", f"Coze failed (HTTP {status})")
            # Coze refused our JWT: the app id, key id, private key or the app's
            # permissions are wrong. Only the vendor can fix that; say so loudly.
            log.error(
                "! Coze refused the JWT for device %s: HTTP %d %s (logid %s): check "
                "--app-id, --key-id and the private key",
                device_id,
                status,
                what,
                logid,
            )
            raise ExchangeFailed(
                502, "upstream_refused", f"Coze refused the service's JWT (logid {logid})"
            )
        expires_at, complaint = expiry(data.get("expires_in"), now)
        if complaint:
            log.warning("! Coze's token answer: %s", complaint)
        return Token(access, "", expires_at, now)


# --------------------------------------------------------------------------- the commands


async def serve(settings: ServiceSettings, host: str, port: int) -> None:
    """``coze-edge token-service serve``: serve until cancelled."""
    async with TokenService(settings, host=host, port=port) as service:
        log.info(
            "token service for JWT app %s (kid %s) at http://%s:%d/token; Coze at %s",
            settings.app_id,
            settings.key_id,
            service.host,
            service.port,
            settings.coze_api_base,
        )
        await asyncio.Event().wait()


def issue_secrets(master_key: bytes, device_ids: Iterable[str], *, out: TextIO) -> int:
    """``token-service issue-secret``: ``device_id,secret`` lines (CSV with a header); 0,
    or 78 when an id is not a device id (nothing printed then)."""
    ids = list(device_ids)
    bad = [device_id for device_id in ids if not is_int64_id(device_id)]
    if bad or not ids:
        shown = ", ".join(repr(b) for b in bad[:5]) or "none given"
        print(f"coze-edge token-service: not device ids: {shown}", file=out)
        return 78
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["device_id", "secret"])
    for device_id in ids:
        writer.writerow([device_id, device_secret(master_key, device_id)])
    return 0


def device_ids_from_csv(path: Path) -> list[str]:
    """The ``device_id`` column of a CSV (the one ``coze-edge bind --csv`` reads)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(
            [("--csv", f"cannot read {path}: {exc}")], source="token-service"
        ) from exc
    if not rows or "device_id" not in rows[0]:
        raise ConfigError(
            [("--csv", f"{path} needs a header row with device_id, and rows")],
            source="token-service",
        )
    return [(row.get("device_id") or "").strip() for row in rows]


def settings_from_args(
    *,
    app_id: str,
    key_id: str,
    private_key_file: Path | None,
    master_key_file: Path | None,
    coze_api_base: str,
    token_lifetime_s: int,
    custom_consumer: str | None,
) -> ServiceSettings:
    """The service's settings from its command line; ConfigError naming every problem."""
    from coze_edge.config import read_secret

    pem = read_secret(private_key_file, PRIVATE_KEY_CREDENTIAL, multiline=True)
    if pem is None:
        raise ConfigError(
            [
                (
                    "--private-key-file",
                    f"required (or the systemd credential {PRIVATE_KEY_CREDENTIAL}): the "
                    "JWT app's private_key.pem",
                )
            ],
            source="token-service",
        )
    return ServiceSettings(
        app_id=app_id,
        key_id=key_id,
        private_key_pem=pem,
        master_key=read_master_key(master_key_file),
        coze_api_base=coze_api_base.rstrip("/"),
        token_lifetime_s=token_lifetime_s,
        custom_consumer=custom_consumer,
    )
