"""The simulator where Coze is less trodden, over loopback websockets: server-side voice
detection and barge-in, the prologue, the whole configuration in chat.updated, and a
reply's events in the order of the recorded real frames."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.simulator import Simulator
from tests.support.data import DATA, load_trace
from tests.support.simulator_clients import (
    PCM_CONFIG,
    chat_socket,
    next_event,
    next_of,
    send,
    settled,
)

CHUNK_MS = 60
# utterance-weather.wav: 0.5 s of digital silence, the question, 1.0 s of silence.
SPEECH_FROM_MS = 500
SPEECH_TO_MS = 2025


def speech(rate: int = 16000) -> bytes:
    return read_wav_as(DATA / "utterance-weather.wav", AudioFormat(rate))


async def server_vad(ws: ClientConnection, rate: int = 16000, **turn: Any) -> dict[str, Any]:
    """chat.update with server_vad and PCM at ``rate``; returns chat.updated."""
    data = {
        **PCM_CONFIG,
        "input_audio": {"format": "pcm", "codec": "pcm", "sample_rate": rate},
        "turn_detection": {"type": "server_vad", **turn},
    }
    await send(ws, "chat.update", data)
    updated = await next_event(ws)
    assert updated["event_type"] == "chat.updated", updated
    return updated


async def append(ws: ClientConnection, pcm: bytes) -> None:
    await send(ws, "input_audio_buffer.append", {"delta": base64.b64encode(pcm).decode()})


async def stream(ws: ClientConnection, pcm: bytes, rate: int = 16000) -> None:
    step = rate * 2 * CHUNK_MS // 1000
    for start in range(0, len(pcm), step):
        await append(ws, pcm[start : start + step])


async def events_until(ws: ClientConnection, last: str) -> list[dict[str, Any]]:
    """Every event up to and including the next of type ``last``."""
    events = [await next_event(ws)]
    while events[-1]["event_type"] != last:
        events.append(await next_event(ws))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["event_type"] for event in events]


# --- server-side voice detection ----------------------------------------------------------


async def edges_by_chunk(ws: ClientConnection, pcm: bytes) -> dict[str, int]:
    """Stream ``pcm`` (16 kHz) a chunk at a time, each followed by a round trip; returns
    the end (ms into the audio) of the chunk after which each speech event came."""
    step = 16000 * 2 * CHUNK_MS // 1000
    seen: dict[str, int] = {}
    for index, start in enumerate(range(0, len(pcm), step)):
        await append(ws, pcm[start : start + step])
        for event_type in await settled(ws):
            if event_type.startswith("input_audio_buffer.speech_"):
                seen.setdefault(event_type, (index + 1) * CHUNK_MS)
        if "input_audio_buffer.speech_stopped" in seen:
            break
    return seen


@pytest.mark.parametrize("silence_ms", [300, 700])
async def test_server_vad_hears_speech_start_and_ends_it_after_the_configured_silence(
    silence_ms: int,
) -> None:
    """speech_started comes with the audio where the words begin, speech_stopped with the
    audio silence_duration_ms after they end."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        sim.faults.silent = True  # no reply: only the edges are wanted here
        await server_vad(ws, silence_duration_ms=silence_ms)
        edges = await edges_by_chunk(ws, speech())

    started = edges["input_audio_buffer.speech_started"]
    stopped = edges["input_audio_buffer.speech_stopped"]
    assert SPEECH_FROM_MS < started <= SPEECH_FROM_MS + 2 * CHUNK_MS
    assert (
        SPEECH_TO_MS + silence_ms - CHUNK_MS <= stopped <= SPEECH_TO_MS + silence_ms + 3 * CHUNK_MS
    )


@pytest.mark.parametrize("rate", [16000, 24000, 48000])
async def test_a_server_vad_turn_is_answered_after_speech_stopped(rate: int) -> None:
    """At any input rate: speech_started, speech_stopped, then the transcript and a chat
    (coze-protocol.md 4.3's free-talk order), with no input_audio_buffer.complete."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        updated = await server_vad(ws, rate)
        await stream(ws, speech(rate), rate)
        events = await events_until(ws, "conversation.chat.completed")

    assert updated["data"]["turn_detection"] == {
        "type": "server_vad",
        "prefix_padding_ms": 600,
        "silence_duration_ms": 500,
    }
    assert types(events)[:7] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.audio_transcript.update",
        "conversation.audio_transcript.update",
        "conversation.audio_transcript.completed",
        "conversation.message.completed",
        "conversation.chat.created",
    ]
    assert "conversation.audio.delta" in types(events)


async def test_silence_alone_starts_no_turn() -> None:
    """Digital silence streamed for seconds is no speech: no event at all."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await server_vad(ws)
        await stream(ws, bytes(16000 * 2 * 3))
        after = await settled(ws)

    assert after == {}


