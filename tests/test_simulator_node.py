"""
The simulator against the official Node.js SDK, ``@coze/api`` 1.3.9, a reference written
independently of cozepy (tests/test_simulator_cozepy.py): its WebSocket chat client in both
turn-detection modes, a cancel, a server barge-in, its device-flow helpers, the voice list
and its error classes, all over loopback (tests/node/coze-sdk.mjs drives the SDK).

Every frame the simulator sends in these runs is checked against the type the SDK
declares for it (its ``.d.ts``, read by tests/support/dts.py). Where it differs, the real
server's recorded frames differ the same way: :data:`KNOWN_DIFFERENCES` names the trace
that shows each, and a test checks that the trace does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.simulator import Faults, Simulator, TokenFault
from tests.support.data import DATA, load_trace, trace_audio
from tests.support.node_sdk import SDK_VERSION, node_sdk, run_node, sdk_declarations
from tests.support.simulator_clients import BOT, CLIENT_ID
from tests.support.timing import MS

REST_LOGID = re.compile(r"\d{14}[0-9A-F]{20}")
WS_LOGID = re.compile(r"02\d{13}[0-9a-f]{38}")

KNOWN_DIFFERENCES: Final[dict[tuple[str, str, str], str]] = {
    # MessageData declares meta_data required; no message the real server sent has it.
    ("conversation.message.delta", "data.meta_data", "missing"): "websocket_chat_success",
    ("conversation.message.completed", "data.meta_data", "missing"): "websocket_chat_success",
    ("conversation.audio.delta", "data.meta_data", "missing"): "websocket_chat_success",
    ("conversation.audio.completed", "data.meta_data", "missing"): "websocket_chat_success",
}
"""Where a simulator frame may differ from the SDK's declared type, with the recorded
trace whose real frames differ the same way."""

TEXT_QUESTION: Final = {
    "event_type": "conversation.message.create",
    "data": {"role": "user", "content_type": "text", "content": "今天天气真不错"},
}
PCM_16K: Final = {
    "input_audio": {"format": "pcm", "codec": "pcm", "sample_rate": 16000},
    "output_audio": {"codec": "pcm", "pcm_config": {"sample_rate": 24000}},
}
VOICE_CLIENT_UPDATE: Final = {
    # What the SDK's voice client (ws-tools WsChatClient.connect) sends by default. That
    # client needs a browser's audio; its WebSocket client, used here, is the same.
    "input_audio": {"format": "pcm", "codec": "pcm", "sample_rate": 48000},
    "output_audio": {"codec": "pcm", "pcm_config": {"sample_rate": 24000}},
    "turn_detection": {"type": "server_vad"},
    "need_play_prologue": True,
}


def sdk_options(sim: Simulator, **options: Any) -> dict[str, Any]:
    return {
        "apiBase": sim.api_base,
        "wsBase": sim.ws_base,
        "token": "sim-pat",
        "botId": BOT,
        "clientId": CLIENT_ID,
        **options,
    }


def question_pcm(tmp_path: Path, rate: int) -> Path:
    path = tmp_path / f"question-{rate}.pcm"
    path.write_bytes(read_wav_as(DATA / "utterance-weather.wav", AudioFormat(rate)))
    return path


def received(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d["received"] for d in documents if "received" in d]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["event_type"] for event in events]


def audio_bytes(events: list[dict[str, Any]], chat_id: str | None = None) -> int:
    return sum(
        e["data"]["content"]
        for e in events
        if e["event_type"] == "conversation.audio.delta"
        and (chat_id is None or e["data"]["chat_id"] == chat_id)
    )


def problems(frames: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    declarations = sdk_declarations()
    return {
        (str(frame.get("event_type")), problem.path, problem.message)
        for frame in frames
        for problem in declarations.check(frame, "CreateChatWsRes")
    }


def assert_typed_as_the_sdk_declares(sim: Simulator) -> None:
    """Every frame the simulator sent validates against the SDK's CreateChatWsRes, or
    differs only as the real server's frames do (KNOWN_DIFFERENCES)."""
    frames = [json.loads(text) for conn in sim.connections for text in conn.sent]
    assert frames
    unexplained = problems(frames) - set(KNOWN_DIFFERENCES)
    assert not unexplained, sorted(unexplained)


