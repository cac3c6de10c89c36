"""The Coze event codec: the real server's frames decode, our frames encode as Coze expects."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coze_edge.core import events as ev
from coze_edge.errors import RemoteProtocolError
from tests.support.data import load_trace, trace_audio


def test_every_frame_of_the_chat_trace_decodes_to_a_known_event() -> None:
    """No frame the real server sent in the chat trace decodes as Unknown."""
    decoded = [ev.decode(frame) for frame in load_trace("websocket_chat_success").received]

    assert not [e for e in decoded if isinstance(e, ev.Unknown)]
    assert isinstance(decoded[0], ev.ChatCreated)
    assert isinstance(decoded[-1], ev.ChatCompleted)


def test_trace_audio_deltas_concatenate_to_the_recorded_wav() -> None:
    """The decoded audio of every delta, in order, is exactly the trace's WAV."""
    frames = load_trace("websocket_chat_success").received
    audio = b"".join(e.audio for e in map(ev.decode, frames) if isinstance(e, ev.AudioDelta))

    assert audio == trace_audio("websocket_chat_success")


def test_generate_audio_trace_decodes_with_chat_id_zero() -> None:
    """Proactive speech carries chat id "0" and no chat events."""
    decoded = [ev.decode(f) for f in load_trace("websocket_chat_generate_audio_success").received]

    deltas = [e for e in decoded if isinstance(e, ev.AudioDelta)]
    assert deltas
    assert {d.chat_id for d in deltas} == {"0"}
    assert not [e for e in decoded if isinstance(e, ev.ChatStarted | ev.ChatCompleted)]


def test_chat_started_and_completed_carry_ids_and_usage() -> None:
    """conversation.chat.* events expose the chat and conversation ids."""
    frames = load_trace("websocket_chat_success").received
    decoded = [ev.decode(f) for f in frames]
    started = next(e for e in decoded if isinstance(e, ev.ChatStarted))
    completed = next(e for e in decoded if isinstance(e, ev.ChatCompleted))

    assert started == ev.ChatStarted("7526821559890198568", "7526821722323025972")
    assert completed.chat_id == started.chat_id
    assert "token_count" in completed.usage


def test_the_answer_message_completes_with_the_full_text() -> None:
    """The assistant's completed answer is the concatenation of its deltas."""
    decoded = [ev.decode(f) for f in load_trace("websocket_chat_success").received]
    deltas = "".join(
        e.content for e in decoded if isinstance(e, ev.MessageDelta) and e.type == "answer"
    )
    answer = next(e for e in decoded if isinstance(e, ev.MessageCompleted) and e.type == "answer")

    assert answer.content == deltas
    assert answer.role == "assistant"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"event_type": "input_audio_buffer.completed"}, ev.BufferCompleted()),
        ({"event_type": "input_audio_buffer.cleared"}, ev.BufferCleared()),
        ({"event_type": "input_audio_buffer.speech_started"}, ev.ServerSpeechStarted()),
        ({"event_type": "input_audio_buffer.speech_stopped"}, ev.ServerSpeechStopped()),
        ({"event_type": "conversation.cleared"}, ev.ConversationCleared()),
        (
            {"event_type": "conversation.audio_transcript.update", "data": {"content": "hi"}},
            ev.TranscriptUpdate("hi"),
        ),
        (
            {"event_type": "conversation.audio_transcript.completed", "data": {"content": "hi"}},
            ev.TranscriptCompleted("hi"),
        ),
        (
            {"event_type": "conversation.chat.canceled", "data": {"code": 2, "msg": "cancel"}},
            ev.ChatCanceled(2, "cancel"),
        ),
        (
            {
                "event_type": "conversation.chat.failed",
                "data": {
                    "id": "1",
                    "conversation_id": "2",
                    "last_error": {"code": 5000, "msg": "x"},
                },
            },
            ev.ChatFailed("1", "2", 5000, "x"),
        ),
        (
            {"event_type": "chat.updated", "data": {"input_audio": {"format": "pcm"}}},
            ev.ChatUpdated({"input_audio": {"format": "pcm"}}),
        ),
        (
            {"event_type": "conversation.audio.completed", "data": {"chat_id": "7"}},
            ev.AudioCompleted("7"),
        ),
    ],
)
def test_downstream_events_decode(frame: dict[str, Any], expected: ev.ServerEvent) -> None:
    """Each documented downstream event type decodes to its value."""
    assert ev.decode(json.dumps(frame)) == expected


def test_error_event_carries_code_message_and_logid() -> None:
    """An error frame keeps the logid Coze support asks for."""
    frame = {
        "event_type": "error",
        "data": {"code": 4100, "msg": "token invalid"},
        "detail": {"logid": "L1"},
    }

    assert ev.decode(json.dumps(frame)) == ev.ServerError(4100, "token invalid", "L1")


def test_requires_action_lists_the_tool_calls() -> None:
    """A client-plugin request exposes each call's id, name and arguments."""
    frame = {
        "event_type": "conversation.chat.requires_action",
        "data": {
            "id": "9",
            "conversation_id": "8",
            "required_action": {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ]
                },
            },
        },
    }

    assert ev.decode(json.dumps(frame)) == ev.ChatRequiresAction(
        "9", "8", (ev.ToolCall("t1", "f", "{}"),)
    )


