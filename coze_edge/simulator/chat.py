"""
The ``/v1/chat`` voice WebSocket (coze-protocol.md 4): the handshake's checks, then the
server side of each session.

A session answers a committed utterance (or a text message) with the recorded reply
(reply.py), "hearing" the simulator's fixed transcript; it does no speech recognition.
Where the protocol notes mark behaviour as inferred, the choice made here is noted beside
the code.
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
from coze_edge.simulator.reply import RATE, Audio, RecordedReply, Sentence, Text
from coze_edge.simulator.rest import LOGID, Authorize, fail, unauthorized

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
    """The bots published to the API channel; None: every bot id is."""


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
    used (``Faults.bot_error``, or a bot outside ``published_bots``) refuses the
    ``chat.update`` and every turn the same way.
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
        self._chat_id: str | None = None
        self._opus: OpusDecoder | None = None
        self._replying = OneTask()

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
        await self.ws.send_str(json.dumps(frame, ensure_ascii=False))

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

    def _server_vad(self) -> bool:
        return (self._config.get("turn_detection") or {}).get("type") == "server_vad"

    def _bot_refusal(self) -> tuple[int, str] | None:
        code = self._faults().bot_error
        published = self._settings.published_bots
        if code is None and published is not None and self.bot not in published:
            code = 4015
        if code is None:
            return None
        return code, _BOT_REFUSALS.get(code, "simulated bot error")

    async def _handle(self, frame: _Frame) -> None:
        data = frame.data
        match frame.event_type:
            case "chat.update":
                await self._update(frame)
            case "input_audio_buffer.append":
                if self._input_format() != "pcm":
                    # What the real server says when a raw-PCM client did not set the format.
                    await self.error(
                        4000,
                        "audio should follow the format: wav, or set input_audio via chat.update",
                        frame.text,
                    )
                    return
                try:
                    audio = base64.b64decode(str(data.get("delta", "")), validate=True)
                except ValueError:
                    await self.error(4000, "delta is not base64", frame.text)
                    return
                if self._opus is not None:
                    try:
                        audio = self._opus.decode(audio)
                    except OpusError as exc:
                        await self.error(4000, f"delta is not an Opus packet: {exc}", frame.text)
                        return
                self._audio += audio
                self.conn.heard += audio
            case "input_audio_buffer.complete":
                if self._server_vad():
                    return  # ignored in server_vad mode
                await self.send("input_audio_buffer.completed")
                heard, self._audio = bytes(self._audio), bytearray()
                if heard:
                    # A reply still running is cut without an event [INF]: one chat at a time.
                    await self._start(self._answer(frame, voice=True))
            case "input_audio_buffer.clear":
                self._audio.clear()
                await self.send("input_audio_buffer.cleared")
            case "conversation.chat.cancel":
                if self._faults().cancel_too_late:
                    # As if the chat had just completed: the cancel finds nothing to stop.
                    await self.error(
                        4104, "chat cannot be cancelled in its current status", frame.text
                    )
                elif await self._replying.cancel():
                    await self.send(
                        "conversation.chat.canceled", {"code": 2, "msg": "canceled by client"}
                    )
                else:  # nothing to cancel: what Coze documents (coze-protocol.md 1.7)
                    await self.error(
                        4104, "chat cannot be cancelled in its current status", frame.text
                    )
            case "conversation.message.create":
                await self._interrupt(3)
                await self._start(self._answer(frame, voice=False))
            case "conversation.clear":
                await self.send("conversation.cleared")
            case "input_text.generate_audio":
                text = str(data.get("text", ""))
                if not text or len(text.encode()) > 1023:
                    await self.error(4000, "text must be 1..1023 bytes", frame.text)
                    return
                await self._interrupt(3)
                await self._start(self._speak(text))
            case "conversation.chat.submit_tool_outputs":
                pass
            case unknown:
                await self.error(4000, f"unknown event type {unknown}", frame.text)

    async def _update(self, frame: _Frame) -> None:
        """``chat.update``: all of it takes effect, or none of it and an ``error``."""
        refusal = self._bot_refusal()
        if refusal is not None:
            await self.error(*refusal, frame.text)
            return
        config = {**self._config, **frame.data}
        chat_config = dict(config.get("chat_config") or {})
        named = chat_config.get("conversation_id")
        if named and not self._conversations.knows(self.bot, str(named)):
            await self.error(4002, f"conversation not found: {named}", frame.text)
            return
        input_audio = {
            "format": "wav",
            "codec": "pcm",
            "sample_rate": RATE,
            "channel": 1,
            "bit_depth": 16,
            **(config.get("input_audio") or {}),
        }
        output_audio = {"codec": "pcm", **(config.get("output_audio") or {})}
        opus = None
        if input_audio["codec"] == "opus":
            try:
                opus = OpusDecoder(int(input_audio["sample_rate"]))
            except (ValueError, TypeError) as exc:
                await self.error(4000, f"input_audio: {exc}", frame.text)
                return
        if named:
            self._conversation = str(named)
        chat_config["conversation_id"] = self.conversation()
        config["chat_config"] = chat_config
        self._config, self._opus = config, opus
        await self.send(
            "chat.updated", {**config, "input_audio": input_audio, "output_audio": output_audio}
        )

    async def _start(self, reply: Coroutine[Any, Any, None]) -> None:
        await self._replying.start(self._until_gone(reply), name=f"reply-{self.logid}")

    async def _until_gone(self, reply: Coroutine[Any, Any, None]) -> None:
        try:
            await reply
        except ConnectionResetError:  # aiohttp's, when the socket closes under a send
            log.debug("! the client of %s went away mid-reply", self.logid)

    async def _interrupt(self, code: int) -> None:
        if await self._replying.cancel():
            await self.send("conversation.chat.canceled", {"code": code, "msg": "interrupted"})

    def _message(
        self, role: str, kind: str, content: str, content_type: str = "text"
    ) -> dict[str, Any]:
        assert self._chat_id is not None
        return {
            "id": numeric_id(),
            "conversation_id": self.conversation(),
            "bot_id": self.bot,
            "role": role,
            "type": kind,
            "content": content,
            "content_type": content_type,
            "chat_id": self._chat_id,
            "section_id": self.conversation(),
        }

    def _chat(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": self._chat_id,
            "conversation_id": self.conversation(),
            "bot_id": self.bot,
            "created_at": int(time.time()),
            "status": status,
            "usage": {"token_count": 0, "output_count": 0, "input_count": 0},
            "section_id": self.conversation(),
            **extra,
        }

    async def _pause(self) -> None:
        delay = self._faults().delay_s
        if delay:
            await asyncio.sleep(delay)

    async def _answer(self, turn: _Frame, *, voice: bool) -> None:
        """The reply to ``turn``: a committed utterance, or a text message."""
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
        self._chat_id = numeric_id()
        await self.send(
            "conversation.message.completed", self._message("user", "question", transcript)
        )
        await self._pause()
        await self.send("conversation.chat.created", self._chat("created"))
        await self.send("conversation.chat.in_progress", self._chat("in_progress"))
        answer: list[str] = []
        deltas = 0
        async for item in self._reply.paced(self._output_rate(), self._settings.reply_speed):
            await self._pause()
            match item:
                case Text(text):
                    answer.append(text)
                    await self.send(
                        "conversation.message.delta", self._message("assistant", "answer", text)
                    )
                case Sentence(text):
                    await self.send("conversation.audio.sentence_start", {"text": text})
                case Audio(pcm):
                    content = base64.b64encode(pcm).decode()
                    await self.send(
                        "conversation.audio.delta",
                        self._message("assistant", "answer", content, "audio"),
                    )
                    deltas += 1
                    limit = faults.close_after_audio_deltas
                    if limit is not None and deltas >= limit:
                        await self.ws.close()
                        return
        await self.send(
            "conversation.message.completed", self._message("assistant", "answer", "".join(answer))
        )
        verbose = json.dumps(
            {"msg_type": "generate_answer_finish", "data": "", "from_module": None}
        )
        await self.send(
            "conversation.message.completed", self._message("assistant", "verbose", verbose)
        )
        await self.send(
            "conversation.audio.completed", self._message("assistant", "answer", "", "audio")
        )
        usage = {"token_count": 120, "output_count": 40, "input_count": 80}
        await self.send(
            "conversation.chat.completed",
            {**self._chat("completed"), "completed_at": int(time.time()), "usage": usage},
        )
        log.info("reply of chat %s sent", self._chat_id)

    async def _speak(self, text: str) -> None:
        """input_text.generate_audio: audio only, ids "0", no chat events (like the trace)."""
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
            "bot_id": self.bot,
            "role": "assistant",
            "type": "answer",
            "content": content,
            "content_type": "audio",
            "chat_id": "0",
            "section_id": "0",
        }
