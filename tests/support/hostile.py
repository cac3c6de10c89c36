"""
A hostile (or merely broken) server of the tests' own: HTTP and WebSocket on one loopback
port, answering each request as the test scripts it, and keeping what it received.

It is not Coze and knows nothing of Coze: a test says, per ``(method, path)``, what to
answer (:class:`Redirect`, :class:`Reply`, or :class:`Accept` to take a WebSocket upgrade
and run a coroutine on it), and afterwards reads :attr:`Hostile.seen` to see exactly which
headers and bodies reached it. Two of them (``127.0.0.1`` and ``127.0.0.2``, or two ports)
are two origins, which is what a cross-origin redirect needs.

    async with hostile_server() as first, hostile_server(host="127.0.0.2") as second:
        first.script("GET", "/v1/chat", Redirect(f"{second.ws_base}/v1/chat"))
        ...
        assert second.seen == []

:func:`echo` is the leak a careless server makes: an error text that repeats what the
client sent it (its ``Authorization`` header), the way a proxy's or a framework's debug
page does.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass(frozen=True)
class Request:
    """One request as it reached the server."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Header names in lower case; a repeated header's values joined with ``, ``."""
    body: bytes

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass(frozen=True)
class Redirect:
    """Answer with an HTTP redirect to ``location`` (absolute or relative)."""

    location: str
    status: int = 302


@dataclass(frozen=True)
class Reply:
    """Answer with ``body`` as JSON (``body`` is a callable: made from the request)."""

    body: Any | Callable[[Request], Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Peer:
    """The server's end of an accepted WebSocket."""

    request: Request
    _ws: web.WebSocketResponse
    received: list[str] = field(default_factory=list)

    async def send(self, message: Any) -> None:
        """Send ``message`` as a text frame (JSON unless it is a str already)."""
        await self._ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def receive(self) -> str | None:
        """The next text frame; None once the client has closed."""
        while True:
            message = await self._ws.receive()
            if message.type is WSMsgType.TEXT:
                self.received.append(message.data)
                return str(message.data)
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return None
            if message.type is WSMsgType.ERROR:
                return None

    async def close(self) -> None:
        await self._ws.close()


@dataclass(frozen=True)
class Accept:
    """Take the WebSocket upgrade and run ``session`` on it; the socket closes after it."""

    session: Callable[[Peer], Awaitable[None]]


Answer = Redirect | Reply | Accept


def echo(request: Request) -> str:
    """What a careless server says back: the client's credentials and body, verbatim (the
    bearer token also bare, as a server that names "the token" it refused would)."""
    authorization = request.authorization or "(none)"
    token = authorization.removeprefix("Bearer ")
    body = request.body.decode(errors="replace")
    return f"rejected Authorization: {authorization}; token {token} is not valid; body {body}"


class Hostile:
    """The server; use :func:`hostile_server`. Unscripted requests get a JSON 404."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.seen: list[Request] = []
        """Every request that reached this server, in order."""
        self.peers: list[Peer] = []
        """Every WebSocket it accepted."""
        self._script: dict[tuple[str, str], Answer | Callable[[Request], Answer]] = {}

    @property
    def origin(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """Its HTTP base URL (the name ``CozeEndpoint`` wants)."""
        return f"http://{self.origin}"

    @property
    def ws_base(self) -> str:
        return f"ws://{self.origin}"

    def script(self, method: str, path: str, answer: Answer | Callable[[Request], Answer]) -> None:
        """Answer every ``method path`` request (query ignored) with ``answer``, or with what
        ``answer(request)`` returns (a different answer each time, if it likes)."""
        self._script[(method.upper(), path)] = answer

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Request(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={
                name.lower(): ", ".join(request.headers.getall(name))
                for name in request.headers.keys()  # noqa: SIM118 - a multidict: keys repeat
            },
            body=await request.read(),
        )
        self.seen.append(seen)
        answer = self._script.get((request.method, request.path))
        if callable(answer):
            answer = answer(seen)
        match answer:
            case None:
                return web.json_response({"code": 4200, "msg": "not scripted"}, status=404)
            case Redirect(location, status):
                return web.Response(status=status, headers={"Location": location})
            case Reply(body, status, headers):
                content = body(seen) if callable(body) else body
                return web.json_response(content, status=status, headers=headers)
            case Accept(session):
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                peer = Peer(seen, ws)
                self.peers.append(peer)
                try:
                    await session(peer)
                finally:
                    await ws.close()
                return ws
        raise AssertionError(answer)  # pragma: no cover - Answer is closed


@contextlib.asynccontextmanager
async def hostile_server(host: str = "127.0.0.1") -> AsyncIterator[Hostile]:
    """A :class:`Hostile` listening on a free port of ``host`` (a loopback address)."""
    server = Hostile(host)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    server.port = int(runner.addresses[0][1])
    try:
        yield server
    finally:
        await runner.cleanup()
