"""
OAuth, as Coze does it for devices (coze-protocol.md 2): the device code, the token
endpoint for the device and refresh grants, and the /device page where a person approves
or denies a code; and which bearer tokens are good.

OAuth answers are not enveloped. Errors carry every key some SDK reads
(``error_code``, ``error``, ``error_message``, ``error_description``), with HTTP 400:
the real keys and status are inferred (coze-protocol.md 2.5).

The JWT grant (a JWT app's signed JWT, for servers) is checked in ``jwt_apps``; its
tokens are issued here like the others.

The token endpoint's faults act here: ``Faults.token_fault`` (any status, body or delay),
``Faults.token_error_code`` (an OAuth error) and ``Faults.token_expires_in`` (what issued
tokens say about their expiry).
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from coze_edge.simulator.faults import DEVICE_GRANT, JWT_GRANT, REAL_EXPIRY, Faults, TokenFault
from coze_edge.simulator.jwt_apps import JwtApps, JwtRefused
from coze_edge.simulator.rest import read_json

log = logging.getLogger(__name__)

_USER_CODE_LETTERS: Final = "BCDFGHJKLMNPQRSTVWXZ"


@dataclass
class _DeviceCode:
    client_id: str
    device_code: str
    user_code: str
    expires_at: float
    interval: float
    last_poll: float = 0.0
    state: str = "pending"  # pending | approved | denied | used


def oauth_error(error: str, message: str, status: int = 400) -> web.Response:
    # The SDKs disagree on the keys (coze-protocol.md 2.5): send all of them.
    body = {
        "error_code": error,
        "error": error,
        "error_message": message,
        "error_description": message,
    }
    return web.json_response(body, status=status)


class OAuth:
    """Device codes, access and refresh tokens, and the personal access tokens."""

    def __init__(
        self,
        *,
        pats: Iterable[str],
        faults: Callable[[], Faults],
        api_base: Callable[[], str],
        access_token_ttl_s: int,
        device_code_ttl_s: int,
        poll_interval_s: int,
    ) -> None:
        self.pats = set(pats)
        self.token_requests = 0
        self._faults = faults
        self._api_base = api_base
        self._access_token_ttl_s = access_token_ttl_s
        self._device_code_ttl_s = device_code_ttl_s
        self._poll_interval_s = poll_interval_s
        self._codes: dict[str, _DeviceCode] = {}
        self._access: dict[str, float] = {}  # token -> absolute expiry
        self._refresh: dict[str, str] = {}  # refresh token -> client id
        self.jwt_apps = JwtApps()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/permission/oauth2/device/code", self._device_code),
            web.post(
                "/api/permission/oauth2/workspace_id/{workspace}/device/code", self._device_code
            ),
            web.post("/api/permission/oauth2/token", self._token),
            web.get("/device", self._device_page),
            web.post("/device", self._device_form),
        ]

    # ------------------------------------------------------------------ for the other parts

    def authorize(self, request: web.Request) -> str | None:
        """The request's bearer token (header, or ``authorization`` query parameter as
        browsers send it) if it is a PAT or a live access token, else None."""
        header = request.headers.get("Authorization") or request.query.get("authorization") or ""
        if not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :].strip()
        if token in self.pats or self._access.get(token, 0.0) > time.time():
            return token
        return None

    # ------------------------------------------------------------------ test helpers

    def approve(self, user_code: str) -> None:
        self._code_by_user(user_code).state = "approved"

    def deny(self, user_code: str) -> None:
        self._code_by_user(user_code).state = "denied"

    def pending_user_codes(self) -> list[str]:
        now = time.time()
        return [
            c.user_code for c in self._codes.values() if c.state == "pending" and c.expires_at > now
        ]

    def expire_access_tokens(self) -> None:
        for token in self._access:
            self._access[token] = 0.0

    def _code_by_user(self, user_code: str) -> _DeviceCode:
        for code in self._codes.values():
            if code.user_code == user_code.strip().upper():
                return code
        raise KeyError(f"no device code with user code {user_code!r}")

    # ------------------------------------------------------------------ endpoints

    async def _device_code(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            return oauth_error("invalid_request", "client_id is required")
        user_code = "-".join(
            "".join(secrets.choice(_USER_CODE_LETTERS) for _ in range(4)) for _ in range(2)
        )
        code = _DeviceCode(
            client_id,
            secrets.token_urlsafe(24),
            user_code,
            time.time() + self._device_code_ttl_s,
            self._poll_interval_s,
        )
        self._codes[code.device_code] = code
        log.info("device code issued; approve it at %s/device", self._api_base())
        return web.json_response(
            {
                "device_code": code.device_code,
                "user_code": user_code,
                "verification_uri": f"{self._api_base()}/device",
                "expires_in": self._device_code_ttl_s,
                "interval": self._poll_interval_s,
            }
        )

    def _issue(self, client_id: str) -> dict[str, Any]:
        access, refresh = "czu_" + secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        expires_at = int(time.time()) + self._access_token_ttl_s
        self._access[access] = expires_at
        self._refresh[refresh] = client_id
        # expires_in is an absolute Unix time in seconds (coze-protocol.md 2.3).
        expires_in = self._faults().token_expires_in
        return {
            "access_token": access,
            "expires_in": expires_at if expires_in is REAL_EXPIRY else expires_in,
            "refresh_token": refresh,
            "token_type": "Bearer",
        }

    def _token_fault(self, grant: str) -> TokenFault | None:
        faults = self._faults()
        if faults.token_fault is not None and faults.token_fault.take(grant):
            return faults.token_fault
        if faults.token_error_code:
            return TokenFault.oauth(faults.token_error_code)
        return None

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        body = await read_json(request)
        grant = str(body.get("grant_type"))
        fault = self._token_fault(grant)
        if fault is not None:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
                if request.transport is None or request.transport.is_closing():
                    log.info("! token request dropped: its client left before the answer")
                    return web.Response(status=499)  # nobody reads it
            if fault.body is not None:
                return web.Response(
                    status=fault.status,
                    body=fault.body.encode(),
                    headers={"Content-Type": fault.content_type},
                )
        if grant == JWT_GRANT:
            return self._jwt_grant(request, body)
        return self._grant(body, grant)

    def _jwt_grant(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        audience = urllib.parse.urlsplit(self._api_base()).netloc
        try:
            grant = self.jwt_apps.grant(request.headers.get("Authorization"), body, audience)
        except JwtRefused as exc:
            return oauth_error(exc.error, exc.message, exc.status)
        access = "czs_" + secrets.token_urlsafe(24)
        self.jwt_apps.record(dataclasses.replace(grant, access_token=access))
        expires_at = int(time.time()) + grant.duration_s
        self._access[access] = expires_at
        # No refresh token: a JWT app signs a new JWT instead (Coze's JWT page).
        expires_in = self._faults().token_expires_in
        return web.json_response(
            {
                "access_token": access,
                "expires_in": expires_at if expires_in is REAL_EXPIRY else expires_in,
                "token_type": "Bearer",
            }
        )

    def _grant(self, body: dict[str, Any], grant: str) -> web.Response:
        if grant == "refresh_token":
            client_id = self._refresh.pop(str(body.get("refresh_token")), None)
            if client_id is None or client_id != body.get("client_id"):
                return oauth_error("invalid_grant", "refresh token is invalid or used")
            return web.json_response(self._issue(client_id))
        if grant != DEVICE_GRANT:
            return oauth_error("unsupported_grant_type", f"grant {grant!r}")
        code = self._codes.get(str(body.get("device_code")))
        if code is None or code.client_id != body.get("client_id"):
            return oauth_error("invalid_grant", "unknown device code")
        now = time.time()
        if now >= code.expires_at:
            return oauth_error("expired_token", "the device code expired")
        if code.state == "denied":
            return oauth_error("access_denied", "the user denied access")
        if code.state == "used":
            return oauth_error("invalid_grant", "the device code was used")
        too_soon = now - code.last_poll < code.interval - 0.05
        code.last_poll = now
        if too_soon:
            code.interval += 5  # RFC 8628 3.5: slow_down adds 5 s
            return oauth_error("slow_down", "polling too fast")
        if code.state == "pending":
            return oauth_error("authorization_pending", "waiting for the user")
        code.state = "used"
        return web.json_response(self._issue(code.client_id))

    async def _device_page(self, request: web.Request) -> web.Response:
        # The code comes from the link's query: whatever it holds is shown, never run.
        code = html.escape(request.query.get("user_code", ""))
        page = (
            "<!doctype html><title>coze-edge simulator: device login</title>"
            "<h1>Approve a device</h1><form method=post>"
            f"<input name=user_code value='{code}' placeholder=ABCD-EFGH>"
            "<button name=action value=approve>Approve</button>"
            "<button name=action value=deny>Deny</button></form>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _device_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        user_code, action = str(form.get("user_code", "")), str(form.get("action", "approve"))
        try:
            (self.deny if action == "deny" else self.approve)(user_code)
        except KeyError:
            return web.Response(text="unknown code", status=404)
        return web.Response(text=f"{action}d {user_code}")
