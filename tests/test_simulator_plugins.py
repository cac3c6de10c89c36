"""The simulator's device-side plugin turn (``Faults.tool_call``), over a plain websocket."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from coze_edge.simulator import Simulator, ToolCallTurn
from tests.support.dts import Declarations
from tests.support.node_sdk import SDK_TYPES
from tests.support.simulator_clients import chat_socket, next_of, send
from tests.support.timing import MS
from tests.test_simulator_node import KNOWN_DIFFERENCES, problems

ASK = {"role": "user", "content_type": "text", "content": "turn on the kitchen light"}
LIGHT = {"entity_id": "light.kitchen", "service": "turn_on"}


async def asked(ws: ClientConnection) -> dict[str, Any]:
    """Send a text turn; the requires_action event it gets."""
    await send(ws, "conversation.message.create", ASK)
    return await next_of(ws, "conversation.chat.requires_action")


async def test_a_turn_asks_for_the_tool_and_speaks_its_output() -> None:
    """requires_action names the call; the submitted output becomes the reply's text, and
    the recorded audio follows."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        sim.faults.tool_call = ToolCallTurn("ha_call_service", LIGHT)
        action = await asked(ws)
        chat = action["data"]
        [call] = chat["required_action"]["submit_tool_outputs"]["tool_calls"]
        await send(
            ws,
            "conversation.chat.submit_tool_outputs",
            {"chat_id": chat["id"], "tool_outputs": [{"tool_call_id": call["id"], "output": "ok"}]},
        )
        await next_of(ws, "conversation.audio.delta")
        answer = await next_of(ws, "conversation.message.completed")
        while answer["data"]["type"] != "answer":
            answer = await next_of(ws, "conversation.message.completed")
        await next_of(ws, "conversation.chat.completed")

    assert chat["status"] == "requires_action"
    assert call["type"] == "function"
    assert call["function"]["name"] == "ha_call_service"
    assert json.loads(call["function"]["arguments"]) == LIGHT
    assert answer["data"]["content"] == "tool said: ok"


async def test_outputs_for_another_chat_or_call_are_refused() -> None:
    """A submit naming the wrong chat, or not answering the call, is error 4000."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        sim.faults.tool_call = ToolCallTurn("local_time")
        action = await asked(ws)
        wrong_chat = await send(
            ws,
            "conversation.chat.submit_tool_outputs",
            {"chat_id": "1", "tool_outputs": [{"tool_call_id": "x", "output": "{}"}]},
        )
        first = await next_of(ws, "error")
        wrong_call = await send(
            ws,
            "conversation.chat.submit_tool_outputs",
            {
                "chat_id": action["data"]["id"],
                "tool_outputs": [{"tool_call_id": "x", "output": ""}],
            },
        )
        second = await next_of(ws, "error")

    assert (first["data"]["code"], first["detail"]["origin_message"]) == (4000, wrong_chat)
    assert (second["data"]["code"], second["detail"]["origin_message"]) == (4000, wrong_call)


async def test_a_chat_not_answered_in_time_fails() -> None:
    """No outputs within wait_s: conversation.chat.failed."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        sim.faults.tool_call = ToolCallTurn("local_time", wait_s=200 * MS)
        action = await asked(ws)
        failed = await next_of(ws, "conversation.chat.failed")

    assert failed["data"]["id"] == action["data"]["id"]
    assert failed["data"]["last_error"]["code"] == 4000


async def test_the_frames_of_tool_turns_are_typed_as_the_node_sdk_declares() -> None:
    """The function_call and tool_response messages and a chat failed for want of outputs
    validate against @coze/api's WebSocket event types. Its union of those names
    requires_action (WebsocketsEventType) but declares no event for it, so that event's
    chat is checked against the SDK's chat object (CreateChatData, with required_action)."""
    async with Simulator(reply_speed=50.0, record_sent=True) as sim, chat_socket(sim) as ws:
        sim.faults.tool_call = ToolCallTurn("local_time")
        chat = (await asked(ws))["data"]
        [call] = chat["required_action"]["submit_tool_outputs"]["tool_calls"]
        answer = {"tool_call_id": call["id"], "output": '{"time": "12:00"}'}
        await send(
            ws,
            "conversation.chat.submit_tool_outputs",
            {"chat_id": chat["id"], "tool_outputs": [answer]},
        )
        await next_of(ws, "conversation.chat.completed")
        sim.faults.tool_call = ToolCallTurn("local_time", wait_s=200 * MS)
        await asked(ws)
        await next_of(ws, "conversation.chat.failed")

    frames = [json.loads(text) for conn in sim.connections for text in conn.sent]
    actions = [f for f in frames if f["event_type"] == "conversation.chat.requires_action"]
    others = [f for f in frames if f not in actions]
    chat_types = Declarations.read([SDK_TYPES / "resources" / "chat" / "chat.d.ts"])
    assert len(actions) == 2
    assert {"conversation.chat.failed", "conversation.message.completed"} <= {
        f["event_type"] for f in others
    }
    assert problems(others) - set(KNOWN_DIFFERENCES) == set()
    assert [chat_types.check(f["data"], "CreateChatData") for f in actions] == [[], []]
