"""
The Coze voice-chat WebSocket (``/v1/chat``) on ``websockets``: JSON frames <-> core.events.

Library errors stop here: callers see ``CozeUnavailable`` (retry later),
``AuthenticationError`` (refresh the token) or another ``CozeAPIError`` from a refused
handshake, each with the Coze ``logid``. A redirect of the handshake is never followed
(``RedirectRefused``, a ``CozeUnavailable``; why: ``adapters.origins``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import HeadersLike
from websockets.http11 import USER_AGENT

from coze_edge.adapters.coze_http import client_headers
from coze_edge.adapters.opus import OpusSettings, OpusStream
from coze_edge.adapters.origins import redirect_refused
from coze_edge.core.events import (
    LOGID_HEADER,
    MAX_FRAME_BYTES,
    AudioAppend,
    AudioClear,
    AudioComplete,
    ClientEvent,
    ServerEvent,
    decode,
    encode,
    frame_logid,
)
from coze_edge.errors import CozeUnavailable, RemoteProtocolError, api_error

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat"


@dataclass(frozen=True, slots=True)
class SocketSettings:
    ws_base: str
    bot_id: str
    device_id: str | None = None
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    opus: OpusSettings | None = None
    """Encode the appended PCM as Opus, one packet per append; None = send PCM."""

    def url(self) -> str:
        query = {"bot_id": self.bot_id}
        if self.device_id:
            query["device_id"] = self.device_id
        return f"{self.ws_base.rstrip('/')}{CHAT_PATH}?{urlencode(query)}"


def _refusal(exc: websockets.InvalidStatus) -> Exception:
    """The error for a handshake Coze answered with an HTTP error."""
    response = exc.response
    logid = response.headers.get(LOGID_HEADER)
    code: int | str | None = None
    msg = f"websocket handshake refused: HTTP {response.status_code}"
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        body = json.loads(response.body or b"")
        if isinstance(body, dict):
            code = body.get("code") if isinstance(body.get("code"), int) else None
            if isinstance(body.get("msg"), str) and body["msg"]:
                msg = f"{msg}: {body['msg']}"
            detail = body.get("detail")
            if logid is None and isinstance(detail, dict) and isinstance(detail.get("logid"), str):
                logid = detail["logid"]
    if response.status_code in (401, 403) or code in (4100, 4101):
        return api_error(msg, code=code, http_status=response.status_code, logid=logid)
    return CozeUnavailable(msg, logid=logid, http_status=response.status_code)


class _NoRedirect(ClientConnection):
    """
    A connection whose handshake fails on any redirect with ``RedirectRefused``.

    ``websockets`` follows a 3xx answer to the handshake by itself (up to 10 times), and
    before 16.1 it sent the ``Authorization`` header along to another origin
    (tests/adapters/test_redirects.py). Raising here, on the first answer, means no version
    of it ever connects to where a redirect points. ``connect``'s ``create_connection``
    argument is the library's documented way to customise the connection.
    """

    async def handshake(
        self,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = USER_AGENT,
    ) -> None:
        try:
            await super().handshake(additional_headers, user_agent_header)
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if not 300 <= status < 400:
                raise
            uri = self.protocol.uri
            host = f"[{uri.host}]" if ":" in uri.host else uri.host
            url = f"{'wss' if uri.secure else 'ws'}://{host}:{uri.port}{uri.resource_name}"
            location = exc.response.headers.get("Location")
            # Not chained: the response holds the whole Location, query and all.
            raise redirect_refused("the chat handshake", url, status, location) from None


class CozeSocket:
    """One open voice-chat session. Use ``async with CozeSocket.open(...) as sock``."""

    def __init__(self, ws: ClientConnection, opus: OpusSettings | None = None) -> None:
        self._ws = ws
        self._opus = OpusStream(opus.encoder()) if opus is not None else None
        self._id_prefix = uuid.uuid4().hex[:12]  # this connection's; a counter per event
        self._sent = 0
        self.logid: str | None = None
        if ws.response is not None:
            self.logid = ws.response.headers.get(LOGID_HEADER)

    @classmethod
    async def open(cls, settings: SocketSettings, token: str) -> CozeSocket:
        url = settings.url()
        try:
            ws = await connect(
                url,
                additional_headers={
                    "Authorization": f"Bearer {token}",
                    "X-Coze-Client-User-Agent": client_headers()["X-Coze-Client-User-Agent"],
                },
                user_agent_header=client_headers()["User-Agent"],
                # JSON with base64 audio barely compresses: deflate would only cost CPU.
                compression=None,
                open_timeout=settings.open_timeout_s,
                ping_interval=settings.ping_interval_s,
                ping_timeout=settings.ping_timeout_s,
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
                max_queue=64,
                create_connection=_NoRedirect,
            )
        except websockets.InvalidStatus as exc:
            raise _refusal(exc) from exc
        except websockets.InvalidURI as exc:
            raise CozeUnavailable(f"bad websocket URL {settings.ws_base!r}: {exc}") from exc
        except socket.gaierror as exc:
            host = urllib.parse.urlsplit(settings.ws_base).hostname
            raise CozeUnavailable(
                f"cannot resolve {host} (DNS: {exc.strerror}): check the network and coze.ws_base"
            ) from exc
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise CozeUnavailable(
                f"cannot reach {settings.ws_base}: {exc or type(exc).__name__}"
            ) from exc
        sock = cls(ws, settings.opus)
        log.info("connected to Coze %s (logid=%s)", settings.ws_base, sock.logid or "-")
        return sock

    async def __aenter__(self) -> CozeSocket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, event: ClientEvent) -> None:
        if self._opus is not None:
            if isinstance(event, AudioAppend):
                for packet in self._opus.packets(event.audio):
                    await self._send(AudioAppend(packet))
                return
            if isinstance(event, AudioComplete):
                for packet in self._opus.end():
                    await self._send(AudioAppend(packet))
            elif isinstance(event, AudioClear):
                self._opus.clear()
        await self._send(event)

    async def _send(self, event: ClientEvent) -> None:
        self._sent += 1
        message = encode(event, f"{self._id_prefix}-{self._sent}")
        if not isinstance(event, AudioAppend):
            log.debug("> %s", message if len(message) < 600 else event)
        try:
            await self._ws.send(message)
        except websockets.ConnectionClosed as exc:
            raise CozeUnavailable(f"websocket closed: {exc}", logid=self.logid) from exc

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Every event Coze sends, until the socket closes (then CozeUnavailable)."""
        while True:
            try:
                frame = await self._ws.recv()
            except websockets.ConnectionClosed as exc:
                raise CozeUnavailable(f"websocket closed: {exc}", logid=self.logid) from exc
            try:
                event = decode(frame)
            except RemoteProtocolError as exc:
                # One bad frame must not end a conversation: say so, and read on.
                log.warning(
                    "! ignored a bad frame from Coze: %s (logid=%s)",
                    exc,
                    frame_logid(frame) or self.logid or "-",
                )
                continue
            log.debug("< %s", event)
            yield event

    async def close(self) -> None:
        await self._ws.close()
