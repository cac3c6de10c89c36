"""The simulator's fault switches, each over real loopback sockets."""

from __future__ import annotations

import pytest

from coze_edge.simulator import Simulator
from tests.sim_clients import (
    BOT,
    chat_socket,
    configure,
    next_event,
    next_of,
    send,
    settled,
)

OTHER_BOT = "7496347519799787000"

# --- bots that cannot be used -------------------------------------------------------------


@pytest.mark.parametrize("code", [4015, 4101, 4006])
async def test_a_bot_error_refuses_chat_update_and_turns(code: int) -> None:
    """Faults.bot_error: the socket opens; chat.update and a text turn are answered with an
    error of that code echoing the frame, with no chat.updated and no reply."""
    async with Simulator() as sim:
        sim.faults.bot_error = code
        async with chat_socket(sim) as ws:
            update = await send(ws, "chat.update", {"chat_config": {}})
            refused = await next_event(ws)
            assert "chat.updated" not in await settled(ws)
            turn = await send(
                ws,
                "conversation.message.create",
                {"role": "user", "content_type": "text", "content": "hi"},
            )
            unanswered = await next_event(ws)
            after = await settled(ws)

    assert refused["event_type"] == "error"
    assert refused["data"]["code"] == code
    assert refused["detail"]["origin_message"] == update
    assert unanswered["data"]["code"] == code
    assert unanswered["detail"]["origin_message"] == turn
    assert "conversation.chat.created" not in after


async def test_only_published_bots_are_served() -> None:
    """With published_bots, a listed bot is configured; any other gets 4015."""
    async with Simulator(published_bots={BOT}) as sim:
        async with chat_socket(sim) as ws:
            assert (await configure(ws))["event_type"] == "chat.updated"
        async with chat_socket(sim, bot=OTHER_BOT) as ws:
            refused = await configure(ws)
            await send(ws, "conversation.chat.cancel")
            await next_of(ws, "error")  # the socket is still open and answering

    assert refused["event_type"] == "error"
    assert refused["data"]["code"] == 4015
    assert "published" in refused["data"]["msg"]