def test_unknown_event_types_are_kept() -> None:
    """A type this version does not know comes back as Unknown with its data."""
    frame = {"event_type": "dump.audio", "data": {"url": "u"}}

    assert ev.decode(json.dumps(frame)) == ev.Unknown("dump.audio", {"url": "u"})


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        "{}",
        '{"event_type": 3}',
        '{"event_type": "conversation.audio.delta", "data": {"content": "%%%", "chat_id": "1"}}',
        '{"event_type": "conversation.audio.delta", "data": []}',
        '{"event_type": "conversation.chat.created", "data": {"conversation_id": "1"}}',
        '{"event_type": "error", "data": {"code": "x", "msg": "m"}}',
        '{"event_type": "conversation.audio_transcript.completed", "data": {"content": 5.5}}',
    ],
)
def test_malformed_frames_raise_remote_protocol_error(frame: str) -> None:
    """A frame that cannot be an event is a RemoteProtocolError, never another exception."""
    with pytest.raises(RemoteProtocolError):
        ev.decode(frame)


def test_oversized_frames_are_refused() -> None:
    """Frames beyond the size bound are refused before parsing."""
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        ev.decode("x" * (ev.MAX_FRAME_BYTES + 1))


def test_every_event_carries_the_id_it_is_given() -> None:
    """Coze's docs ask for a client ``id`` on every upstream event; the socket gives one."""
    for event in (
        ev.AudioAppend(b"\x00\x01"),
        ev.AudioComplete(),
        ev.ChatCancel(),
        ev.GenerateAudio("hi"),
        ev.ChatUpdate({"chat_config": {}}),
        ev.SubmitToolOutputs("7", (("call", "{}"),)),
    ):
        message = json.loads(ev.encode(event, "a1b2-7"))
        assert message["id"] == "a1b2-7"
        assert message["event_type"]


def test_audio_append_encodes_base64_delta_without_id() -> None:
    """Appends carry base64 audio in data.delta; without an id none, like the traces."""
    message = json.loads(ev.encode(ev.AudioAppend(b"\x00\x01\xff")))

    assert message == {
        "event_type": "input_audio_buffer.append",
        "data": {"delta": base64.b64encode(b"\x00\x01\xff").decode()},
    }


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev.AudioComplete(), {"event_type": "input_audio_buffer.complete"}),
        (ev.AudioClear(), {"event_type": "input_audio_buffer.clear"}),
        (ev.ChatCancel(), {"event_type": "conversation.chat.cancel"}),
        (ev.ConversationClear(), {"event_type": "conversation.clear"}),
        (
            ev.MessageCreate("今天天气真不错"),
            {
                "event_type": "conversation.message.create",
                "data": {"role": "user", "content_type": "text", "content": "今天天气真不错"},
            },
        ),
        (
            ev.GenerateAudio("亲，你怎么不说话了。"),
            {
                "event_type": "input_text.generate_audio",
                "data": {"mode": "text", "text": "亲，你怎么不说话了。"},
            },
        ),
        (
            ev.SubmitToolOutputs("c", (("t1", "{}"),)),
            {
                "event_type": "conversation.chat.submit_tool_outputs",
                "data": {"chat_id": "c", "tool_outputs": [{"tool_call_id": "t1", "output": "{}"}]},
            },
        ),
        (ev.ChatUpdate({"a": 1}), {"event_type": "chat.update", "data": {"a": 1}}),
    ],
)
def test_upstream_events_encode(event: ev.ClientEvent, expected: dict[str, Any]) -> None:
    """Each upstream event encodes to the frame coze-protocol.md documents."""
    assert json.loads(ev.encode(event)) == expected


def test_the_recorded_upstream_frames_are_what_we_encode() -> None:
    """Our encoding of the traces' client frames equals what the real client sent."""
    pairs: list[tuple[str, ev.ClientEvent]] = [
        ("websocket_chat_success", ev.MessageCreate("今天天气真不错")),
        ("websocket_chat_generate_audio_success", ev.GenerateAudio("亲，你怎么不说话了。")),
    ]
    for name, event in pairs:
        assert json.loads(ev.encode(event)) == load_trace(name).sent[0]


def test_generate_audio_refuses_text_coze_would_refuse() -> None:
    """Empty text and text over 1023 bytes are refused before sending."""
    with pytest.raises(ValueError, match="1023"):
        ev.encode(ev.GenerateAudio(""))
    with pytest.raises(ValueError, match="1023"):
        ev.encode(ev.GenerateAudio("字" * 400))


def test_frame_logid_reads_the_logid_of_any_json_frame() -> None:
    """frame_logid finds detail.logid even in frames that do not decode."""
    assert ev.frame_logid('{"event_type": 1, "detail": {"logid": "abc"}}') == "abc"
    assert ev.frame_logid("garbage") is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_types = st.sampled_from(
    [
        "chat.created",
        "chat.updated",
        "conversation.chat.created",
        "conversation.chat.completed",
        "conversation.chat.failed",
        "conversation.chat.requires_action",
        "conversation.chat.canceled",
        "conversation.message.delta",
        "conversation.message.completed",
        "conversation.audio.delta",
        "conversation.audio.completed",
        "conversation.audio.sentence_start",
        "conversation.audio_transcript.update",
        "error",
        "something.new",
    ]
)


@given(event_type=_types, data=_json, detail=_json)
def test_decode_raises_nothing_but_remote_protocol_error(
    event_type: str, data: Any, detail: Any
) -> None:
    """Whatever shape the data has, decode returns an event or raises RemoteProtocolError."""
    frame = json.dumps({"event_type": event_type, "data": data, "detail": detail})
    with contextlib.suppress(RemoteProtocolError):
        ev.decode(frame)


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_decode_of_arbitrary_bytes_raises_only_remote_protocol_error(frame: bytes | str) -> None:
    """Random bytes never escape as anything but RemoteProtocolError."""
    with contextlib.suppress(RemoteProtocolError):
        ev.decode(frame)
