"""
The Coze voice-chat wire events (``/v1/chat``), as frozen values, with encode() and decode().

Upstream events are what the device sends; ``encode`` turns one into a JSON text frame.
Downstream events are what Coze sends; ``decode`` turns a frame into one of them. A frame
that is not JSON, or lacks what its type needs, raises ``RemoteProtocolError`` (never
anything else); an event type we do not know comes back as ``Unknown`` with its data, so
a newer server never breaks an older device.

Field names and shapes follow coze-protocol.md section 4 and the recorded traces.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from coze_edge.errors import RemoteProtocolError

MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
"""Largest downstream frame accepted; the biggest recorded audio delta is about 20 KB."""

MAX_TEXT_BYTES: Final = 1023
"""Coze's limit for ``input_text.generate_audio`` text (section 4.4)."""

LOGID_HEADER: Final = "X-Tt-Logid"
"""The HTTP response header that carries Coze's logid (REST, and the WebSocket handshake);
in frames it is ``detail.logid``."""


# --------------------------------------------------------------------------- upstream


@dataclass(frozen=True, slots=True)
class ChatUpdate:
    """``chat.update``: configure the session; answered by ``chat.updated``."""

    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AudioAppend:
    """``input_audio_buffer.append``: raw audio in the configured input format."""

    audio: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"AudioAppend({len(self.audio)} bytes)"


@dataclass(frozen=True, slots=True)
class AudioComplete:
    """``input_audio_buffer.complete``: the user's turn is over (client_interrupt mode)."""


@dataclass(frozen=True, slots=True)
class AudioClear:
    """``input_audio_buffer.clear``: forget what was appended."""


@dataclass(frozen=True, slots=True)
class MessageCreate:
    """``conversation.message.create``: a text message (role user starts a reply)."""

    content: str
    role: str = "user"
    content_type: str = "text"


@dataclass(frozen=True, slots=True)
class ConversationClear:
    """``conversation.clear``: start a new context section."""


@dataclass(frozen=True, slots=True)
class ChatCancel:
    """``conversation.chat.cancel``: stop the bot's current output."""


@dataclass(frozen=True, slots=True)
class SubmitToolOutputs:
    """``conversation.chat.submit_tool_outputs``: answers for a ``requires_action`` chat."""

    chat_id: str
    outputs: tuple[tuple[str, str], ...]
    """(tool_call_id, output) pairs."""


@dataclass(frozen=True, slots=True)
class GenerateAudio:
    """``input_text.generate_audio``: speak ``text`` without asking the bot."""

    text: str


ClientEvent = (
    ChatUpdate
    | AudioAppend
    | AudioComplete
    | AudioClear
    | MessageCreate
    | ConversationClear
    | ChatCancel
    | SubmitToolOutputs
    | GenerateAudio
)


CHAT_CANCEL: Final = "conversation.chat.cancel"
"""The event type of :class:`ChatCancel` (an error's ``origin`` may name it)."""


def _dump(event_type: str, data: Mapping[str, Any] | None = None, event_id: str = "") -> str:
    frame: dict[str, Any] = {"id": event_id} if event_id else {}
    frame["event_type"] = event_type
    if data is not None:
        frame["data"] = data
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def encode(event: ClientEvent, event_id: str = "") -> str:
    """
    The JSON text frame for ``event``. ``event_id`` is the frame's ``id``, which Coze's docs
    ask of every upstream event ("client-generated, for troubleshooting"; the server
    accepts its absence, and cozepy and the traces send none). It must be JSON-safe
    (letters, digits, ``-``, ``_``): the socket makes it.
    """
    match event:
        case AudioAppend(audio):
            # The hot path: base64 text needs no JSON escaping, so skip json.dumps.
            delta = base64.b64encode(audio).decode("ascii")
            head = f'{{"id":"{event_id}",' if event_id else "{"
            return (
                head + '"event_type":"input_audio_buffer.append","data":{"delta":"' + delta + '"}}'
            )
        case ChatUpdate(data):
            return _dump("chat.update", data, event_id)
        case AudioComplete():
            return _dump("input_audio_buffer.complete", None, event_id)
        case AudioClear():
            return _dump("input_audio_buffer.clear", None, event_id)
        case MessageCreate(content, role, content_type):
            return _dump(
                "conversation.message.create",
                {"role": role, "content_type": content_type, "content": content},
                event_id,
            )
        case ConversationClear():
            return _dump("conversation.clear", None, event_id)
        case ChatCancel():
            return _dump(CHAT_CANCEL, None, event_id)
        case SubmitToolOutputs(chat_id, outputs):
            return _dump(
                "conversation.chat.submit_tool_outputs",
                {
                    "chat_id": chat_id,
                    "tool_outputs": [{"tool_call_id": i, "output": o} for i, o in outputs],
                },
                event_id,
            )
        case GenerateAudio(text):
            if not text or len(text.encode()) > MAX_TEXT_BYTES:
                raise ValueError(f"generate_audio text must be 1..{MAX_TEXT_BYTES} bytes")
            return _dump("input_text.generate_audio", {"mode": "text", "text": text}, event_id)
    raise TypeError(f"not a client event: {event!r}")  # pragma: no cover - exhaustive above


