"""
The ``/v1/chat`` voice WebSocket (coze-protocol.md 4): the handshake's checks, then the
server side of each session.

A session answers a committed utterance (or a text message) with the recorded reply
(reply.py), "hearing" the simulator's fixed transcript; it does no speech recognition.
With ``turn_detection.type: server_vad`` it detects speech in the appended audio itself
(vad.py): ``input_audio_buffer.speech_started`` where speech starts, and, after
``silence_duration_ms`` of silence, ``input_audio_buffer.speech_stopped`` and the reply;
speech during a reply stops it (``conversation.chat.canceled``, code 1). Where the
protocol notes mark behaviour as inferred, the choice made here is noted beside the code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Self

from aiohttp import WSMsgType, web

from coze_edge.adapters.opus import OpusDecoder, OpusError
from coze_edge.simulator.conversations import Conversations
from coze_edge.simulator.faults import Faults
from coze_edge.simulator.ids import numeric_id
from coze_edge.simulator.plugins import SAID, ToolCallTurn, ToolOutputs
from coze_edge.simulator.reply import RATE, Audio, Completed, RecordedReply, Sentence, Text
from coze_edge.simulator.rest import LOGID, Authorize, fail, unauthorized
from coze_edge.simulator.vad import PREFIX_PADDING_MS, SILENCE_DURATION_MS, ServerVad, Started

log = logging.getLogger(__name__)

SAMPLE_RATES: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024


@dataclass
class ChatConnection:
    """One /v1/chat session as the simulator saw it."""

    query: dict[str, str]
    headers: dict[str, str]
    token: str
    received: list[dict[str, Any]] = field(default_factory=list)
    """Every frame the client sent that parsed as a JSON event, in order."""
    closed: bool = False
    heard: bytearray = field(default_factory=bytearray)
    """Every appended audio as PCM (Opus packets decoded), whatever turn it was in."""
    logid: str = ""
    """The connection's logid: its handshake answer's and every event's."""
    sent: list[str] = field(default_factory=list)
    """Every frame the simulator sent, as its text, if it records them (``record_sent``:
    a long session's audio would otherwise pile up here)."""

    def event_types(self) -> list[str]:
        return [str(frame.get("event_type")) for frame in self.received]

    def appended_audio(self) -> bytes:
        return b"".join(
            base64.b64decode(frame["data"]["delta"])
            for frame in self.received
            if frame.get("event_type") == "input_audio_buffer.append"
        )


@dataclass(frozen=True)
class ChatSettings:
    """What every session of a simulator shares."""

    transcript: str
    """What every committed utterance is heard as."""
    reply_speed: float
    """How many times faster than real time the reply's audio is sent."""
    published_bots: frozenset[str] | None = None
    """The bots published to the API channel; None: every bot id not in
    ``unpublished_bots`` is."""
    unpublished_bots: frozenset[str] = frozenset()
    """Bots that exist but are not published to the API channel (error 4015); with
    ``published_bots`` given, a bot in neither does not exist (error 4006)."""
    prologue: str = "你好，我是你的语音助手，有什么可以帮你的吗？"
    """The bots' opening line, spoken when ``chat.update`` asks for it."""
    record_sent: bool = False
    """Keep every frame sent in ``ChatConnection.sent``."""


