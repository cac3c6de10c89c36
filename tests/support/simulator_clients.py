"""Plain loopback clients for the simulator's own tests: httpx for REST and OAuth, websockets
for /v1/chat. Nothing here knows the simulator's insides, only its wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from coze_edge.simulator import Simulator
from tests.support.timing import MS

BOT = "7496347519799787557"
CLIENT_ID = "1234.app.coze"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PCM_CONFIG = {
    "input_audio": {"format": "pcm", "codec": "pcm", "sample_rate": 16000},
    "output_audio": {"codec": "pcm", "pcm_config": {"sample_rate": 24000}},
}


@asynccontextmanager
async def chat_socket(
    sim: Simulator, *, bot: str = BOT, token: str = "sim-pat"
) -> AsyncIterator[ClientConnection]:
    """A /v1/chat socket whose first event, chat.created, has been read."""
    url = f"{sim.ws_base}/v1/chat?bot_id={bot}"
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, open_timeout=5000 * MS) as ws:
        assert (await next_event(ws))["event_type"] == "chat.created"
        yield ws


async def next_event(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(5000 * MS):
        event = json.loads(await ws.recv(decode=True))
    assert isinstance(event, dict)
    return event


async def next_of(ws: ClientConnection, *event_types: str) -> dict[str, Any]:
    """The next event of one of ``event_types``, skipping others (a reply's deltas)."""
    while True:
        event = await next_event(ws)
        if event["event_type"] in event_types:
            return event


async def send(ws: ClientConnection, event_type: str, data: Any = None) -> str:
    """Send one event; returns the frame's text as it went."""
    frame = json.dumps({"event_type": event_type, **({} if data is None else {"data": data})})
    await ws.send(frame)
    return frame


async def configure(ws: ClientConnection, conversation_id: str | None = None) -> dict[str, Any]:
    """chat.update for 16 kHz PCM up, 24 kHz PCM down; returns the answer to it."""
    data: dict[str, Any] = {**PCM_CONFIG, "chat_config": {"user_id": "test"}}
    if conversation_id is not None:
        data["chat_config"]["conversation_id"] = conversation_id
    await send(ws, "chat.update", data)
    return await next_event(ws)


async def settled(ws: ClientConnection) -> dict[str, Any]:
    """What the session says next after everything sent so far: a conversation.clear goes
    out and everything up to its answer comes back, so "nothing else came" is checkable.
    Returns the events before ``conversation.cleared``, by type (the last of each)."""
    await send(ws, "conversation.clear")
    before: dict[str, Any] = {}
    while (event := await next_event(ws))["event_type"] != "conversation.cleared":
        before[event["event_type"]] = event
    return before


async def log_in(sim: Simulator, http: httpx.AsyncClient) -> dict[str, Any]:
    """The device flow, approved before the first poll: the token answer."""
    code = (
        await http.post(
            f"{sim.api_base}/api/permission/oauth2/device/code", json={"client_id": CLIENT_ID}
        )
    ).json()
    sim.approve(code["user_code"])
    answer = await poll(sim, http, code["device_code"])
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert isinstance(token, dict)
    return token


async def poll(sim: Simulator, http: httpx.AsyncClient, device_code: str) -> httpx.Response:
    body = {"client_id": CLIENT_ID, "grant_type": DEVICE_GRANT, "device_code": device_code}
    return await http.post(f"{sim.api_base}/api/permission/oauth2/token", json=body)


async def refresh(sim: Simulator, http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    body = {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": refresh_token}
    return await http.post(f"{sim.api_base}/api/permission/oauth2/token", json=body)
