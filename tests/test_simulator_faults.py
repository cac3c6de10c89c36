"""The simulator's fault switches, each over real loopback sockets: the network going away,
the token endpoint misbehaving, odd expiry values, and bots that cannot be used."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from coze_edge.simulator import REAL_EXPIRY, Faults, Simulator, TokenFault
from tests.support.simulator_clients import (
    BOT,
    chat_socket,
    configure,
    log_in,
    next_event,
    next_of,
    poll,
    refresh,
    send,
    settled,
)
from tests.support.timing import MS

OTHER_BOT = "7496347519799787000"

# --- the network goes away ----------------------------------------------------------------


async def test_a_client_is_refused_while_down_and_served_after_come_up() -> None:
    """go_down drops the open socket and keep-alive connection and refuses new ones;
    come_up serves again on the same port."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        port = sim.port
        voices = f"{sim.api_base}/v1/audio/voices"
        auth = {"Authorization": "Bearer sim-pat"}
        assert (await http.get(voices, headers=auth)).status_code == 200  # kept alive
        async with chat_socket(sim) as ws:
            await sim.go_down()
            assert sim.is_down
            with pytest.raises(websockets.ConnectionClosedError) as dropped:
                await next_event(ws)
        assert dropped.value.rcvd is None  # no close frame: the network went away
        assert sim.connections[0].closed
        with pytest.raises(httpx.ConnectError):
            await http.get(voices, headers=auth)
        with pytest.raises(ConnectionRefusedError):
            await connect(f"{sim.ws_base}/v1/chat?bot_id={BOT}", additional_headers=auth)

        await sim.come_up()

        assert sim.port == port
        assert (await http.get(voices, headers=auth)).status_code == 200
        async with chat_socket(sim) as ws:
            assert (await configure(ws))["event_type"] == "chat.updated"
        assert len(sim.connections) == 2


async def test_going_down_mid_reply_ends_the_session_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """go_down while a reply streams: the session and its reply end, nothing is logged as
    an error, and the next session after come_up replies in full."""
    caplog.set_level("WARNING")
    async with Simulator(reply_speed=1.0) as sim:
        async with chat_socket(sim) as ws:
            await configure(ws)
            await send(
                ws,
                "conversation.message.create",
                {"role": "user", "content_type": "text", "content": "hi"},
            )
            await next_of(ws, "conversation.audio.delta")
            await sim.go_down()
        assert sim.connections[0].closed
        await sim.come_up()
        async with chat_socket(sim) as ws:
            await configure(ws)
            await send(ws, "conversation.chat.cancel")
            assert (await next_event(ws))["data"]["code"] == 4104  # nothing running here

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- the token endpoint -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "content_type"),
    [
        (TokenFault(503, "<html><h1>Hotel Wi-Fi: sign in</h1></html>", "text/html"), "text/html"),
        (TokenFault(429, '{"code": 4013, "msg": "too many requests"}'), "application/json"),
        (TokenFault(408, ""), "application/json"),
        (TokenFault(502, "Bad Gateway", "text/plain; charset=utf-8"), "text/plain"),
        (TokenFault.oauth("invalid_grant"), "application/json"),
    ],
    ids=["503-captive-portal", "429-json", "408", "502-text", "invalid_grant"],
)
async def test_a_token_fault_answers_until_cleared_and_spends_no_token(
    fault: TokenFault, content_type: str
) -> None:
    """Every token request gets the fault's status and body while it is set; the refresh
    token it turned away still works once it is cleared."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        token = await log_in(sim, http)
        sim.faults = Faults(token_fault=fault)
        answers = [await refresh(sim, http, token["refresh_token"]) for _ in range(2)]
        sim.faults = Faults()
        renewed = await refresh(sim, http, token["refresh_token"])

    assert fault.body is not None
    for answer in answers:
        assert answer.status_code == fault.status
        assert answer.text == fault.body
        assert answer.headers["Content-Type"].startswith(content_type)
        assert "X-Tt-Logid" in answer.headers
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != token["refresh_token"]


async def test_invalid_grant_carries_every_oauth_error_key() -> None:
    """TokenFault.oauth answers HTTP 400 with error_code, error, and both messages."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        sim.faults.token_fault = TokenFault.oauth("invalid_grant")
        answer = await refresh(sim, http, "whatever")

    assert answer.status_code == 400
    body = answer.json()
    assert body["error_code"] == body["error"] == "invalid_grant"
    assert body["error_message"]
    assert body["error_description"]


