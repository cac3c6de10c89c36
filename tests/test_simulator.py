"""The simulator's own behaviour, over real loopback sockets: httpx for REST, websockets for
/v1/chat. (tests/test_simulator_cozepy.py proves the shapes with the official client.)"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from coze_edge.simulator import Faults, Simulator
from tests.support.data import DATA
from tests.support.simulator_clients import (
    BOT,
    chat_socket,
    configure,
    next_event,
    next_of,
    send,
    settled,
)
from tests.support.timing import MS

REST_LOGID = re.compile(r"\d{14}[0-9A-F]{20}")
WS_LOGID = re.compile(r"02\d{13}[0-9a-f]{38}")
OTHER_BOT = "7496347519799787000"


async def test_the_device_page_shows_a_user_code_as_text() -> None:
    """A user_code in the link's query is escaped into the page, never run as markup."""
    hostile = "'><script>alert(1)</script>"
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        response = await http.get(f"{sim.api_base}/device", params={"user_code": hostile})

    assert response.status_code == 200
    assert "<script>" not in response.text
    assert f"value='{html.escape(hostile)}'" in response.text


# --- logids -------------------------------------------------------------------------------


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
        [first, _] = sim.connections

    assert WS_LOGID.fullmatch(logid)
    assert [created["event_type"], cleared["event_type"]] == [
        "chat.created",
        "conversation.cleared",
    ]
    assert created["detail"]["logid"] == cleared["detail"]["logid"] == logid
    assert first.logid == logid
    assert WS_LOGID.fullmatch(other)
    assert other != logid


# --- conversations ------------------------------------------------------------------------


async def create_conversation(sim: Simulator, bot_id: str | None) -> str:
    async with httpx.AsyncClient(timeout=5000 * MS) as http:
        response = await http.post(
            f"{sim.api_base}/v1/conversation/create",
            headers={"Authorization": "Bearer sim-pat"},
            json={} if bot_id is None else {"bot_id": bot_id},
        )
    conversation = response.json()["data"]["id"]
    assert isinstance(conversation, str)
    return conversation


async def assert_refused_as_unknown(ws: ClientConnection, conversation: str) -> None:
    """chat.update naming ``conversation`` gets error 4002 echoing it, and no chat.updated;
    the session stays unconfigured (raw PCM is still refused as not wav)."""
    update = await send(
        ws, "chat.update", {"chat_config": {"conversation_id": conversation}, "input_audio": {}}
    )
    error = await next_event(ws)
    assert error["event_type"] == "error"
    assert error["data"]["code"] == 4002
    assert "conversation not found" in error["data"]["msg"]
    assert error["detail"]["origin_message"] == update
    await send(ws, "input_audio_buffer.append", {"delta": base64.b64encode(bytes(320)).decode()})
    unconfigured = await next_event(ws)
    assert unconfigured["data"]["code"] == 4000
    assert "chat.updated" not in await settled(ws)


async def test_chat_update_may_name_a_conversation_created_over_rest_for_its_bot() -> None:
    """A conversation created for the bot is accepted and echoed in chat.updated; one
    created without a bot is accepted by any bot; another bot's is refused with 4002."""
    async with Simulator() as sim:
        mine = await create_conversation(sim, BOT)
        anyones = await create_conversation(sim, None)
        theirs = await create_conversation(sim, OTHER_BOT)
        async with chat_socket(sim) as ws:
            updated = await configure(ws, mine)
            assert updated["event_type"] == "chat.updated"
            assert updated["data"]["chat_config"]["conversation_id"] == mine
        async with chat_socket(sim, bot=OTHER_BOT) as ws:
            updated = await configure(ws, anyones)
            assert updated["data"]["chat_config"]["conversation_id"] == anyones
        async with chat_socket(sim) as ws:
            await assert_refused_as_unknown(ws, theirs)

        assert sim.known_conversations(BOT) == {mine, anyones}
        assert sim.known_conversations(OTHER_BOT) == {theirs, anyones}