def assert_shaped(value: Any, type_name: str) -> None:
    found = sdk_declarations().check(value, type_name)
    assert not found, [str(problem) for problem in found]


# --- the declared types -------------------------------------------------------------------


def test_the_known_differences_are_the_real_servers_own() -> None:
    """Each difference allowed between a simulator frame and the SDK's declared type is
    one the recorded real frames of the named trace show."""
    for difference, trace in KNOWN_DIFFERENCES.items():
        frames = [json.loads(frame) for frame in load_trace(trace).received]
        assert difference in problems(frames), (difference, trace)


def test_the_checker_reads_the_sdks_event_types() -> None:
    """The checker finds what the SDK declares: a well-formed frame passes, a missing
    required field, a wrong JSON type and an undeclared event type do not."""
    declarations = sdk_declarations()
    chat = {"id": "1", "conversation_id": "2", "bot_id": "3", "status": "created"}
    frame = {"id": "u", "event_type": "conversation.chat.created", "detail": {"logid": "l"}}

    assert declarations.check({**frame, "data": chat}, "CreateChatWsRes") == []
    assert [str(p) for p in declarations.check(frame, "CreateChatWsRes")] == ["data: missing"]
    wrong = declarations.check({**frame, "data": {**chat, "id": 1}}, "CreateChatWsRes")
    assert [str(p) for p in wrong] == ["data.id: not string"]
    unknown = declarations.check({**frame, "event_type": "no.such"}, "CreateChatWsRes")
    assert len(unknown) == 1


# --- the WebSocket chat client ------------------------------------------------------------


async def test_a_push_to_talk_voice_turn(tmp_path: Path) -> None:
    """client_interrupt: chat.update, the question as appends, complete; the SDK gets the
    whole reply, Coze's audio byte for byte, and connects the way the SDK does (the token
    in the query as well as the header, its client user agent)."""
    steps = [
        {"send": {"event_type": "chat.update", "data": PCM_16K}},
        {"wait": "chat.updated"},
        {"stream": str(question_pcm(tmp_path, 16000)), "rate": 16000, "chunk_ms": 100},
        {"send": {"event_type": "input_audio_buffer.complete"}},
        {"wait": "conversation.chat.completed"},
    ]
    async with Simulator(reply_speed=50.0, record_sent=True) as sim:
        documents = await run_node("chat", **sdk_options(sim, steps=steps))
        [conn] = sim.connections

    events = received(documents)
    assert documents[-1] == {"done": True}
    assert types(events)[:3] == ["chat.created", "chat.updated", "input_audio_buffer.completed"]
    assert types(events)[-1] == "conversation.chat.completed"
    assert audio_bytes(events) == len(trace_audio("websocket_chat_success"))
    assert conn.appended_audio() == read_wav_as(DATA / "utterance-weather.wav", AudioFormat(16000))
    assert conn.query["authorization"] == "Bearer sim-pat"
    assert conn.headers["Authorization"] == "Bearer sim-pat"
    client = json.loads(conn.headers["X-Coze-Client-User-Agent"])
    assert (client["lang"], client["version"]) == ("node", SDK_VERSION)
    assert all(isinstance(frame.get("id"), str) for frame in conn.received)
    assert_typed_as_the_sdk_declares(sim)


async def test_a_server_vad_turn_as_the_sdks_voice_client_configures_it(tmp_path: Path) -> None:
    """The voice client's default chat.update (server_vad, 48 kHz up, the prologue): the
    bot's opening line, then the question streamed with no commit; Coze's VAD hears it
    start and stop, and the reply follows."""
    steps = [
        {"send": {"event_type": "chat.update", "data": VOICE_CLIENT_UPDATE}},
        {"wait": "chat.updated"},
        {"wait": "conversation.chat.completed"},  # the prologue
        {"stream": str(question_pcm(tmp_path, 48000)), "rate": 48000, "chunk_ms": 100},
        {"wait": "conversation.chat.completed"},
    ]
    async with Simulator(reply_speed=50.0, record_sent=True, prologue="你好") as sim:
        documents = await run_node("chat", **sdk_options(sim, steps=steps))
        [conn] = sim.connections

    events = received(documents)
    updated = events[1]["data"]
    assert updated["turn_detection"]["type"] == "server_vad"
    assert updated["need_play_prologue"] is True
    prologue = next(e for e in events if e["event_type"] == "conversation.message.completed")
    assert prologue["data"]["content"] == "你好"
    turn = types(events)[types(events).index("input_audio_buffer.speech_started") :]
    assert turn[:3] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.audio_transcript.update",
    ]
    assert turn[-1] == "conversation.chat.completed"
    assert "input_audio_buffer.complete" not in conn.event_types()
    assert_typed_as_the_sdk_declares(sim)


