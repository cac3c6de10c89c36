"""
A Coze of the tests' own on loopback, for what the bundled simulator never does: stream a
reply far faster than it plays, split audio at odd bytes, flood the device with bad frames
or errors. It does as little as a session needs (``chat.update`` is answered with
``chat.updated``) and hands each committed turn to the test's ``on_turn``.

* :func:`hostile_coze`: the server for a block (a :class:`HostileCoze`, usable wherever a
  daemon config wants a Coze endpoint).
* :func:`stream_reply`: an ``on_turn`` that answers with a reply of any length, sent as fast
  as the socket takes it, in deltas of the sizes given (odd ones too).
* :func:`pattern_pcm`: reply audio with no zero sample, whose every byte matters.
* :func:`unread_by_clients`: what the kernel holds that the device has not read yet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

Turn = Callable[["HostileCoze", ServerConnection], Awaitable[None]]
"""What the server does once the device committed a turn (``input_audio_buffer.complete``),
or, as ``on_configured``, once it configured a session."""

CHAT_ID = "7000000000000000001"


@dataclass
class HostileCoze:
    """The server's address and what it saw and sent."""

    ws_base: str = ""
    api_base: str = "http://127.0.0.1:9"
    """Nothing listens there: a daemon with a personal access token needs no REST call."""
    received: list[str] = field(default_factory=list)
    """The event type of every frame the device sent (appends included)."""
    turns: int = 0
    sent_audio_bytes: int = 0
    """PCM sent in ``conversation.audio.delta`` frames so far (counted once each send
    returned, so it says how far TCP let the server get)."""
    reply_sent: bool = False
    """The last reply was sent to its end."""
    flooded: int = 0
    """Frames sent by :func:`flood`."""
    freeze: int = 0
    """Hang this many of the next connections once they are configured: stop reading them,
    so pings go unanswered (the server process is stuck, the kernel still holds the
    connection)."""
    connections: list[ServerConnection] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.ws_base.rsplit(":", 1)[1])

    async def send(self, ws: ServerConnection, event_type: str, data: Any = None) -> None:
        frame: dict[str, Any] = {"event_type": event_type, "id": str(uuid.uuid4())}
        if data is not None:
            frame["data"] = data
        await ws.send(json.dumps(frame))

    async def send_audio(self, ws: ServerConnection, pcm: bytes, chat_id: str = CHAT_ID) -> None:
        data = {
            "id": "m1",
            "conversation_id": "c1",
            "role": "assistant",
            "type": "answer",
            "content": base64.b64encode(pcm).decode("ascii"),
            "content_type": "audio",
            "chat_id": chat_id,
        }
        await self.send(ws, "conversation.audio.delta", data)
        self.sent_audio_bytes += len(pcm)


@contextlib.asynccontextmanager
async def hostile_coze(
    on_turn: Turn, *, on_configured: Turn | None = None
) -> AsyncIterator[HostileCoze]:
    """A voice-chat server on 127.0.0.1 that runs ``on_turn`` for every committed turn (and
    ``on_configured`` once each session is configured), each beside the reading."""
    coze = HostileCoze()

    async def answer(ws: ServerConnection, what: Turn) -> None:
        with contextlib.suppress(ConnectionClosed):
            await what(coze, ws)

    async def handler(ws: ServerConnection) -> None:
        coze.connections.append(ws)
        # Each turn is answered beside the reading, which goes on (barge-ins, cancels).
        async with asyncio.TaskGroup() as turns:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    event_type = str(json.loads(message).get("event_type"))
                    coze.received.append(event_type)
                    if event_type == "chat.update":
                        await coze.send(ws, "chat.updated", {"chat_config": {}})
                        if coze.freeze:
                            coze.freeze -= 1
                            ws.transport.pause_reading()
                        if on_configured is not None:
                            turns.create_task(answer(ws, on_configured))
                    elif event_type == "input_audio_buffer.complete":
                        coze.turns += 1
                        turns.create_task(answer(ws, on_turn))

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        coze.ws_base = f"ws://{host}:{port}"
        try:
            yield coze
        finally:
            for ws in coze.connections:
                ws.transport.abort()  # the frozen ones would not hear a close


def stream_reply(pcm: Callable[[], Iterable[bytes]], chat_id: str = CHAT_ID) -> Turn:
    """An ``on_turn`` that answers with the deltas ``pcm()`` yields, each sent as soon as
    the socket takes it, between the chat events a real reply has."""

    async def reply(coze: HostileCoze, ws: ServerConnection) -> None:
        coze.reply_sent = False
        chat = {"id": chat_id, "conversation_id": "c1", "status": "created"}
        await coze.send(ws, "conversation.chat.created", chat)
        for delta in pcm():
            await coze.send_audio(ws, delta, chat_id)
        await coze.send(ws, "conversation.audio.completed", {"chat_id": chat_id})
        await coze.send(ws, "conversation.chat.completed", {**chat, "status": "completed"})
        coze.reply_sent = True

    return reply


def pattern_pcm(seconds: float, rate: int = 24000) -> bytes:
    """``seconds`` of s16le audio in which no sample is zero and neighbours differ: a byte
    lost or shifted anywhere changes what is heard."""
    steps = np.arange(round(seconds * rate)) % 999
    return (steps * 30 - 14_985).astype("<i2").tobytes()  # 30 * k == 14_985 for no k


def split(pcm: bytes, sizes: Iterable[int]) -> Iterator[bytes]:
    """``pcm`` in pieces of the given sizes (cycled), the last one whatever is left."""
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(pcm):
            return
        yield pcm[position : position + size]
        position += size


def unread_by_clients(port: int) -> int:
    """Bytes waiting in the kernel's receive queues of the loopback TCP sockets connected
    to ``port`` (the clients' side; from /proc/net/tcp)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port:
            total += int(fields[4].split(":")[1], 16)
    return total


def flood(frame: str | Callable[[int], str], per_s: int, seconds: float) -> Turn:
    """A ``Turn`` that sends ``frame`` (or ``frame(n)``) ``per_s`` times a second for
    ``seconds``, then closes the connection (on the first connection only);
    ``HostileCoze.flooded`` counts what it sent."""

    async def send(coze: HostileCoze, ws: ServerConnection) -> None:
        if coze.flooded:
            return  # once: the device's next connection is left in peace
        loop = asyncio.get_running_loop()
        start = loop.time()
        total = round(per_s * seconds)
        while coze.flooded < total:
            due = min(total, round((loop.time() - start) * per_s) + 1)
            while coze.flooded < due:
                await ws.send(frame if isinstance(frame, str) else frame(coze.flooded))
                coze.flooded += 1
            await asyncio.sleep(0.005)
        await ws.close()

    return send