async def test_complete_and_clear_are_ignored_with_server_vad() -> None:
    """In server_vad mode input_audio_buffer.complete and .clear get no answer."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await server_vad(ws)
        await append(ws, bytes(3200))
        await send(ws, "input_audio_buffer.complete")
        await send(ws, "input_audio_buffer.clear")
        after = await settled(ws)

    assert after == {}


async def test_speech_during_a_reply_interrupts_it_with_cancel_code_1() -> None:
    """Server-side barge-in: speech_started, then conversation.chat.canceled with code 1;
    no more of that chat's audio after it, and the new speech is answered in its turn."""
    async with Simulator(reply_speed=1.0) as sim, chat_socket(sim) as ws:
        await server_vad(ws)
        await stream(ws, speech())
        first = await next_of(ws, "conversation.chat.created")
        await next_of(ws, "conversation.audio.delta")
        await stream(ws, speech())
        interruption = await events_until(ws, "conversation.chat.canceled")
        following = await events_until(ws, "conversation.chat.created")

    chat = first["data"]["id"]
    barge_in = [e for e in interruption if not e["event_type"].startswith("conversation.audio")]
    assert types(barge_in)[-2:] == [
        "input_audio_buffer.speech_started",
        "conversation.chat.canceled",
    ]
    assert interruption[-1]["data"] == {"code": 1, "msg": "interrupted by user speech"}
    assert [e for e in following if e.get("data", {}).get("chat_id") == chat] == []
    assert "input_audio_buffer.speech_stopped" in types(following)
    assert following[-1]["data"]["id"] != chat


async def test_speech_after_the_chat_completed_cancels_nothing() -> None:
    """Speech once the reply was all sent is a new turn: speech_started, no canceled."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        await server_vad(ws)
        await stream(ws, speech())
        await next_of(ws, "conversation.chat.completed")
        await stream(ws, speech()[: 16000 * 2 * 1500 // 1000])  # into the words
        after = await settled(ws)

    assert list(after) == ["input_audio_buffer.speech_started"]


# --- chat.updated and the prologue --------------------------------------------------------


async def test_chat_updated_echoes_the_whole_configuration_with_defaults() -> None:
    """chat.updated carries every field of chat_config, input_audio and output_audio (coze-js
    types them Required<...>), the client's values where it gave them, defaults elsewhere."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await send(
            ws,
            "chat.update",
            {
                "chat_config": {"user_id": "dev-1", "custom_variables": {"name": "Ada"}},
                "input_audio": {"format": "pcm", "sample_rate": 16000},
                "output_audio": {"voice_id": "7426720361733144585", "pcm_config": {}},
                "asr_config": {"hot_words": ["Ada"]},
            },
        )
        updated = (await next_event(ws))["data"]

    conversation = updated["chat_config"].pop("conversation_id")
    assert updated["chat_config"] == {
        "meta_data": {},
        "custom_variables": {"name": "Ada"},
        "extra_params": {},
        "user_id": "dev-1",
        "auto_save_history": True,
        "parameters": {},
    }
    assert conversation in sim.known_conversations(sim.connections[0].query["bot_id"])
    assert updated["input_audio"] == {
        "format": "pcm",
        "codec": "pcm",
        "sample_rate": 16000,
        "channel": 1,
        "bit_depth": 16,
    }
    assert updated["output_audio"] == {
        "codec": "pcm",
        "pcm_config": {"sample_rate": 24000},
        "opus_config": {
            "sample_rate": 24000,
            "bitrate": 48000,
            "use_cbr": False,
            "frame_size_ms": 10,
        },
        "speech_rate": 0,
        "loudness_rate": 0,
        "voice_id": "7426720361733144585",
        "emotion_config": {},
    }
    assert updated["turn_detection"]["type"] == "client_interrupt"
    assert updated["need_play_prologue"] is False
    assert updated["asr_config"] == {"hot_words": ["Ada"]}


async def test_an_unknown_turn_detection_type_is_refused() -> None:
    """turn_detection.type outside the documented ones: error 4000, no chat.updated."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await send(ws, "chat.update", {"turn_detection": {"type": "psychic"}})
        refused = await next_event(ws)

    assert refused["event_type"] == "error"
    assert refused["data"]["code"] == 4000


@pytest.mark.parametrize(
    "update",
    [{"input_audio": "pcm"}, {"output_audio": {"pcm_config": 24000}}, {"turn_detection": []}],
)
async def test_a_chat_update_with_a_field_of_the_wrong_shape_is_refused(
    update: dict[str, Any],
) -> None:
    """A configuration object given as something else: error 4000, the session goes on."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await send(ws, "chat.update", update)
        refused = await next_event(ws)
        assert (await configure_pcm(ws))["event_type"] == "chat.updated"

    assert refused["event_type"] == "error"
    assert refused["data"]["code"] == 4000