# --------------------------------------------------------------------------- downstream


@dataclass(frozen=True, slots=True)
class ChatCreated:
    """``chat.created``: the connection is accepted (sent unprompted)."""


@dataclass(frozen=True, slots=True)
class ChatUpdated:
    """``chat.updated``: the effective session configuration."""

    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatStarted:
    """``conversation.chat.created``: a bot turn began."""

    chat_id: str
    conversation_id: str


@dataclass(frozen=True, slots=True)
class ChatInProgress:
    """``conversation.chat.in_progress``."""

    chat_id: str
    conversation_id: str


@dataclass(frozen=True, slots=True)
class ChatCompleted:
    """``conversation.chat.completed``: the bot turn is over."""

    chat_id: str
    conversation_id: str
    usage: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChatFailed:
    """``conversation.chat.failed``: the bot turn failed (``last_error``)."""

    chat_id: str
    conversation_id: str
    code: int | None
    msg: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatRequiresAction:
    """``conversation.chat.requires_action``: the bot wants a client-side plugin run."""

    chat_id: str
    conversation_id: str
    tool_calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class ChatCanceled:
    """``conversation.chat.canceled``: 1 user speech, 2 client cancel, 3 new message."""

    code: int | None
    msg: str


@dataclass(frozen=True, slots=True)
class MessageDelta:
    """``conversation.message.delta``: a piece of the answer text."""

    chat_id: str
    role: str
    type: str
    content: str


@dataclass(frozen=True, slots=True)
class MessageCompleted:
    """``conversation.message.completed``: a whole message (question, answer, verbose...)."""

    chat_id: str
    role: str
    type: str
    content: str
    content_type: str


@dataclass(frozen=True, slots=True)
class SentenceStart:
    """``conversation.audio.sentence_start``: the text of the audio that follows."""

    text: str


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """``conversation.audio.delta``: reply audio, decoded from base64."""

    chat_id: str
    audio: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"AudioDelta(chat_id={self.chat_id!r}, {len(self.audio)} bytes)"


@dataclass(frozen=True, slots=True)
class AudioCompleted:
    """``conversation.audio.completed``: all audio of the reply was sent."""

    chat_id: str


@dataclass(frozen=True, slots=True)
class TranscriptUpdate:
    """``conversation.audio_transcript.update``: what was heard so far (full text)."""

    content: str


@dataclass(frozen=True, slots=True)
class TranscriptCompleted:
    """``conversation.audio_transcript.completed``: what the user said."""

    content: str


@dataclass(frozen=True, slots=True)
class BufferCompleted:
    """``input_audio_buffer.completed``."""


@dataclass(frozen=True, slots=True)
class BufferCleared:
    """``input_audio_buffer.cleared``."""


@dataclass(frozen=True, slots=True)
class ServerSpeechStarted:
    """``input_audio_buffer.speech_started`` (server_vad): the user started talking."""


@dataclass(frozen=True, slots=True)
class ServerSpeechStopped:
    """``input_audio_buffer.speech_stopped`` (server_vad): the user stopped talking."""


@dataclass(frozen=True, slots=True)
class ConversationCleared:
    """``conversation.cleared``."""