class ChatEndpoint:
    """``GET /v1/chat``: checks the handshake, then runs one ``ChatSession`` per socket."""

    def __init__(
        self,
        *,
        settings: ChatSettings,
        reply: RecordedReply,
        authorize: Authorize,
        faults: Callable[[], Faults],
        conversations: Conversations,
    ) -> None:
        self._settings = settings
        self._reply = reply
        self._authorize = authorize
        self._faults = faults
        self._conversations = conversations
        self.connections: list[ChatConnection] = []
        """Every session, open or closed, in the order they opened."""
        self._open: set[web.WebSocketResponse] = set()
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/chat", self._handshake)]

    async def close_all(self) -> None:
        """Close every open session with a closing handshake, and wait until they ended."""
        for ws in list(self._open):
            await ws.close()
        await self.wait_all_closed()

    async def wait_all_closed(self) -> None:
        await self._all_closed.wait()

    async def _handshake(self, request: web.Request) -> web.StreamResponse:
        logid = request[LOGID]
        status = self._faults().reject_handshake
        if status is not None:
            return fail(request, 4100 if status == 401 else status, "refused", status)
        token = self._authorize(request)
        if token is None:
            return unauthorized(request)
        query = dict(request.query)
        if not query.get("bot_id"):
            return fail(request, 4000, "bot_id is required", 400)
        if "device_id" in query and not query["device_id"].isdigit():
            return fail(request, 4000, "device_id must be an int64", 400)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True)
        ws.headers["X-Tt-Logid"] = logid
        await ws.prepare(request)
        conn = ChatConnection(query, dict(request.headers), token, logid=logid)
        self.connections.append(conn)
        self._open.add(ws)
        self._all_closed.clear()
        log.info("chat session %d opened (bot %s)", len(self.connections), query["bot_id"])
        session = ChatSession(
            ws,
            conn,
            logid=logid,
            bot=query["bot_id"],
            settings=self._settings,
            reply=self._reply,
            faults=self._faults,
            conversations=self._conversations,
        )
        try:
            await session.run()
        finally:
            conn.closed = True
            self._open.discard(ws)
            if not self._open:
                self._all_closed.set()
        return ws


class OneTask:
    """
    Runs at most one task at a time: the session's reply. Starting another, or leaving
    the ``async with`` block, cancels the running one and waits until it has ended.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cancel()

    async def start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        await self.cancel()
        self._task = asyncio.create_task(work, name=name)

    async def cancel(self) -> bool:
        """Cancel the running task and wait for it; say whether one was running."""
        task, self._task = self._task, None
        if task is None:
            return False
        was_running = not task.done()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled too, not only the task
        return was_running


@dataclass(frozen=True, slots=True)
class _Frame:
    """A client event as it came."""

    event_type: str
    data: dict[str, Any]
    text: str
    """The frame's text: an error in answer to it echoes this as ``detail.origin_message``."""


# coze-protocol.md 1.7; the messages are paraphrased, the real wording is not recorded.
_BOT_REFUSALS: Final = {
    4006: "invalid bot id: the bot does not exist or the token has no access to it",
    4015: "the bot has not been published to the API channel",
    4101: "the token has no permission for this bot",
}

DEFAULT_VOICE: Final = "7426720361733046281"
"""The voice Coze speaks with when ``chat.update`` names none (柔美女友, coze-protocol.md 4.4)."""

TURN_DETECTION_TYPES: Final = ("client_interrupt", "server_vad", "semantic_vad")
SERVER_DETECTION: Final = ("server_vad", "semantic_vad")
"""The server ends turns; semantic_vad (enterprise only) is simulated as server_vad."""

# The usage of the recorded chat (websocket_chat_success.txt's conversation.chat.completed).
_USAGE: Final = {"token_count": 45, "output_count": 28, "input_count": 17}
# The recorded verbose message's content, as the trace has it.
_ANSWER_FINISH: Final = json.dumps(
    {
        "msg_type": "generate_answer_finish",
        "data": json.dumps({"finish_reason": 0, "FinData": ""}, separators=(",", ":")),
        "from_module": None,
        "from_unit": None,
    },
    separators=(",", ":"),
)