async def test_a_slow_token_answer_outlasts_the_read_timeout_and_is_not_carried_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refresh slower than the client's read timeout times out; the server drops it when
    it finds the client gone, so the refresh token is still good afterwards."""
    caplog.set_level("INFO")
    delay_s = 300 * MS
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        token = await log_in(sim, http)
        sim.faults.token_fault = TokenFault.slow(delay_s, times=1)
        async with httpx.AsyncClient(timeout=50 * MS) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await refresh(sim, impatient, token["refresh_token"])
        await asyncio.sleep(delay_s + 200 * MS)  # until the server has given up on it
        renewed = await refresh(sim, http, token["refresh_token"])

    assert renewed.status_code == 200
    assert sim.token_requests == 3  # the login's poll, the slow one, the renewal
    assert "token request dropped" in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_slow_answer_that_is_waited_for_is_the_real_one() -> None:
    """A client patient enough gets the endpoint's own answer, delay_s late."""
    delay_s = 200 * MS
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        token = await log_in(sim, http)
        sim.faults.token_fault = TokenFault.slow(delay_s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        renewed = await refresh(sim, http, token["refresh_token"])
        took = loop.time() - started

    assert renewed.status_code == 200
    assert renewed.json()["access_token"] != token["access_token"]
    assert took >= delay_s


async def test_a_token_fault_answers_only_its_grants_and_only_times_times() -> None:
    """A refresh-only fault leaves device polls alone; times=2 answers two requests."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        sim.faults.token_fault = TokenFault(502, "Bad Gateway", "text/plain", times=2)
        sim.faults.token_fault.grants = "refresh"
        token = await log_in(sim, http)  # a device-grant poll: not the fault's
        statuses = [(await refresh(sim, http, token["refresh_token"])).status_code for _ in "abc"]
        sim.faults.token_fault = TokenFault.oauth("expired_token", grants="device")
        code = (
            await http.post(
                f"{sim.api_base}/api/permission/oauth2/device/code",
                json={"client_id": "1234.app.coze"},
            )
        ).json()
        polled = await poll(sim, http, code["device_code"])

    assert statuses == [502, 502, 200]
    assert polled.json()["error_code"] == "expired_token"


async def test_token_error_code_refuses_every_grant_until_cleared() -> None:
    """The older shorthand still answers both grants with the OAuth error, HTTP 400."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        token = await log_in(sim, http)
        sim.faults.token_error_code = "access_denied"
        refused = await refresh(sim, http, token["refresh_token"])
        sim.faults.token_error_code = None
        renewed = await refresh(sim, http, token["refresh_token"])

    assert refused.status_code == 400
    assert refused.json()["error_code"] == "access_denied"
    assert renewed.status_code == 200


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (900, "900"),
        (math.nan, "NaN"),
        ("900", '"900"'),
        (-5, "-5"),
        (1e30, "1e+30"),
        (None, "null"),
    ],
    ids=["relative", "nan", "string", "negative", "huge", "null"],
)
async def test_expires_in_is_sent_as_set_and_the_token_still_works(value: Any, wire: str) -> None:
    """Faults.token_expires_in goes into the token answer as written (NaN as a bare
    literal); the access token still lives its real lifetime."""
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        token = await log_in(sim, http)
        sim.faults.token_expires_in = value
        answer = await refresh(sim, http, token["refresh_token"])
        access = json.loads(answer.text)["access_token"]  # json reads NaN too
        voices = await http.get(
            f"{sim.api_base}/v1/audio/voices", headers={"Authorization": f"Bearer {access}"}
        )

    assert f'"expires_in": {wire},' in answer.text
    assert voices.status_code == 200


async def test_expires_in_is_absolute_epoch_seconds_by_default() -> None:
    """Without the switch, expires_in is when the token expires, in epoch seconds."""
    async with Simulator(access_token_ttl_s=900) as sim:
        assert sim.faults.token_expires_in is REAL_EXPIRY
        async with httpx.AsyncClient(timeout=5000 * MS) as http:
            before = time.time()
            token = await log_in(sim, http)
            after = time.time()

    # Whole seconds: issued between the two readings, so its second may be after `before`'s.
    assert before + 890 < token["expires_in"] <= after + 900


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
    """With published_bots, a listed bot is configured; an unpublished one gets 4015 and
    one that does not exist 4006 (coze-protocol.md 1.7), on a socket that stays open."""
    unpublished = "7496347519799787111"
    async with Simulator(published_bots={BOT}, unpublished_bots={unpublished}) as sim:
        async with chat_socket(sim) as ws:
            assert (await configure(ws))["event_type"] == "chat.updated"
        async with chat_socket(sim, bot=unpublished) as ws:
            not_published = await configure(ws)
        async with chat_socket(sim, bot=OTHER_BOT) as ws:
            unknown = await configure(ws)
            await send(ws, "conversation.chat.cancel")
            await next_of(ws, "error")  # the socket is still open and answering

    assert not_published["event_type"] == unknown["event_type"] == "error"
    assert not_published["data"]["code"] == 4015
    assert "published" in not_published["data"]["msg"]
    assert unknown["data"]["code"] == 4006
    assert "does not exist" in unknown["data"]["msg"]


async def test_without_published_bots_only_the_unpublished_are_refused() -> None:
    """By default every bot id is served but those listed as unpublished (4015)."""
    async with Simulator(unpublished_bots={OTHER_BOT}) as sim:
        async with chat_socket(sim) as ws:
            assert (await configure(ws))["event_type"] == "chat.updated"
        async with chat_socket(sim, bot=OTHER_BOT) as ws:
            refused = await configure(ws)

    assert refused["data"]["code"] == 4015