@dataclass(frozen=True, slots=True)
class ServerError:
    """``error``: Coze refused something; ``logid`` is what Coze support asks for."""

    code: int | None
    msg: str
    logid: str | None = None
    origin: str | None = None
    """The ``event_type`` of the upstream frame that caused it (``detail.origin_message``),
    when Coze says: tells an error about our own cancel from one about the user's turn."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """An event type this version does not know; kept, never fatal."""

    event_type: str
    data: Any


ServerEvent = (
    ChatCreated
    | ChatUpdated
    | ChatStarted
    | ChatInProgress
    | ChatCompleted
    | ChatFailed
    | ChatRequiresAction
    | ChatCanceled
    | MessageDelta
    | MessageCompleted
    | SentenceStart
    | AudioDelta
    | AudioCompleted
    | TranscriptUpdate
    | TranscriptCompleted
    | BufferCompleted
    | BufferCleared
    | ServerSpeechStarted
    | ServerSpeechStopped
    | ConversationCleared
    | ServerError
    | Unknown
)


class _Fields:
    """Typed access to a frame's ``data`` object; a wrong shape is a RemoteProtocolError."""

    __slots__ = ("data", "event_type")

    def __init__(self, event_type: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise RemoteProtocolError(f"{event_type}: 'data' must be an object")
        self.event_type = event_type
        self.data: dict[str, Any] = data

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise RemoteProtocolError(f"{self.event_type}: missing data.{key}")
        if not isinstance(value, str):
            # Coze ids are strings; tolerate numbers, as a newer server might send them.
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            raise RemoteProtocolError(f"{self.event_type}: data.{key} must be a string")
        return value

    def code(self, key: str = "code") -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise RemoteProtocolError(f"{self.event_type}: data.{key} must be a number")
        try:
            return int(value)
        except ValueError:
            raise RemoteProtocolError(f"{self.event_type}: data.{key} must be a number") from None

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.data.get(key) or {}
        if not isinstance(value, dict):
            raise RemoteProtocolError(f"{self.event_type}: data.{key} must be an object")
        return value


def _chat_ids(f: _Fields) -> tuple[str, str]:
    return f.text("id"), f.text("conversation_id", "")


def _tool_calls(f: _Fields) -> tuple[ToolCall, ...]:
    required = f.mapping("required_action")
    submit = required.get("submit_tool_outputs") or {}
    calls = submit.get("tool_calls") if isinstance(submit, dict) else None
    if not isinstance(calls, list):
        raise RemoteProtocolError(f"{f.event_type}: no tool_calls in required_action")
    out: list[ToolCall] = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise RemoteProtocolError(f"{f.event_type}: malformed tool call")
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        out.append(
            ToolCall(call["id"], str(function.get("name", "")), str(function.get("arguments", "")))
        )
    return tuple(out)


def _audio(f: _Fields) -> bytes:
    content = f.text("content")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(f"{f.event_type}: content is not base64") from None


def _decode_data(event_type: str, raw: Any, logid: str | None) -> ServerEvent:
    # Events without data first: they must not demand a 'data' object.
    match event_type:
        case "chat.created":
            return ChatCreated()
        case "input_audio_buffer.completed":
            return BufferCompleted()
        case "input_audio_buffer.cleared":
            return BufferCleared()
        case "input_audio_buffer.speech_started":
            return ServerSpeechStarted()
        case "input_audio_buffer.speech_stopped":
            return ServerSpeechStopped()
        case "conversation.cleared":
            return ConversationCleared()
    f = _Fields(event_type, {} if raw is None else raw)
    match event_type:
        case "chat.updated":
            return ChatUpdated(f.data)
        case "conversation.chat.created":
            return ChatStarted(*_chat_ids(f))
        case "conversation.chat.in_progress":
            return ChatInProgress(*_chat_ids(f))
        case "conversation.chat.completed":
            return ChatCompleted(*_chat_ids(f), usage=f.mapping("usage"))
        case "conversation.chat.failed":
            error = _Fields(event_type, f.mapping("last_error"))
            return ChatFailed(*_chat_ids(f), code=error.code(), msg=error.text("msg", ""))
        case "conversation.chat.requires_action":
            return ChatRequiresAction(*_chat_ids(f), tool_calls=_tool_calls(f))
        case "conversation.chat.canceled":
            return ChatCanceled(f.code(), f.text("msg", ""))
        case "conversation.message.delta":
            return MessageDelta(
                f.text("chat_id", ""), f.text("role", ""), f.text("type", ""), f.text("content", "")
            )
        case "conversation.message.completed":
            return MessageCompleted(
                f.text("chat_id", ""),
                f.text("role", ""),
                f.text("type", ""),
                f.text("content", ""),
                f.text("content_type", ""),
            )
        case "conversation.audio.sentence_start":
            return SentenceStart(f.text("text", ""))
        case "conversation.audio.delta":
            return AudioDelta(f.text("chat_id", ""), _audio(f))
        case "conversation.audio.completed":
            return AudioCompleted(f.text("chat_id", ""))
        case "conversation.audio_transcript.update":
            return TranscriptUpdate(f.text("content", ""))
        case "conversation.audio_transcript.completed":
            return TranscriptCompleted(f.text("content", ""))
        case "error":
            return ServerError(f.code(), f.text("msg", ""), logid)
    return Unknown(event_type, raw)


def decode(frame: str | bytes) -> ServerEvent:
    """The event in one downstream frame; RemoteProtocolError if it cannot be one."""
    if len(frame) > MAX_FRAME_BYTES:
        raise RemoteProtocolError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteProtocolError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise RemoteProtocolError("frame is not a JSON object")
    event_type = message.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise RemoteProtocolError("frame has no event_type")
    detail = message.get("detail")
    logid = detail.get("logid") if isinstance(detail, dict) else None
    event = _decode_data(event_type, message.get("data"), logid if isinstance(logid, str) else None)
    if isinstance(event, ServerError) and isinstance(detail, dict):
        return replace(event, origin=_origin_type(detail.get("origin_message")))
    return event


def _origin_type(origin: Any) -> str | None:
    """The event type of ``detail.origin_message``: the frame as a JSON string or object."""
    if isinstance(origin, str):
        try:
            origin = json.loads(origin)
        except ValueError:
            return None
    kind = origin.get("event_type") if isinstance(origin, dict) else None
    return kind if isinstance(kind, str) else None


def frame_logid(frame: str | bytes) -> str | None:
    """The ``detail.logid`` of a frame, for log lines about frames we could not decode."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None
    detail = message.get("detail") if isinstance(message, dict) else None
    logid = detail.get("logid") if isinstance(detail, dict) else None
    return logid if isinstance(logid, str) else None