async def test_a_server_barge_in(tmp_path: Path) -> None:
    """Speech over the reply: speech_started, then chat.canceled with code 1; the new
    speech gets a chat of its own, and none of the cancelled chat's audio comes after the
    cancel."""
    question = str(question_pcm(tmp_path, 16000))
    update = {**PCM_16K, "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}
    steps = [
        {"send": {"event_type": "chat.update", "data": update}},
        {"wait": "chat.updated"},
        {"stream": question, "rate": 16000, "chunk_ms": 100},
        {"wait_audio": True},
        {"stream": question, "rate": 16000, "chunk_ms": 100},
        {"wait": "conversation.chat.canceled"},
        {"wait": "conversation.chat.created"},
        {"wait_audio": True},
    ]
    async with Simulator(reply_speed=1.0, record_sent=True) as sim:
        documents = await run_node("chat", **sdk_options(sim, steps=steps))

    events = received(documents)
    first = next(e for e in events if e["event_type"] == "conversation.chat.created")
    canceled = types(events).index("conversation.chat.canceled")
    assert events[canceled]["data"]["code"] == 1
    before = [t for t in types(events)[:canceled] if not t.startswith("conversation.audio")]
    assert before[-1] == "input_audio_buffer.speech_started"
    assert audio_bytes(events[canceled:], first["data"]["id"]) == 0
    [_, second] = [e for e in events if e["event_type"] == "conversation.chat.created"]
    assert second["data"]["id"] != first["data"]["id"]
    assert events[-1]["data"]["chat_id"] == second["data"]["id"]  # its audio plays
    assert_typed_as_the_sdk_declares(sim)


async def test_a_cancel_mid_reply() -> None:
    """conversation.chat.cancel from the SDK mid-reply: chat.canceled with code 2."""
    steps = [
        {"send": {"event_type": "chat.update", "data": PCM_16K}},
        {"wait": "chat.updated"},
        {"send": TEXT_QUESTION},
        {"wait_audio": True},
        {"send": {"event_type": "conversation.chat.cancel"}},
        {"wait": "conversation.chat.canceled"},
    ]
    async with Simulator(reply_speed=1.0, record_sent=True) as sim:
        documents = await run_node("chat", **sdk_options(sim, steps=steps))

    events = received(documents)
    assert events[-1]["event_type"] == "conversation.chat.canceled"
    assert events[-1]["data"]["code"] == 2
    assert "conversation.chat.completed" not in types(events)
    assert_typed_as_the_sdk_declares(sim)


@pytest.mark.parametrize(
    ("status", "code", "msg"), [(401, 401, "Unauthorized"), (403, 403, "Forbidden")]
)
async def test_a_refused_handshake_reaches_the_sdk_with_its_logid(
    status: int, code: int, msg: str
) -> None:
    """A handshake refused with 401 or 403 is the SDK's error event of that code, with
    the X-Tt-Logid of the refusal."""
    steps = [{"wait": "chat.updated"}]
    async with Simulator() as sim:
        sim.faults = Faults(reject_handshake=status)
        documents = await run_node("chat", **sdk_options(sim, steps=steps))

    [error] = [d["ws_error"] for d in documents if "ws_error" in d]
    assert error["data"] == {"code": code, "msg": msg}
    assert WS_LOGID.fullmatch(error["detail"]["logid"])


# --- REST and OAuth -----------------------------------------------------------------------


async def test_the_device_flow_with_the_sdks_helpers() -> None:
    """getDeviceCode, a poll before approval (authorization_pending, the way the SDK's own
    polling recognises it), getDeviceToken polling once approved, refreshOAuthToken; each
    answer has the shape the SDK declares, and the tokens work."""
    # No minimum interval: the SDK polls again at once after approval, which a 5 s interval
    # would answer with slow_down (and the SDK would wait 10 s).
    async with Simulator(poll_interval_s=0) as sim:
        async with node_sdk("device-flow", **sdk_options(sim)) as run:
            code = await run.next_with("device_code")
            pending = await run.next_with("pending")
            sim.approve(code["user_code"])
            await run.say("approved")
            token = await run.next_with("token")
            refreshed = await run.next_with("refreshed")
            await run.all()
        async with httpx.AsyncClient(timeout=5000 * MS) as http:
            answer = await http.get(
                f"{sim.api_base}/v1/audio/voices",
                headers={"Authorization": f"Bearer {refreshed['access_token']}"},
            )

    assert_shaped(code, "DeviceCodeData")
    assert pending["class"] == "BadRequestError"
    assert pending["rawError"]["error"] == "authorization_pending"
    assert_shaped(token, "OAuthToken")
    assert_shaped(refreshed, "OAuthToken")
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert answer.json()["code"] == 0


async def test_the_voice_list() -> None:
    """audio.voices.list, paged: ListVoicesData as the SDK declares it."""
    async with Simulator() as sim:
        [first] = await run_node("voices", **sdk_options(sim, params={"page_size": 2}))
        [last] = await run_node(
            "voices", **sdk_options(sim, params={"page_size": 2, "page_num": 2})
        )

    assert_shaped(first["voices"], "ListVoicesData")
    assert_shaped(last["voices"], "ListVoicesData")
    assert len(first["voices"]["voice_list"]) == 2
    assert first["voices"]["has_more"] is True
    assert len(last["voices"]["voice_list"]) == 1
    assert last["voices"]["has_more"] is False


def business(code: int, status: int = 200) -> Faults:
    return Faults(rest_error_code=code, rest_error_status=status)


def token_answer(fault: TokenFault) -> Faults:
    return Faults(token_fault=fault)


# coze-protocol.md 1.6: status OR code, tested in the table's order, 408/502 after the codes.
REFUSALS: Final[list[tuple[str, str, Faults, str, int | None, int | None]]] = [
    ("voices", "bad-token", Faults(), "AuthenticationError", 401, 4100),
    ("voices", "4000", business(4000), "BadRequestError", 400, 4000),
    ("voices", "4101", business(4101), "PermissionDeniedError", 403, 4101),
    ("conversation", "4200", business(4200), "NotFoundError", 404, 4200),
    ("conversation", "4013", business(4013), "RateLimitError", 429, 4013),
    ("voices", "5000", business(5000), "APIError", 200, 5000),
    ("voices", "5000-http-500", business(5000, 500), "InternalServerError", 500, 5000),
    ("voices", "4000-http-502", business(4000, 502), "BadRequestError", 400, 4000),
    (
        "device_token",
        "http-429",
        token_answer(TokenFault(429, '{"code": 4013, "msg": "too many requests"}')),
        "RateLimitError",
        429,
        4013,
    ),
    (
        "device_token",
        "http-502",
        token_answer(TokenFault(502, "Bad Gateway", "text/plain")),
        "GatewayError",
        502,
        None,
    ),
    (
        "device_token",
        "captive-portal",
        token_answer(TokenFault(503, "<html>Sign in</html>", "text/html")),
        "InternalServerError",
        500,
        None,
    ),
    ("device_token", "http-408", token_answer(TokenFault(408, "")), "TimeoutError", 408, None),
    ("refresh", "invalid-grant", Faults(), "BadRequestError", 400, None),
]


@pytest.mark.parametrize(
    ("call", "faults", "expected", "status", "code"),
    [
        pytest.param(call, faults, cls, status, code, id=f"{call}-{name}")
        for call, name, faults, cls, status, code in REFUSALS
    ],
)
async def test_each_refusal_is_the_error_class_the_sdk_picks(
    call: str, faults: Faults, expected: str, status: int | None, code: int | None
) -> None:
    """What the simulator answers comes out of the SDK as the class coze-protocol.md 1.6
    says coze-js picks for that status and code, with the logid of the answer."""
    token = "not-a-token" if expected == "AuthenticationError" else "sim-pat"
    async with Simulator() as sim:
        sim.faults = faults
        [document] = await run_node("refused", **sdk_options(sim, call=call, token=token))

    error = document["error"]
    assert (error["class"], error["status"], error["code"]) == (expected, status, code)
    if code is not None and call in ("voices", "conversation"):
        assert REST_LOGID.fullmatch(error["logid"])