def effective_config(config: dict[str, Any]) -> dict[str, Any]:
    """
    The whole configuration in force after ``config`` (every ``chat.update`` so far, merged
    key by key at the top level), each field the session knows filled in with its default
    (coze-protocol.md 4.4): what ``chat.updated`` echoes. coze-js types that echo as a
    fully populated ``chat_config``, ``input_audio`` and ``output_audio``
    (``Required<...>``); the real payload is not recorded (coze-protocol.md 8.4), so fields
    beyond those (``turn_detection``, ``need_play_prologue``) are filled in the same way
    and anything else the client sent is echoed as it came.
    """
    given_chat = config.get("chat_config") or {}
    given_output = config.get("output_audio") or {}
    given_turn = config.get("turn_detection") or {}
    chat_config = {
        "meta_data": {},
        "custom_variables": {},
        "extra_params": {},
        "user_id": "",
        "conversation_id": "",
        "auto_save_history": True,
        "parameters": {},
        **given_chat,
    }
    input_audio = {
        "format": "wav",
        "codec": "pcm",
        "sample_rate": RATE,
        "channel": 1,
        "bit_depth": 16,
        **(config.get("input_audio") or {}),
    }
    output_audio = {
        "codec": "pcm",
        "speech_rate": 0,
        "loudness_rate": 0,
        "voice_id": DEFAULT_VOICE,
        "emotion_config": {},
        **given_output,
        "pcm_config": {"sample_rate": RATE, **(given_output.get("pcm_config") or {})},
        "opus_config": {
            "sample_rate": RATE,
            "bitrate": 48000,
            "use_cbr": False,
            "frame_size_ms": 10,
            **(given_output.get("opus_config") or {}),
        },
    }
    turn_detection = {
        "type": "client_interrupt",
        "prefix_padding_ms": PREFIX_PADDING_MS,
        "silence_duration_ms": SILENCE_DURATION_MS,
        **given_turn,
    }
    return {
        **config,
        "chat_config": chat_config,
        "input_audio": input_audio,
        "output_audio": output_audio,
        "turn_detection": turn_detection,
        "need_play_prologue": bool(config.get("need_play_prologue", False)),
    }


_OBJECTS: Final = (
    ("chat_config",),
    ("input_audio",),
    ("output_audio",),
    ("output_audio", "pcm_config"),
    ("output_audio", "opus_config"),
    ("turn_detection",),
)


def _not_objects(data: dict[str, Any]) -> str | None:
    """The first field of a ``chat.update`` that must be an object and is something else."""
    for path in _OBJECTS:
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict):
            return ".".join(path)
    return None


@dataclass
class _Chat:
    """One chat (a bot turn) of the session: its ids, kept for all of its events."""

    id: str
    answer_id: str
    """The id of the answer's message: its text deltas, audio deltas and completion all
    carry it (websocket_chat_success.txt); the question and the verbose note get others."""
    created_at: int


