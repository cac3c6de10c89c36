"""
Coze REST on httpx: OAuth device flow, refresh, bind device, voices.

The body is read whatever the HTTP status (coze-protocol.md 1.5): ``code != 0``, an OAuth
``error_code``/``error``, or a non-2xx status is an error, mapped to the class the
official SDKs use, with the Coze logid. ``https`` is always verified; proxies come from
the environment (``HTTPS_PROXY``). Tokens never appear in error texts. A redirect is never
followed (``RedirectRefused``, a ``CozeUnavailable``; why: ``adapters.origins``).
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import time
import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from coze_edge import __version__
from coze_edge.adapters.origins import redirect_refused
from coze_edge.core.events import LOGID_HEADER
from coze_edge.core.tokens import Token, expiry
from coze_edge.errors import CozeAPIError, CozeUnavailable, api_error

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DeviceFlowError(CozeAPIError):
    """An OAuth error while polling; ``error`` is the RFC 8628 code."""

    def __init__(self, error: str, msg: str, *, http_status: int | None, logid: str | None):
        self.error = error
        super().__init__(msg or error, code=error, http_status=http_status, logid=logid)


class DevicePending(DeviceFlowError):
    pass


class SlowDown(DeviceFlowError):
    pass


class AccessDenied(DeviceFlowError):
    pass


class ExpiredToken(DeviceFlowError):
    pass


class InvalidGrant(DeviceFlowError):
    pass


_OAUTH_ERRORS: dict[str, type[DeviceFlowError]] = {
    "authorization_pending": DevicePending,
    "slow_down": SlowDown,
    "access_denied": AccessDenied,
    "expired_token": ExpiredToken,
    "invalid_grant": InvalidGrant,
}


@functools.cache
def client_headers() -> dict[str, str]:
    """What the official SDKs send about themselves (coze-protocol.md 1.2): ``User-Agent``
    and ``X-Coze-Client-User-Agent``, a JSON object of version, language and OS."""
    python = platform.python_version()
    system, release = platform.system().lower() or "unknown", platform.release() or "unknown"
    about = {
        "version": __version__,
        "lang": "python",
        "lang_version": python,
        "os_name": system,
        "os_version": release,
    }
    return {
        "User-Agent": f"coze-edge/{__version__} python/{python} {system}/{release}",
        "X-Coze-Client-User-Agent": json.dumps(about, separators=(",", ":")),
    }


def network_advice(url: str) -> str:
    """What to check when ``url`` cannot be reached (doctor, login and the log say the same)."""
    return f"check the network, the firewall and a proxy for {urllib.parse.urlsplit(url).netloc}"


@dataclass(frozen=True, slots=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int

    @property
    def verification_url(self) -> str:
        return f"{self.verification_uri}?user_code={self.user_code}"


@dataclass(frozen=True, slots=True)
class Voice:
    voice_id: str
    name: str
    language_code: str
    language_name: str
    is_system_voice: bool


class CozeHttp:
    """``async with CozeHttp(api_base) as http``."""

    def __init__(
        self,
        api_base: str,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_base.rstrip("/"),
            follow_redirects=False,  # and a redirect is refused in _call: adapters.origins
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            trust_env=True,
            transport=transport,
            headers=client_headers(),
        )

    async def __aenter__(self) -> CozeHttp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._client.request(
                method, path, json=body, headers=headers, params=params
            )
        except httpx.HTTPError as exc:
            raise CozeUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if 300 <= response.status_code < 400:
            raise redirect_refused(
                f"{method} {path}",
                str(response.request.url),
                response.status_code,
                response.headers.get("Location"),
            )
        logid = response.headers.get(LOGID_HEADER)
        try:
            data = response.json()
        except (ValueError, json.JSONDecodeError):
            snippet = response.text[:120].replace("\n", " ")
            raise api_error(
                f"{method} {path}: not JSON: {snippet!r}",
                http_status=response.status_code,
                logid=logid,
            ) from None
        if not isinstance(data, dict):
            raise api_error(f"{method} {path}: unexpected body", http_status=response.status_code)
        detail = data.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("logid"), str):
            logid = detail["logid"]
        error = data.get("error_code") or data.get("error")
        if isinstance(error, str) and error:
            message = str(data.get("error_message") or data.get("error_description") or "")
            cls = _OAUTH_ERRORS.get(error, DeviceFlowError)
            raise cls(error, message, http_status=response.status_code, logid=logid)
        code = data.get("code", 0)
        if code not in (0, None) or response.status_code >= 400:
            msg = str(
                data.get("msg") or data.get("error_message") or f"HTTP {response.status_code}"
            )
            raise api_error(msg, code=code, http_status=response.status_code, logid=logid)
        return data

    async def device_code(self, client_id: str, workspace_id: str | None = None) -> DeviceCode:
        path = "/api/permission/oauth2/device/code"
        if workspace_id:
            path = f"/api/permission/oauth2/workspace_id/{workspace_id}/device/code"
        data = await self._call("POST", path, body={"client_id": client_id})
        try:
            return DeviceCode(
                str(data["device_code"]),
                str(data["user_code"]),
                str(data["verification_uri"]),
                int(data["expires_in"]),
                int(data.get("interval") or 5),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise api_error(f"device code answer lacks {exc}") from None

    def _token(self, data: dict[str, Any]) -> Token:
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise api_error("token answer lacks access_token")
        now = time.time()
        # Coze's expires_in is an absolute Unix time (coze-protocol.md 2.3); a bad one
        # must not cost the refresh token that came with it.
        expires_at, complaint = expiry(data.get("expires_in"), now)
        if complaint:
            log.warning(
                "! token answer: %s; assuming it expires in %.0f s", complaint, expires_at - now
            )
        return Token(access, str(data.get("refresh_token") or ""), expires_at, now)

    async def poll_token(self, client_id: str, device_code: str) -> Token:
        body = {"client_id": client_id, "grant_type": DEVICE_GRANT, "device_code": device_code}
        return self._token(await self._call("POST", "/api/permission/oauth2/token", body=body))

    async def refresh(self, client_id: str, refresh_token: str) -> Token:
        body = {
            "client_id": client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        return self._token(await self._call("POST", "/api/permission/oauth2/token", body=body))

    async def bind(
        self,
        token: str,
        connector_id: str,
        device_id: str,
        label: str,
        user_id: str | None = None,
        key: str = "device_id",
    ) -> None:
        """Bind ``device_id`` (shown as ``label``) to the channel under the binding ``key``
        the channel was set up with."""
        body: dict[str, Any] = {
            "configs": [{"key": key, "enums": [{"label": label, "value": device_id}]}]
        }
        if user_id:
            body["user_id"] = user_id
        await self._call(
            "POST", f"/v1/connectors/{connector_id}/user_configs", body=body, token=token
        )

    async def voices(self, token: str, page_size: int = 100) -> list[Voice]:
        voices: list[Voice] = []
        page = 1
        while True:
            data = await self._call(
                "GET",
                "/v1/audio/voices",
                token=token,
                params={"page_num": page, "page_size": page_size},
            )
            body = data.get("data") or {}
            for item in body.get("voice_list") or []:
                voices.append(
                    Voice(
                        str(item.get("voice_id", "")),
                        str(item.get("name", "")),
                        str(item.get("language_code") or ""),
                        str(item.get("language_name") or ""),
                        bool(item.get("is_system_voice")),
                    )
                )
            if not body.get("has_more") or page >= 100:
                return voices
            page += 1