async def test_a_made_up_conversation_is_refused_and_the_socket_stays_open() -> None:
    """chat.update naming an id the simulator never issued: error 4002, no chat.updated;
    a later chat.update without one configures the session with a new conversation."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await assert_refused_as_unknown(ws, "7000000000000000042")
        updated = await configure(ws)
        assert updated["event_type"] == "chat.updated"
        assert updated["data"]["chat_config"]["conversation_id"] != "7000000000000000042"


async def test_a_session_given_no_conversation_issues_one_until_forgotten() -> None:
    """The conversation a session made for itself may be named by the next session; after
    forget_conversations() it is refused with 4002."""
    async with Simulator() as sim:
        async with chat_socket(sim) as ws:
            issued = (await configure(ws))["data"]["chat_config"]["conversation_id"]
        assert sim.known_conversations(BOT) == {issued}
        async with chat_socket(sim) as ws:
            again = await configure(ws, issued)
            assert again["data"]["chat_config"]["conversation_id"] == issued
        sim.forget_conversations()
        async with chat_socket(sim) as ws:
            await assert_refused_as_unknown(ws, issued)


async def test_a_text_turn_without_chat_update_uses_a_conversation_it_issued() -> None:
    """A reply in a session that never sent chat.update carries a conversation the
    simulator then knows."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        await send(
            ws,
            "conversation.message.create",
            {"role": "user", "content_type": "text", "content": "hi"},
        )
        created = await next_of(ws, "conversation.chat.created")
        await next_of(ws, "conversation.chat.completed")

        assert sim.known_conversations(BOT) == {created["data"]["conversation_id"]}


# --- errors in answer to a frame ------------------------------------------------------------


async def test_cancel_with_no_chat_running_is_error_4104() -> None:
    """conversation.chat.cancel when nothing is running: error 4104 echoing the cancel, as
    Coze documents it; mid-reply the same frame cancels with code 2."""
    async with Simulator(reply_speed=1.0) as sim, chat_socket(sim) as ws:
        cancel = await send(ws, "conversation.chat.cancel")
        error = await next_event(ws)
        await send(
            ws,
            "conversation.message.create",
            {"role": "user", "content_type": "text", "content": "hi"},
        )
        await next_of(ws, "conversation.audio.delta")
        await send(ws, "conversation.chat.cancel")
        canceled = await next_of(ws, "conversation.chat.canceled", "error")

    assert error["event_type"] == "error"
    assert error["data"] == {
        "code": 4104,
        "msg": "chat cannot be cancelled in its current status",
    }
    assert error["detail"]["origin_message"] == cancel
    assert canceled["event_type"] == "conversation.chat.canceled"
    assert canceled["data"]["code"] == 2


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        json.dumps({"event_type": "no.such.event"}),
        json.dumps({"event_type": "input_audio_buffer.append", "data": {"delta": "AAAA"}}),
        json.dumps({"event_type": "input_text.generate_audio", "data": {"text": ""}}),
    ],
    ids=["not-json", "unknown-type", "append-before-config", "empty-text"],
)
async def test_every_error_echoes_the_frame_it_answers(frame: str) -> None:
    """An error event in answer to a client frame carries it in detail.origin_message."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await ws.send(frame)
        error = await next_event(ws)

    assert error["event_type"] == "error"
    assert error["data"]["code"] == 4000
    assert error["detail"]["origin_message"] == frame


async def test_a_binary_frame_is_refused_with_its_bytes_echoed() -> None:
    """A binary frame is answered with error 4000, its bytes as text in origin_message."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await ws.send(b'{"event_type": "conversation.clear"}')
        error = await next_event(ws)

    assert error["data"]["code"] == 4000
    assert error["detail"]["origin_message"] == '{"event_type": "conversation.clear"}'


async def test_error_on_complete_echoes_the_commit() -> None:
    """Faults.error_on_complete answers input_audio_buffer.complete, echoing that frame."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        sim.faults = Faults(error_on_complete=5000)
        await configure(ws)
        delta = base64.b64encode(bytes(3200)).decode()
        await send(ws, "input_audio_buffer.append", {"delta": delta})
        complete = await send(ws, "input_audio_buffer.complete")
        error = await next_of(ws, "error")

    assert error["data"]["code"] == 5000
    assert error["detail"]["origin_message"] == complete


# --- the reply task -----------------------------------------------------------------------


async def test_a_client_leaving_mid_reply_ends_the_reply_task() -> None:
    """The session owns its reply: when the client closes mid-reply, the reply task has
    ended by the time the session is recorded closed."""
    async with Simulator(reply_speed=1.0) as sim:
        async with chat_socket(sim) as ws:
            await send(
                ws,
                "conversation.message.create",
                {"role": "user", "content_type": "text", "content": "hi"},
            )
            await next_of(ws, "conversation.audio.delta")
            [reply] = [t for t in asyncio.all_tasks() if t.get_name().startswith("reply-")]
        [conn] = sim.connections
        await sim.wait_for(lambda: conn.closed, 5000 * MS)

        assert reply.done()
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith("reply-")] == []
