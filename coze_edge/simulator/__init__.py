"""
The bundled Coze simulator: REST (OAuth device flow, bind device, voices, conversations)
and the ``/v1/chat`` voice WebSocket on one port, for the demo, the tests and development.

Shaped after coze-protocol.md and the recorded traces (proven with the official cozepy
client in tests/test_simulator_cozepy.py). It does no speech recognition: a committed
utterance is "heard" as the configured ``transcript``. The reply is the real Coze reply of
the recorded trace (text, sentence starts and audio, in the trace's uneven delta sizes),
streamed ``reply_speed`` times faster than real time. Where the protocol notes mark
behaviour as inferred, the choice made here is noted beside the code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
import uuid
import wave
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from coze_edge.adapters.opus import OpusDecoder, OpusError

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LOGID = web.RequestKey("logid", str)
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


def _logid() -> str:
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def _numeric_id() -> str:
    return str(7_000_000_000_000_000_000 + secrets.randbelow(10**18))


@dataclass
class Faults:
    """Switches a test flips at any time; all off by default."""

    reject_handshake: int | None = None
    """Refuse /v1/chat handshakes with this HTTP status."""
    close_after_audio_deltas: int | None = None
    """Close the socket mid-reply after this many audio deltas."""
    error_on_complete: int | None = None
    """Answer a committed turn with an ``error`` event of this code instead of a reply."""
    silent: bool = False
    """Accept audio, never reply."""
    delay_s: float = 0.0
    """Wait this long before each reply event (a slow server)."""
    malformed_frame: bool = False
    """Send one non-JSON text frame before each reply."""
    unknown_event: bool = False
    """Send an event of an unknown type before each reply."""
    oversized_frame_bytes: int | None = None
    """Send one frame of this size before each reply."""
    bind_error_code: int | None = None
    """Answer bind requests with this business code."""
    token_error_code: str | None = None
    """Answer token requests (device and refresh grants) with this OAuth error."""


@dataclass
class ChatConnection:
    """One /v1/chat session as the simulator saw it."""

    query: dict[str, str]
    headers: dict[str, str]
    token: str
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    heard: bytearray = field(default_factory=bytearray)
    """Every appended audio as PCM (Opus packets decoded), whatever turn it was in."""

    def event_types(self) -> list[str]:
        return [str(frame.get("event_type")) for frame in self.received]

    def appended_audio(self) -> bytes:
        return b"".join(
            base64.b64decode(frame["data"]["delta"])
            for frame in self.received
            if frame.get("event_type") == "input_audio_buffer.append"
        )


@dataclass
class _DeviceCode:
    client_id: str
    device_code: str
    user_code: str
    expires_at: float
    interval: float
    last_poll: float = 0.0
    state: str = "pending"  # pending | approved | denied | used


@dataclass
class _Reply:
    script: list[tuple[str, Any]]
    audio: bytes


def _load_reply() -> _Reply:
    data = resources.files(__package__) / "data"
    script = json.loads((data / "reply.json").read_text(encoding="utf-8"))["script"]
    with resources.as_file(data / "reply.wav") as path, wave.open(str(path), "rb") as wav:
        audio = wav.readframes(wav.getnframes())
    return _Reply([(kind, value) for kind, value in script], audio)


class Simulator:
    """Coze on loopback. ``async with Simulator() as sim:`` then point the client at it."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        transcript: str = "今天天气真不错",
        pats: Iterable[str] = ("sim-pat",),
        access_token_ttl_s: int = 900,
        device_code_ttl_s: int = 300,
        poll_interval_s: int = 5,
        reply_speed: float = 6.0,
    ) -> None:
        self.host = host
        self.port = port
        self.transcript = transcript
        self.pats = set(pats)
        self.access_token_ttl_s = access_token_ttl_s
        self.device_code_ttl_s = device_code_ttl_s
        self.poll_interval_s = poll_interval_s
        self.reply_speed = reply_speed
        self.faults = Faults()
        self.connections: list[ChatConnection] = []
        self.bindings: list[dict[str, Any]] = []
        self.token_requests = 0
        self._reply = _load_reply()
        self._codes: dict[str, _DeviceCode] = {}
        self._access: dict[str, float] = {}  # token -> absolute expiry
        self._refresh: dict[str, str] = {}  # refresh token -> client id
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._logid_middleware])
        app.add_routes(
            [
                web.post("/api/permission/oauth2/device/code", self._device_code),
                web.post(
                    "/api/permission/oauth2/workspace_id/{workspace}/device/code",
                    self._device_code,
                ),
                web.post("/api/permission/oauth2/token", self._token),
                web.get("/device", self._device_page),
                web.post("/device", self._device_form),
                web.post("/v1/connectors/{connector_id}/user_configs", self._bind),
                web.get("/v1/audio/voices", self._voices),
                web.post("/v1/conversation/create", self._create_conversation),
                web.get("/v1/chat", self._chat),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ test helpers

    def approve(self, user_code: str) -> None:
        self._code_by_user(user_code).state = "approved"

    def deny(self, user_code: str) -> None:
        self._code_by_user(user_code).state = "denied"

    def pending_user_codes(self) -> list[str]:
        now = time.time()
        return [
            c.user_code for c in self._codes.values() if c.state == "pending" and c.expires_at > now
        ]

    def expire_access_tokens(self) -> None:
        """Every issued OAuth access token stops working now (PATs are not affected)."""
        for token in self._access:
            self._access[token] = 0.0

    async def wait_for(self, predicate: Callable[[], bool], within_s: float) -> None:
        """Poll the simulator's own record until ``predicate`` holds (for tests)."""
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - the record has no event to wait on
                await asyncio.sleep(0.01)

    def _code_by_user(self, user_code: str) -> _DeviceCode:
        for code in self._codes.values():
            if code.user_code == user_code.strip().upper():
                return code
        raise KeyError(f"no device code with user code {user_code!r}")

    # ------------------------------------------------------------------ REST

    @web.middleware
    async def _logid_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        logid = _logid()
        request[LOGID] = logid
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Tt-Logid"] = logid
            raise
        if not response.prepared:
            response.headers["X-Tt-Logid"] = logid
        return response

    def _ok(self, request: web.Request, data: Any = None) -> web.Response:
        body: dict[str, Any] = {"code": 0, "msg": "", "detail": {"logid": request[LOGID]}}
        if data is not None:
            body["data"] = data
        return web.json_response(body)

    def _fail(self, request: web.Request, code: int, msg: str, status: int = 200) -> web.Response:
        body = {"code": code, "msg": msg, "detail": {"logid": request[LOGID]}}
        return web.json_response(body, status=status)

    def _oauth_error(self, error: str, message: str) -> web.Response:
        # The SDKs disagree on the keys (coze-protocol.md 2.5): send all of them.
        body = {
            "error_code": error,
            "error": error,
            "error_message": message,
            "error_description": message,
        }
        return web.json_response(body, status=400)

    def _bearer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization") or request.query.get("authorization") or ""
        if not header.startswith("Bearer "):
            return None
        token = header[len("Bearer ") :].strip()
        if token in self.pats or self._access.get(token, 0.0) > time.time():
            return token
        return None

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body is not a JSON object")
        return body

    async def _device_code(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            return self._oauth_error("invalid_request", "client_id is required")
        letters = "BCDFGHJKLMNPQRSTVWXZ"
        user_code = "-".join("".join(secrets.choice(letters) for _ in range(4)) for _ in range(2))
        code = _DeviceCode(
            client_id,
            secrets.token_urlsafe(24),
            user_code,
            time.time() + self.device_code_ttl_s,
            self.poll_interval_s,
        )
        self._codes[code.device_code] = code
        log.info("device code issued; approve it at %s/device", self.api_base)
        return web.json_response(
            {
                "device_code": code.device_code,
                "user_code": user_code,
                "verification_uri": f"{self.api_base}/device",
                "expires_in": self.device_code_ttl_s,
                "interval": self.poll_interval_s,
            }
        )

    def _issue(self, client_id: str) -> dict[str, Any]:
        access, refresh = "czu_" + secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        expires_at = int(time.time()) + self.access_token_ttl_s
        self._access[access] = expires_at
        self._refresh[refresh] = client_id
        # expires_in is an absolute Unix time in seconds (coze-protocol.md 2.3).
        return {
            "access_token": access,
            "expires_in": expires_at,
            "refresh_token": refresh,
            "token_type": "Bearer",
        }

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        body = await self._json(request)
        if self.faults.token_error_code:
            return self._oauth_error(self.faults.token_error_code, "simulated failure")
        grant = body.get("grant_type")
        if grant == "refresh_token":
            client_id = self._refresh.pop(str(body.get("refresh_token")), None)
            if client_id is None or client_id != body.get("client_id"):
                return self._oauth_error("invalid_grant", "refresh token is invalid or used")
            return web.json_response(self._issue(client_id))
        if grant != DEVICE_GRANT:
            return self._oauth_error("unsupported_grant_type", f"grant {grant!r}")
        code = self._codes.get(str(body.get("device_code")))
        if code is None or code.client_id != body.get("client_id"):
            return self._oauth_error("invalid_grant", "unknown device code")
        now = time.time()
        if now >= code.expires_at:
            return self._oauth_error("expired_token", "the device code expired")
        if code.state == "denied":
            return self._oauth_error("access_denied", "the user denied access")
        if code.state == "used":
            return self._oauth_error("invalid_grant", "the device code was used")
        too_soon = now - code.last_poll < code.interval - 0.05
        code.last_poll = now
        if too_soon:
            code.interval += 5  # RFC 8628 3.5: slow_down adds 5 s
            return self._oauth_error("slow_down", "polling too fast")
        if code.state == "pending":
            return self._oauth_error("authorization_pending", "waiting for the user")
        code.state = "used"
        return web.json_response(self._issue(code.client_id))

    async def _device_page(self, request: web.Request) -> web.Response:
        code = request.query.get("user_code", "")
        page = (
            "<!doctype html><title>coze-edge simulator: device login</title>"
            "<h1>Approve a device</h1><form method=post>"
            f"<input name=user_code value='{code}' placeholder=ABCD-EFGH>"
            "<button name=action value=approve>Approve</button>"
            "<button name=action value=deny>Deny</button></form>"
        )
        return web.Response(text=page, content_type="text/html")

    async def _device_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        user_code, action = str(form.get("user_code", "")), str(form.get("action", "approve"))
        try:
            (self.deny if action == "deny" else self.approve)(user_code)
        except KeyError:
            return web.Response(text="unknown code", status=404)
        return web.Response(text=f"{action}d {user_code}")

    async def _bind(self, request: web.Request) -> web.Response:
        if self._bearer(request) is None:
            return self._fail(request, 4100, "authentication is invalid", 401)
        if self.faults.bind_error_code is not None:
            return self._fail(request, self.faults.bind_error_code, "simulated bind failure")
        body = await self._json(request)
        configs = body.get("configs")
        ok = (
            isinstance(configs, list)
            and configs
            and all(
                isinstance(c, dict)
                and isinstance(c.get("key"), str)
                and isinstance(c.get("enums"), list)
                and all(
                    isinstance(e, dict)
                    and isinstance(e.get("label"), str)
                    and isinstance(e.get("value"), str)
                    for e in c["enums"]
                )
                for c in configs
            )
        )
        if not ok:
            return self._fail(request, 4000, "configs must be [{key, enums:[{label, value}]}]")
        self.bindings.append({"connector_id": request.match_info["connector_id"], **body})
        return self._ok(request)

    async def _voices(self, request: web.Request) -> web.Response:
        if self._bearer(request) is None:
            return self._fail(request, 4100, "authentication is invalid", 401)
        voices = [
            self._voice("7426720361733046281", "柔美女友", "zh", "中文"),
            self._voice("7426720361733144585", "阳光少年", "zh", "中文"),
            self._voice("7426725529589661723", "Warm Narrator", "en", "English"),
        ]
        size = max(1, min(100, int(request.query.get("page_size", "100"))))
        page = max(1, int(request.query.get("page_num", "1")))
        chunk = voices[(page - 1) * size : page * size]
        return self._ok(request, {"voice_list": chunk, "has_more": page * size < len(voices)})

    @staticmethod
    def _voice(voice_id: str, name: str, code: str, language: str) -> dict[str, Any]:
        return {
            "voice_id": voice_id,
            "name": name,
            "is_system_voice": True,
            "language_code": code,
            "language_name": language,
            "preview_text": "你好",
            "preview_audio": "",
            "available_training_times": 0,
            "create_time": 1720000000,
            "update_time": 1720000000,
            "model_type": "big",
            "state": "init",
            "support_emotions": [],
        }

    async def _create_conversation(self, request: web.Request) -> web.Response:
        if self._bearer(request) is None:
            return self._fail(request, 4100, "authentication is invalid", 401)
        conversation = _numeric_id()
        return self._ok(
            request,
            {
                "id": conversation,
                "created_at": int(time.time()),
                "meta_data": {},
                "last_section_id": conversation,
            },
        )

    # ------------------------------------------------------------------ websocket

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        logid = request[LOGID]
        if self.faults.reject_handshake is not None:
            status = self.faults.reject_handshake
            return self._fail(request, 4100 if status == 401 else status, "refused", status)
        token = self._bearer(request)
        if token is None:
            return self._fail(request, 4100, "authentication is invalid", 401)
        query = dict(request.query)
        if not query.get("bot_id"):
            return self._fail(request, 4000, "bot_id is required", 400)
        if "device_id" in query and not query["device_id"].isdigit():
            return self._fail(request, 4000, "device_id must be an int64", 400)
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024, autoping=True)
        ws.headers["X-Tt-Logid"] = logid
        await ws.prepare(request)
        conn = ChatConnection(query, dict(request.headers), token)
        self.connections.append(conn)
        self._sockets.add(ws)
        log.info("chat session %d opened (bot %s)", len(self.connections), query["bot_id"])
        session = _ChatSession(self, ws, conn, logid, query["bot_id"])
        try:
            await session.run()
        finally:
            conn.closed = True
            self._sockets.discard(ws)
            await session.stop()
        return ws


class _ChatSession:
    """The server side of one /v1/chat connection."""

    def __init__(
        self, sim: Simulator, ws: web.WebSocketResponse, conn: ChatConnection, logid: str, bot: str
    ) -> None:
        self.sim = sim
        self.ws = ws
        self.conn = conn
        self.logid = logid
        self.bot = bot
        self.config: dict[str, Any] = {}
        self.conversation = _numeric_id()
        self.audio = bytearray()
        self.reply: asyncio.Task[None] | None = None
        self.chat_id: str | None = None
        self.opus: OpusDecoder | None = None

    async def send(self, event_type: str, data: Any = None) -> None:
        frame: dict[str, Any] = {"event_type": event_type, "id": str(uuid.uuid4())}
        if data is not None:
            frame["data"] = data
        frame["detail"] = {"logid": self.logid, "respond_at": str(int(time.time() * 1000))}
        await self.ws.send_str(json.dumps(frame, ensure_ascii=False))

    async def error(self, code: int, msg: str) -> None:
        await self.send("error", {"code": code, "msg": msg})

    async def run(self) -> None:
        await self.send("chat.created")
        async for message in self.ws:
            if message.type != WSMsgType.TEXT:
                if message.type == WSMsgType.BINARY:
                    await self.error(4000, "binary frames are not supported")
                continue
            try:
                frame = json.loads(message.data)
                event_type = frame["event_type"]
            except (ValueError, KeyError, TypeError):
                await self.error(4000, "invalid message: not a JSON event")
                continue
            self.conn.received.append(frame)
            await self.handle(str(event_type), frame.get("data") or {})

    async def stop(self) -> None:
        if self.reply is not None:
            self.reply.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reply

    def _input_format(self) -> str:
        return str((self.config.get("input_audio") or {}).get("format", "wav"))

    def _output_rate(self) -> int:
        output = self.config.get("output_audio") or {}
        rate = (output.get("pcm_config") or {}).get("sample_rate", 24000)
        return rate if rate in SAMPLE_RATES else 24000

    def _server_vad(self) -> bool:
        return (self.config.get("turn_detection") or {}).get("type") == "server_vad"

    async def handle(self, event_type: str, data: dict[str, Any]) -> None:
        match event_type:
            case "chat.update":
                self.config.update(data)
                chat_config = dict(self.config.get("chat_config") or {})
                self.conversation = chat_config.get("conversation_id") or self.conversation
                chat_config["conversation_id"] = self.conversation
                self.config["chat_config"] = chat_config
                input_audio = {
                    "format": "wav",
                    "codec": "pcm",
                    "sample_rate": 24000,
                    "channel": 1,
                    "bit_depth": 16,
                    **(self.config.get("input_audio") or {}),
                }
                output_audio = {"codec": "pcm", **(self.config.get("output_audio") or {})}
                self.opus = None
                if input_audio["codec"] == "opus":
                    try:
                        self.opus = OpusDecoder(int(input_audio["sample_rate"]))
                    except (ValueError, TypeError) as exc:
                        await self.error(4000, f"input_audio: {exc}")
                        return
                await self.send(
                    "chat.updated",
                    {**self.config, "input_audio": input_audio, "output_audio": output_audio},
                )
            case "input_audio_buffer.append":
                if self._input_format() != "pcm":
                    # What the real server says when a raw-PCM client did not set the format.
                    await self.error(
                        4000,
                        "audio should follow the format: wav, or set input_audio via chat.update",
                    )
                    return
                try:
                    audio = base64.b64decode(str(data.get("delta", "")), validate=True)
                except ValueError:
                    await self.error(4000, "delta is not base64")
                    return
                if self.opus is not None:
                    try:
                        audio = self.opus.decode(audio)
                    except OpusError as exc:
                        await self.error(4000, f"delta is not an Opus packet: {exc}")
                        return
                self.audio += audio
                self.conn.heard += audio
            case "input_audio_buffer.complete":
                if self._server_vad():
                    return  # ignored in server_vad mode
                await self.send("input_audio_buffer.completed")
                heard, self.audio = bytes(self.audio), bytearray()
                if heard:
                    self._start_reply(voice=True)
            case "input_audio_buffer.clear":
                self.audio.clear()
                await self.send("input_audio_buffer.cleared")
            case "conversation.chat.cancel":
                if self.reply is not None and not self.reply.done():
                    await self.stop()
                    await self.send(
                        "conversation.chat.canceled", {"code": 2, "msg": "canceled by client"}
                    )
            case "conversation.message.create":
                await self._interrupt(3)
                self._start_reply(voice=False)
            case "conversation.clear":
                await self.send("conversation.cleared")
            case "input_text.generate_audio":
                text = str(data.get("text", ""))
                if not text or len(text.encode()) > 1023:
                    await self.error(4000, "text must be 1..1023 bytes")
                    return
                await self._interrupt(3)
                self.reply = asyncio.create_task(self._speak(text))
            case "conversation.chat.submit_tool_outputs":
                pass
            case _:
                await self.error(4000, f"unknown event type {event_type}")

    async def _interrupt(self, code: int) -> None:
        if self.reply is not None and not self.reply.done():
            await self.stop()
            await self.send("conversation.chat.canceled", {"code": code, "msg": "interrupted"})

    def _start_reply(self, *, voice: bool) -> None:
        self.reply = asyncio.create_task(self._answer(voice=voice))

    def _message(
        self, role: str, kind: str, content: str, content_type: str = "text"
    ) -> dict[str, Any]:
        assert self.chat_id is not None
        return {
            "id": _numeric_id(),
            "conversation_id": self.conversation,
            "bot_id": self.bot,
            "role": role,
            "type": kind,
            "content": content,
            "content_type": content_type,
            "chat_id": self.chat_id,
            "section_id": self.conversation,
        }

    def _chat(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "conversation_id": self.conversation,
            "bot_id": self.bot,
            "created_at": int(time.time()),
            "status": status,
            "usage": {"token_count": 0, "output_count": 0, "input_count": 0},
            "section_id": self.conversation,
            **extra,
        }

    async def _pause(self) -> None:
        if self.sim.faults.delay_s:
            await asyncio.sleep(self.sim.faults.delay_s)

    async def _answer(self, *, voice: bool) -> None:
        faults = self.sim.faults
        if faults.silent:
            return
        if faults.error_on_complete is not None:
            await self.error(faults.error_on_complete, "simulated error")
            return
        if faults.malformed_frame:
            await self.ws.send_str("{this is not json")
        if faults.unknown_event:
            await self.send("simulator.unknown_event", {"note": "a type no client knows"})
        if faults.oversized_frame_bytes:
            await self.ws.send_str(" " * faults.oversized_frame_bytes)
        transcript = self.sim.transcript
        if voice:
            await self._pause()
            half = transcript[: max(1, len(transcript) // 2)]
            await self.send("conversation.audio_transcript.update", {"content": half})
            await self.send("conversation.audio_transcript.update", {"content": transcript})
            await self.send("conversation.audio_transcript.completed", {"content": transcript})
        self.chat_id = _numeric_id()
        await self.send(
            "conversation.message.completed", self._message("user", "question", transcript)
        )
        await self._pause()
        await self.send("conversation.chat.created", self._chat("created"))
        await self.send("conversation.chat.in_progress", self._chat("in_progress"))
        answer: list[str] = []
        deltas = 0
        async for kind, payload in self._reply_items():
            await self._pause()
            if kind == "text":
                answer.append(payload)
                await self.send(
                    "conversation.message.delta", self._message("assistant", "answer", payload)
                )
            elif kind == "sentence":
                await self.send("conversation.audio.sentence_start", {"text": payload})
            else:
                content = base64.b64encode(payload).decode()
                await self.send(
                    "conversation.audio.delta",
                    self._message("assistant", "answer", content, "audio"),
                )
                deltas += 1
                if (
                    faults.close_after_audio_deltas is not None
                    and deltas >= faults.close_after_audio_deltas
                ):
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
        log.info("reply of chat %s sent", self.chat_id)

    async def _reply_items(self) -> Any:
        """The trace's reply, audio resampled to the session's rate, paced by reply_speed."""
        rate = self._output_rate()
        audio = self.sim._reply.audio
        if rate != 24000:
            from coze_edge.adapters.resample import StreamResampler

            audio = StreamResampler(24000, rate).process(audio, last=True)
        offset = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for kind, value in self.sim._reply.script:
            if kind != "audio":
                yield kind, value
                continue
            size = max(2, int(value * rate / 24000) // 2 * 2)
            chunk = audio[offset : offset + size]
            offset += size
            if not chunk:
                continue
            due = started + offset / (2 * rate) / self.sim.reply_speed
            await asyncio.sleep(max(0.0, due - loop.time()))
            yield "audio", chunk
        if offset < len(audio):
            yield "audio", audio[offset:]

    async def _speak(self, text: str) -> None:
        """input_text.generate_audio: audio only, ids "0", no chat events (like the trace)."""
        await self.send("conversation.audio.sentence_start", {"text": text})
        rate = self._output_rate()
        audio = self.sim._reply.audio[: min(len(self.sim._reply.audio), len(text.encode()) * 4800)]
        if rate != 24000:
            from coze_edge.adapters.resample import StreamResampler

            audio = StreamResampler(24000, rate).process(audio, last=True)
        step = rate // 4 * 2  # 250 ms
        for start in range(0, len(audio), step):
            await asyncio.sleep(0.25 / self.sim.reply_speed)
            message = {
                "id": "0",
                "conversation_id": "0",
                "bot_id": self.bot,
                "role": "assistant",
                "type": "answer",
                "content": base64.b64encode(audio[start : start + step]).decode(),
                "content_type": "audio",
                "chat_id": "0",
                "section_id": "0",
            }
            await self.send("conversation.audio.delta", message)
        done = {
            "id": "0",
            "conversation_id": "0",
            "bot_id": self.bot,
            "role": "assistant",
            "type": "answer",
            "content": "",
            "content_type": "audio",
            "chat_id": "0",
            "section_id": "0",
        }
        await self.send("conversation.audio.completed", done)


async def serve(host: str, port: int, *, reply_speed: float = 6.0) -> None:
    """``coze-edge simulator``: serve until cancelled."""
    sim = Simulator(host=host, port=port, reply_speed=reply_speed)
    async with sim:
        log.info("Coze simulator: REST %s, WebSocket %s/v1/chat", sim.api_base, sim.ws_base)
        log.info(
            "personal access token: any of %s; approve logins at %s/device",
            sorted(sim.pats),
            sim.api_base,
        )
        await asyncio.Event().wait()
