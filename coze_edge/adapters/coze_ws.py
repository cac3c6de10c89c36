"""
The Coze voice-chat WebSocket (``/v1/chat``) on ``websockets``: JSON frames <-> core.events.

Library errors stop here: callers see ``CozeUnavailable`` (retry later),
``AuthenticationError`` (refresh the token) or another ``CozeAPIError`` from a refused
handshake, each with the Coze ``logid``. A redirect of the handshake is never followed
(``RedirectRefused``, a ``CozeUnavailable``; why: ``adapters.origins``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final
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
from coze_edge.flood_log import FloodLog

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat"

RECEIVE_BUFFER_BYTES: Final = 128 * 1024
"""The kernel's receive buffer for the socket (SO_RCVBUF; Linux doubles it for its own
bookkeeping): about 2 s of reply audio as base64 JSON, 6 times what playback needs on a
link with a 300 ms round trip. Fixed, so that a server we hold back (the driver reads
reply audio only as fast as it plays) cannot make the kernel grow it to tcp_rmem's
maximum (32 MB here) in our memory."""


@dataclass(frozen=True, slots=True)
class SocketSettings:
    ws_base: str
    bot_id: str
    device_id: str | None = None
    workflow_id: str | None = None
    """A chatflow agent's workflow (``workflow_id`` in the query, as the SDKs send it)."""
    open_timeout_s: float = 10.0
    ping_interval_s: float | None = 20.0
    """Quiet for this long while :meth:`CozeSocket.events` waits: send a ping."""
    ping_timeout_s: float | None = 20.0
    """... and if nothing answers it for this long (no pong, no frame): the socket is dead."""
    opus: OpusSettings | None = None
    """Encode the appended PCM as Opus, one packet per append; None = send PCM."""

    def url(self) -> str:
        query = {"bot_id": self.bot_id}
        if self.workflow_id:
            query["workflow_id"] = self.workflow_id
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

    def __init__(
        self,
        ws: ClientConnection,
        opus: OpusSettings | None = None,
        *,
        ping_interval_s: float | None = None,
        ping_timeout_s: float | None = None,
    ) -> None:
        self._ws = ws
        self._opus = OpusStream(opus.encoder()) if opus is not None else None
        self._id_prefix = uuid.uuid4().hex[:12]  # this connection's; a counter per event
        self._sent = 0
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._floods = FloodLog(log)
        self.logid: str | None = None
        raw = ws.transport.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
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
                ping_interval=None,  # events() pings (see _receive)
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
                max_queue=4,  # parsed ahead of events(), each up to MAX_FRAME_BYTES
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
        sock = cls(
            ws,
            settings.opus,
            ping_interval_s=settings.ping_interval_s,
            ping_timeout_s=settings.ping_timeout_s,
        )
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
                frame = await self._receive()
            except websockets.ConnectionClosed as exc:
                raise CozeUnavailable(f"websocket closed: {exc}", logid=self.logid) from exc
            try:
                event = decode(frame)
            except RemoteProtocolError as exc:
                # One bad frame must not end a conversation: say so, and read on; a flood
                # of them is a line per interval (the count of the rest at close at most).
                self._floods.warning(
                    "bad frames from Coze",
                    "! ignored a bad frame from Coze: %s (logid=%s)",
                    exc,
                    frame_logid(frame) or self.logid or "-",
                )
                continue
            log.debug("< %s", event)
            yield event

    async def _receive(self) -> str | bytes:
        """
        The next frame, keeping the connection alive while waiting for it: quiet for a
        ping interval, a ping; then one every ping timeout, as long as each is answered
        in time (else CozeUnavailable).

        Not websockets' own keepalive: it also runs while the driver leaves the socket
        unread for playback to catch up, and then the server's pong waits in TCP behind
        the reply audio the server sent before it (a minute of it, measured on loopback),
        so a healthy connection would be dropped mid-reply. Here only time spent waiting
        for a frame counts.
        """
        interval, timeout = self._ping_interval_s, self._ping_timeout_s
        pong: asyncio.Future[float] | None = None
        while True:
            try:
                async with asyncio.timeout(interval if pong is None else timeout or interval):
                    return await self._ws.recv()  # cancellation-safe: nothing is lost
            except TimeoutError:
                pass
            if pong is not None and not pong.done() and timeout is not None:
                raise CozeUnavailable(
                    f"Coze did not answer a ping within {timeout:g} s", logid=self.logid
                )
            pong = asyncio.ensure_future(await self._ws.ping())

    async def close(self) -> None:
        self._floods.flush()
        try:
            await self._ws.close()
        finally:
            # Python 3.11's asyncio.timeout raises CancelledError, not TimeoutError, in a
            # task already being cancelled: a close handshake that outlasts close_timeout
            # while the daemon stops (the peer's answer waits behind audio we did not
            # read) then leaves before websockets aborts the connection. A no-op after a
            # clean close.
            self._ws.transport.abort()
