"""
A small fake of Home Assistant's REST API on loopback, the tests' own (not Home Assistant):
enough of https://developers.home-assistant.io/docs/api/rest/ for the Home Assistant tools.

* ``GET /api/states/<entity_id>``: the entity's state object, 404 if it has none;
* ``POST /api/services/<domain>/<service>``: the call is recorded; ``turn_on``, ``turn_off``
  and ``toggle`` (and ``open_cover``/``close_cover``) change the target's state; the answer
  is the list of states that changed, as Home Assistant's is. A body that is not a JSON
  object is a 400 with a ``message``.

Every request must carry ``Authorization: Bearer <token>``, else 401 (as Home Assistant
answers); each request is kept in :attr:`FakeHomeAssistant.requests`, refused or not.

    async with fake_home_assistant(token="t0k", states={"light.kitchen": "off"}) as ha:
        ...  # point homeassistant.url at ha.url
        assert ha.calls == [("light", "turn_on", {"entity_id": "light.kitchen"})]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    """One request as it reached the fake."""

    method: str
    path: str
    authorization: str | None
    body: bytes


def _after(service: str, state: str) -> str | None:
    """The state a service leaves an entity in; None: the service changes nothing here."""
    return {
        "turn_on": "on",
        "turn_off": "off",
        "toggle": "off" if state == "on" else "on",
        "open_cover": "open",
        "close_cover": "closed",
    }.get(service)


@dataclass
class FakeHomeAssistant:
    token: str
    states: dict[str, dict[str, Any]]
    """Entity id -> Home Assistant state object."""
    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    """Every request, in order, accepted or refused."""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Every accepted service call: domain, service, data."""
    delay_s: float = 0.0
    """Wait this long before each answer (a slow Home Assistant)."""

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _seen(self, request: web.Request) -> web.Response | None:
        self.requests.append(
            Seen(
                request.method,
                request.path,
                request.headers.get("Authorization"),
                await request.read(),
            )
        )
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self.authorized(request):
            return web.Response(status=401, text="401: Unauthorized")
        return None

    async def get_state(self, request: web.Request) -> web.Response:
        refused = await self._seen(request)
        if refused is not None:
            return refused
        state = self.states.get(request.match_info["entity_id"])
        if state is None:
            return web.json_response({"message": "Entity not found."}, status=404)
        return web.json_response(state)

    async def call_service(self, request: web.Request) -> web.Response:
        refused = await self._seen(request)
        if refused is not None:
            return refused
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return web.json_response({"message": "Data should be valid JSON."}, status=400)
        domain, service = request.match_info["domain"], request.match_info["service"]
        self.calls.append((domain, service, data))
        changed = []
        target = data.get("entity_id")
        state = self.states.get(target) if isinstance(target, str) else None
        after = _after(service, state["state"]) if state is not None else None
        if state is not None and after is not None:
            state["state"] = after
            changed.append(state)
        return web.json_response(changed)


def state_object(entity_id: str, state: str, **attributes: Any) -> dict[str, Any]:
    """A state as Home Assistant's REST API returns it."""
    return {
        "entity_id": entity_id,
        "state": state,
        "attributes": attributes,
        "last_changed": "2026-01-02T10:00:00+00:00",
        "last_updated": "2026-01-02T10:00:00+00:00",
        "context": {"id": "01HQ", "parent_id": None, "user_id": None},
    }


@contextlib.asynccontextmanager
async def fake_home_assistant(
    *,
    token: str,
    states: Mapping[str, str | dict[str, Any]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[FakeHomeAssistant]:
    """The fake on a free port of 127.0.0.1; ``states``: entity id -> state (or a whole
    state object); ``tls``: serve HTTPS with this server context."""
    fake = FakeHomeAssistant(
        token,
        {
            entity: value if isinstance(value, dict) else state_object(entity, value)
            for entity, value in states.items()
        },
    )
    app = web.Application()
    app.router.add_get("/api/states/{entity_id}", fake.get_state)
    app.router.add_post("/api/services/{domain}/{service}", fake.call_service)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()
