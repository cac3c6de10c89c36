"""The simulator's own behaviour, over real loopback sockets: httpx for REST, websockets for
/v1/chat. (tests/test_simulator_cozepy.py proves the shapes with the official client.)"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from coze_edge.simulator import Simulator
from tests.traces import DATA

MS = 0.001 * float(os.environ.get("COZE_EDGE_TEST_SLOWDOWN", "1"))
BOT = "7496347519799787557"
REST_LOGID = re.compile(r"\d{14}[0-9A-F]{20}")
WS_LOGID = re.compile(r"02\d{13}[0-9a-f]{38}")


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
    event = json.loads(await ws.recv(decode=True))
    assert isinstance(event, dict)
    return event


async def send(ws: ClientConnection, event_type: str, data: Any = None) -> str:
    """Send one event; returns the frame's text as it went."""
    frame = json.dumps({"event_type": event_type, **({} if data is None else {"data": data})})
    await ws.send(frame)
    return frame


async def test_the_device_page_shows_a_user_code_as_text() -> None:
    """A user_code in the link's query is escaped into the page, never run as markup."""
    hostile = "'><script>alert(1)</script>"
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        response = await http.get(f"{sim.api_base}/device", params={"user_code": hostile})

    assert response.status_code == 200
    assert "<script>" not in response.text
    assert f"value='{html.escape(hostile)}'" in response.text


def test_the_logid_shapes_are_those_of_the_recorded_traces() -> None:
    """Every logid in the real server's frames has the WebSocket shape these tests check."""
    for trace in DATA.glob("websocket_*.txt"):
        logids = set(re.findall(r'"logid":"([^"]*)"', trace.read_text(encoding="utf-8")))
        assert logids, trace.name
        for logid in logids:
            assert WS_LOGID.fullmatch(logid), (trace.name, logid)
            assert len(logid) == 53


async def test_rest_answers_carry_a_rest_logid() -> None:
    """A REST answer's X-Tt-Logid is 14 digits of time and 20 hex digits, also in the body."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        headers = {"Authorization": "Bearer sim-pat"}
        first = await http.get(f"{sim.api_base}/v1/audio/voices", headers=headers)
        second = await http.get(f"{sim.api_base}/v1/audio/voices", headers=headers)

    logid = first.headers["X-Tt-Logid"]
    assert REST_LOGID.fullmatch(logid)
    assert first.json()["detail"]["logid"] == logid
    assert second.headers["X-Tt-Logid"] != logid


async def test_a_websocket_has_one_53_character_logid_for_all_its_events() -> None:
    """The handshake answer and every event of a connection carry the same WebSocket-shaped
    logid; the next connection gets another."""
    async with Simulator() as sim:
        url = f"{sim.ws_base}/v1/chat?bot_id={BOT}"
        headers = {"Authorization": "Bearer sim-pat"}
        async with connect(url, additional_headers=headers) as ws:
            assert ws.response is not None
            logid = ws.response.headers["X-Tt-Logid"]
            created = await next_event(ws)
            await send(ws, "conversation.clear")
            cleared = await next_event(ws)
        async with chat_socket(sim) as again:
            assert again.response is not None
            other = again.response.headers["X-Tt-Logid"]

    assert WS_LOGID.fullmatch(logid)
    assert [created["event_type"], cleared["event_type"]] == [
        "chat.created",
        "conversation.cleared",
    ]
    assert created["detail"]["logid"] == cleared["detail"]["logid"] == logid
    assert WS_LOGID.fullmatch(other)
    assert other != logid