async def configure_pcm(ws: ClientConnection) -> dict[str, Any]:
    await send(ws, "chat.update", PCM_CONFIG)
    return await next_event(ws)


async def test_need_play_prologue_speaks_the_opening_line_once() -> None:
    """need_play_prologue: after chat.updated, a chat of the bot's opening line (text and
    audio, no question); a later chat.update does not say it again."""
    async with Simulator(prologue="Hello there", reply_speed=50.0) as sim, chat_socket(sim) as ws:
        await send(ws, "chat.update", {**PCM_CONFIG, "need_play_prologue": True})
        events = await events_until(ws, "conversation.chat.completed")
        await send(ws, "chat.update", {**PCM_CONFIG, "need_play_prologue": True})
        again = await settled(ws)

    assert types(events)[:3] == [
        "chat.updated",
        "conversation.chat.created",
        "conversation.chat.in_progress",
    ]
    assert events[0]["data"]["need_play_prologue"] is True
    messages = [e["data"] for e in events if e["event_type"] == "conversation.message.completed"]
    assert [(m["role"], m["type"], m["content"]) for m in messages] == [
        ("assistant", "answer", "Hello there")
    ]
    assert "conversation.audio.delta" in types(events)
    assert "conversation.chat.created" not in again


async def test_prologue_content_replaces_the_bots_opening_line() -> None:
    """prologue_content, given with need_play_prologue, is what the bot says."""
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        await send(
            ws,
            "chat.update",
            {**PCM_CONFIG, "need_play_prologue": True, "prologue_content": "Welcome back"},
        )
        events = await events_until(ws, "conversation.chat.completed")

    [said] = [e for e in events if e["event_type"] == "conversation.audio.sentence_start"]
    assert said["data"]["text"] == "Welcome back"


async def test_without_need_play_prologue_the_bot_waits() -> None:
    """No prologue unless asked: chat.updated and nothing after it."""
    async with Simulator() as sim, chat_socket(sim) as ws:
        await send(ws, "chat.update", PCM_CONFIG)
        await next_event(ws)
        after = await settled(ws)

    assert after == {}


# --- a reply in the order of the real server ----------------------------------------------


def downstream(name: str) -> list[dict[str, Any]]:
    return [json.loads(frame) for frame in load_trace(name).received]


async def test_a_text_turn_comes_in_the_order_of_the_recorded_trace() -> None:
    """The reply's events, deltas and both message.completed included, come in exactly the
    recorded server's order: the answer's message.completed while its audio still streams."""
    recorded = downstream("websocket_chat_success")
    question = load_trace("websocket_chat_success").sent[0]
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        await ws.send(json.dumps(question))
        events = await events_until(ws, "conversation.chat.completed")

    assert ["chat.created", *types(events)] == types(recorded)


async def test_a_reply_keeps_its_ids_as_the_real_server_does() -> None:
    """One message id for the answer's text, audio and completion, others for the question
    and the verbose note; the chat's created_at is the same in every chat event; the
    verbose note's content is the recorded one."""
    question = load_trace("websocket_chat_success").sent[0]
    [recorded_verbose] = [
        e["data"]["content"]
        for e in downstream("websocket_chat_success")
        if e["event_type"] == "conversation.message.completed" and e["data"]["type"] == "verbose"
    ]
    async with Simulator(reply_speed=50.0) as sim, chat_socket(sim) as ws:
        await ws.send(json.dumps(question))
        events = await events_until(ws, "conversation.chat.completed")

    answer_ids = {
        e["data"]["id"]
        for e in events
        if e["event_type"].startswith(("conversation.message", "conversation.audio."))
        and "id" in e.get("data", {})
        and e["data"]["type"] == "answer"
    }
    [verbose] = [e["data"] for e in events if e.get("data", {}).get("type") == "verbose"]
    [asked] = [e["data"] for e in events if e.get("data", {}).get("type") == "question"]
    created_at = {
        e["data"]["created_at"] for e in events if e["event_type"].startswith("conversation.chat.")
    }
    assert len(answer_ids) == 1
    assert verbose["id"] not in answer_ids
    assert asked["id"] not in answer_ids
    assert verbose["content"] == recorded_verbose
    assert len(created_at) == 1