class ChatSession:
    """
    The server side of one /v1/chat connection.

    Refusals are ``error`` events that leave the socket open, with the refused frame in
    ``detail.origin_message`` (a field cozepy models; coze-protocol.md 4.2). Whether the
    real server keeps the socket open after an error is unknown (coze-protocol.md 8.4);
    so is its answer to a ``chat.update`` that names a conversation it does not know
    (an error, a closed socket, or silently a new conversation): here it is error 4002,
    the code Coze documents for a conversation that does not exist, and the session keeps
    its previous configuration (none, for a first ``chat.update``). A bot that cannot be
    used (``Faults.bot_error``; a bot in ``unpublished_bots``: 4015; with
    ``published_bots`` given, a bot in neither list: 4006) refuses the ``chat.update`` and
    every turn the same way.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        conn: ChatConnection,
        *,
        logid: str,
        bot: str,
        settings: ChatSettings,
        reply: RecordedReply,
        faults: Callable[[], Faults],
        conversations: Conversations,
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.logid = logid
        self.bot = bot
        self._settings = settings
        self._reply = reply
        self._faults = faults
        self._conversations = conversations
        self._config: dict[str, Any] = {}
        self._conversation: str | None = None
        self._audio = bytearray()
        self._chat: _Chat | None = None
        self._chat_open = False
        """A chat was created and has neither completed nor been cancelled."""
        self._opus: OpusDecoder | None = None
        self._vad: ServerVad | None = None
        self._prologue_played = False
        self._replying = OneTask()
        self._tool_outputs = ToolOutputs()

    async def run(self) -> None:
        async with self._replying:
            await self.send("chat.created")
            async for message in self.ws:
                if message.type == WSMsgType.BINARY:
                    origin = bytes(message.data).decode("utf-8", "replace")
                    await self.error(4000, "binary frames are not supported", origin)
                    continue
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    parsed = json.loads(message.data)
                    event_type = str(parsed["event_type"])
                except (ValueError, KeyError, TypeError):
                    await self.error(4000, "invalid message: not a JSON event", message.data)
                    continue
                self.conn.received.append(parsed)
                data = parsed.get("data")
                await self._handle(
                    _Frame(event_type, data if isinstance(data, dict) else {}, message.data)
                )

    async def send(self, event_type: str, data: Any = None, origin: str | None = None) -> None:
        frame: dict[str, Any] = {"event_type": event_type, "id": str(uuid.uuid4())}
        if data is not None:
            frame["data"] = data
        detail = {"logid": self.logid, "respond_at": str(int(time.time() * 1000))}
        if origin is not None:
            detail["origin_message"] = origin
        frame["detail"] = detail
        text = json.dumps(frame, ensure_ascii=False)
        if self._settings.record_sent:
            self.conn.sent.append(text)
        await self.ws.send_str(text)

    async def error(self, code: int, msg: str, origin: str) -> None:
        """An ``error`` event in answer to the client frame ``origin``."""
        await self.send("error", {"code": code, "msg": msg}, origin=origin)

    def conversation(self) -> str:
        """The session's conversation; a new one if it has none yet."""
        if self._conversation is None:
            self._conversation = self._conversations.issue(self.bot)
        return self._conversation

    def _input_format(self) -> str:
        return str((self._config.get("input_audio") or {}).get("format", "wav"))

    def _output_rate(self) -> int:
        output = self._config.get("output_audio") or {}
        rate = (output.get("pcm_config") or {}).get("sample_rate", RATE)
        return rate if rate in SAMPLE_RATES else RATE

    def _bot_refusal(self) -> tuple[int, str] | None:
        code = self._faults().bot_error
        published = self._settings.published_bots
        if code is None and self.bot in self._settings.unpublished_bots:
            code = 4015
        elif code is None and published is not None and self.bot not in published:
            code = 4006
        if code is None:
            return None
        return code, _BOT_REFUSALS.get(code, "simulated bot error")

    async def _handle(self, frame: _Frame) -> None:
        data = frame.data
        match frame.event_type:
            case "chat.update":
                await self._update(frame)
            case "input_audio_buffer.append":
                await self._append(frame)
            case "input_audio_buffer.complete":
                if self._vad is not None:
                    return  # ignored in server_vad mode (coze-protocol.md 4.4)
                await self.send("input_audio_buffer.completed")
                heard, self._audio = bytes(self._audio), bytearray()
                if heard:
                    # A reply still running is cut without an event [INF]: one chat at a time.
                    await self._start(self._answer(frame, voice=True))
            case "input_audio_buffer.clear":
                if self._vad is not None:
                    return  # ignored in server_vad mode (coze-protocol.md 4.4)
                self._audio.clear()
                await self.send("input_audio_buffer.cleared")
            case "conversation.chat.cancel":
                if self._faults().cancel_too_late:
                    # As if the chat had just completed: the cancel finds nothing to stop.
                    await self.error(
                        4104, "chat cannot be cancelled in its current status", frame.text
                    )
                elif await self._replying.cancel():
                    self._chat_open = False
                    await self.send(
                        "conversation.chat.canceled", {"code": 2, "msg": "canceled by client"}
                    )
                else:  # nothing to cancel: what Coze documents (coze-protocol.md 1.7)
                    await self.error(
                        4104, "chat cannot be cancelled in its current status", frame.text
                    )
            case "conversation.message.create":
                await self._interrupt(3, "interrupted by a new message")
                await self._start(self._answer(frame, voice=False))
            case "conversation.clear":
                await self.send("conversation.cleared")
            case "input_text.generate_audio":
                text = str(data.get("text", ""))
                if not text or len(text.encode()) > 1023:
                    await self.error(4000, "text must be 1..1023 bytes", frame.text)
                    return
                await self._interrupt(3, "interrupted by generate_audio")
                await self._start(self._speak(text))
            case "conversation.chat.submit_tool_outputs":
                refused = self._tool_outputs.submitted(data)
                if refused is not None:
                    await self.error(4000, refused, frame.text)
            case unknown:
                await self.error(4000, f"unknown event type {unknown}", frame.text)

    async def _append(self, frame: _Frame) -> None:
        if self._input_format() != "pcm":
            # What the real server says when a raw-PCM client did not set the format.
            await self.error(
                4000,
                "audio should follow the format: wav, or set input_audio via chat.update",
                frame.text,
            )
            return
        try:
            audio = base64.b64decode(str(frame.data.get("delta", "")), validate=True)
        except ValueError:
            await self.error(4000, "delta is not base64", frame.text)
            return
        if self._opus is not None:
            try:
                audio = self._opus.decode(audio)
            except OpusError as exc:
                await self.error(4000, f"delta is not an Opus packet: {exc}", frame.text)
                return
        self.conn.heard += audio
        if self._vad is None:
            self._audio += audio
            return
        for edge in self._vad.feed(audio):
            if isinstance(edge, Started):
                # coze-protocol.md 4.7: speech_started, then (barge-in) the reply's cancel.
                await self.send("input_audio_buffer.speech_started")
                await self._interrupt(1, "interrupted by user speech")
            else:
                await self.send("input_audio_buffer.speech_stopped")
                await self._start(self._answer(frame, voice=True))

    async def _update(self, frame: _Frame) -> None:
        """``chat.update``: all of it takes effect, or none of it and an ``error``."""
        refusal = self._bot_refusal()
        if refusal is not None:
            await self.error(*refusal, frame.text)
            return
        malformed = _not_objects(frame.data)
        if malformed:
            await self.error(4000, f"{malformed} must be an object", frame.text)
            return
        config = {**self._config, **frame.data}
        chat_config = dict(config.get("chat_config") or {})
        named = chat_config.get("conversation_id")
        if named and not self._conversations.knows(self.bot, str(named)):
            await self.error(4002, f"conversation not found: {named}", frame.text)
            return
        effective = effective_config(config)
        input_audio = effective["input_audio"]
        turn = effective["turn_detection"]
        if turn["type"] not in TURN_DETECTION_TYPES:
            await self.error(
                4000, f"turn_detection.type must be one of {TURN_DETECTION_TYPES}", frame.text
            )
            return
        opus = vad = None
        try:
            rate, channels = int(input_audio["sample_rate"]), int(input_audio["channel"])
            if input_audio["codec"] == "opus":
                opus = OpusDecoder(rate)
            if turn["type"] in SERVER_DETECTION:
                vad = ServerVad(rate, channels, turn)
        except (ValueError, TypeError) as exc:
            await self.error(4000, f"input_audio: {exc}", frame.text)
            return
        if named:
            self._conversation = str(named)
        chat_config["conversation_id"] = self.conversation()
        config["chat_config"] = chat_config
        self._config, self._opus, self._vad = config, opus, vad
        effective["chat_config"]["conversation_id"] = self.conversation()
        await self.send("chat.updated", effective)
        if effective["need_play_prologue"] and not self._prologue_played:
            # Once per session, right after the configuration that asked for it [INF].
            self._prologue_played = True
            given = config.get("prologue_content")
            text = given if isinstance(given, str) and given else self._settings.prologue
            await self._start(self._prologue(text))

    async def _start(self, reply: Coroutine[Any, Any, None]) -> None:
        self._chat_open = False  # a chat still open was cut without an event [INF]
        await self._replying.start(self._until_gone(reply), name=f"reply-{self.logid}")

    async def _until_gone(self, reply: Coroutine[Any, Any, None]) -> None:
        try:
            await reply
        except ConnectionResetError:  # aiohttp's, when the socket closes under a send
            log.debug("! the client of %s went away mid-reply", self.logid)

    async def _interrupt(self, code: int, msg: str) -> None:
        """Stop the reply running, if any; a chat it had created is ``canceled``."""
        await self._replying.cancel()
        if self._chat_open:
            self._chat_open = False
            await self.send("conversation.chat.canceled", {"code": code, "msg": msg})

    def _message(
        self, role: str, kind: str, content: str, content_type: str = "text", *, message_id: str
    ) -> dict[str, Any]:
        assert self._chat is not None
        return {
            "id": message_id,
            "conversation_id": self.conversation(),
            "bot_id": self.bot,
            "role": role,
            "type": kind,
            "content": content,
            "content_type": content_type,
            "chat_id": self._chat.id,
            "section_id": self.conversation(),
        }

    def _answer_message(self, content: str, content_type: str = "text") -> dict[str, Any]:
        assert self._chat is not None
        answer_id = self._chat.answer_id
        return self._message("assistant", "answer", content, content_type, message_id=answer_id)

    def _chat_data(self, status: str) -> dict[str, Any]:
        assert self._chat is not None
        return {
            "id": self._chat.id,
            "conversation_id": self.conversation(),
            "bot_id": self.bot,
            "created_at": self._chat.created_at,
            "status": status,
            "usage": {"token_count": 0, "output_count": 0, "input_count": 0},
            "section_id": self.conversation(),
        }

    async def _open_chat(self) -> None:
        await self.send("conversation.chat.created", self._chat_data("created"))
        self._chat_open = True
        await self.send("conversation.chat.in_progress", self._chat_data("in_progress"))

    async def _complete_chat(self) -> None:
        assert self._chat is not None
        data = {**self._chat_data("completed"), "completed_at": int(time.time()), "usage": _USAGE}
        self._chat_open = False
        await self.send("conversation.chat.completed", data)
        log.info("reply of chat %s sent", self._chat.id)

    async def _pause(self) -> None:
        delay = self._faults().delay_s
        if delay:
            await asyncio.sleep(delay)

    async def _answer(self, turn: _Frame, *, voice: bool) -> None:
        """The reply to ``turn``: a committed utterance, or a text message. Its events come
        in the order of websocket_chat_success.txt."""
        refusal = self._bot_refusal()
        if refusal is not None:
            await self.error(*refusal, turn.text)
            return
        faults = self._faults()
        if faults.silent:
            return
        if faults.error_on_complete is not None:
            await self.error(faults.error_on_complete, "simulated error", turn.text)
            return
        if faults.malformed_frame:
            await self.ws.send_str("{this is not json")
        if faults.unknown_event:
            await self.send("simulator.unknown_event", {"note": "a type no client knows"})
        if faults.oversized_frame_bytes:
            await self.ws.send_str(" " * faults.oversized_frame_bytes)
        transcript = self._settings.transcript
        if voice:
            await self._pause()
            half = transcript[: max(1, len(transcript) // 2)]
            await self.send("conversation.audio_transcript.update", {"content": half})
            await self.send("conversation.audio_transcript.update", {"content": transcript})
            await self.send("conversation.audio_transcript.completed", {"content": transcript})
        self._chat = _Chat(numeric_id(), numeric_id(), int(time.time()))
        await self.send(
            "conversation.message.completed",
            self._message("user", "question", transcript, message_id=numeric_id()),
        )
        await self._pause()
        await self._open_chat()
        said: str | None = None
        if faults.tool_call is not None:
            said = await self._call_tool(faults.tool_call)
            if said is None:
                return
        answer: list[str] = []
        deltas = 0
        async for item in self._reply.paced(self._output_rate(), self._settings.reply_speed):
            await self._pause()
            match item:
                case Text(text):
                    if said is not None:  # the outputs, then the recorded audio
                        text, said = said, ""
                        if not text:
                            continue
                    answer.append(text)
                    await self.send("conversation.message.delta", self._answer_message(text))
                case Sentence(text):
                    await self.send("conversation.audio.sentence_start", {"text": text})
                case Completed("answer"):
                    await self.send(
                        "conversation.message.completed", self._answer_message("".join(answer))
                    )
                case Completed(_):
                    verbose = self._message(
                        "assistant", "verbose", _ANSWER_FINISH, message_id=numeric_id()
                    )
                    await self.send("conversation.message.completed", verbose)
                case Audio(pcm):
                    content = base64.b64encode(pcm).decode()
                    await self.send(
                        "conversation.audio.delta", self._answer_message(content, "audio")
                    )
                    deltas += 1
                    limit = faults.close_after_audio_deltas
                    if limit is not None and deltas >= limit:
                        await self.ws.close()
                        return
        await self.send("conversation.audio.completed", self._answer_message("", "audio"))
        await self._complete_chat()

    async def _prologue(self, text: str) -> None:
        """The bot's opening line (``need_play_prologue``): a chat of its own with no
        question, its text then its audio. How the real server delivers it is not
        recorded [INF]; a chat like a reply's is what a client that plays replies
        already handles."""
        refusal = self._bot_refusal()
        if refusal is not None:
            return  # the chat.update was refused already
        self._chat = _Chat(numeric_id(), numeric_id(), int(time.time()))
        await self._open_chat()
        await self.send("conversation.message.delta", self._answer_message(text))
        await self.send("conversation.audio.sentence_start", {"text": text})
        rate = self._output_rate()
        async for pcm in self._reply.spoken(text, rate, self._settings.reply_speed):
            content = base64.b64encode(pcm).decode()
            await self.send("conversation.audio.delta", self._answer_message(content, "audio"))
        await self.send("conversation.message.completed", self._answer_message(text))
        await self.send("conversation.audio.completed", self._answer_message("", "audio"))
        await self._complete_chat()

    async def _call_tool(self, turn: ToolCallTurn) -> str | None:
        """``requires_action`` with the call, then wait for its outputs: what the reply
        says (None: the chat failed, not answered in time)."""
        assert self._chat is not None
        call = turn.tool_call()
        function_call = json.dumps(call["function"], ensure_ascii=False)
        await self.send(
            "conversation.message.completed",
            self._message("assistant", "function_call", function_call, message_id=numeric_id()),
        )
        outputs = self._tool_outputs.expect(self._chat.id, (call["id"],))
        required = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [call]}}
        await self.send(
            "conversation.chat.requires_action",
            {**self._chat_data("requires_action"), "required_action": required},
        )
        try:
            async with asyncio.timeout(turn.wait_s):
                said = await outputs
        except TimeoutError:
            error = {"code": 4000, "msg": "tool outputs were not submitted in time"}
            self._chat_open = False
            await self.send(
                "conversation.chat.failed", {**self._chat_data("failed"), "last_error": error}
            )
            return None
        finally:
            self._tool_outputs.forget()
        for output in said:
            response = self._message("assistant", "tool_response", output, message_id=numeric_id())
            await self.send("conversation.message.completed", response)
        await self.send("conversation.chat.in_progress", self._chat_data("in_progress"))
        return SAID + "; ".join(said)

    async def _speak(self, text: str) -> None:
        """input_text.generate_audio: audio only, ids "0" (the bot's too), no chat events
        (websocket_chat_generate_audio_success.txt)."""
        await self.send("conversation.audio.sentence_start", {"text": text})
        rate = self._output_rate()
        async for pcm in self._reply.spoken(text, rate, self._settings.reply_speed):
            content = base64.b64encode(pcm).decode()
            await self.send("conversation.audio.delta", self._spoken_message(content))
        await self.send("conversation.audio.completed", self._spoken_message(""))

    def _spoken_message(self, content: str) -> dict[str, Any]:
        return {
            "id": "0",
            "conversation_id": "0",
            "bot_id": "0",
            "role": "assistant",
            "type": "answer",
            "content": content,
            "content_type": "audio",
            "chat_id": "0",
            "section_id": "0",
        }
