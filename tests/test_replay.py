"""The client against the real Coze server's recorded frames, replayed over a real websocket."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from coze_edge.config import config_from_mapping
from coze_edge.credentials import StaticToken
from coze_edge.daemon import Daemon
from coze_edge.supervisor import supervise
from tests.support.data import DATA, load_trace, trace_audio

TIMEOUT_S = 30


class ReplayServer:
    """Answers a voice turn with the downstream frames of a recorded trace."""

    def __init__(self, trace: str) -> None:
        self.frames = load_trace(trace).received
        self.received: list[dict[str, Any]] = []
        self.headers: dict[str, str] = {}
        self.path = ""

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.path = ws.request.path
        self.headers = dict(ws.request.headers)
        await ws.send(self.frames[0])  # chat.created, as the server sends on connect
        async for message in ws:
            event = json.loads(message)
            self.received.append(event)
            if event["event_type"] == "chat.update":
                await ws.send(json.dumps({"event_type": "chat.updated", "data": event["data"]}))
            elif event["event_type"] == "input_audio_buffer.complete":
                for frame in self.frames[1:]:
                    await ws.send(frame)


@pytest.fixture
async def replay() -> AsyncIterator[tuple[ReplayServer, str]]:
    server = ReplayServer("websocket_chat_success")
    async with serve(server.handler, "127.0.0.1", 0) as ws_server:
        host, port = next(iter(ws_server.sockets)).getsockname()[:2]
        yield server, f"ws://{host}:{port}"


def wav_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        return wav.readframes(wav.getnframes())


async def test_the_recorded_reply_plays_byte_for_byte(
    replay: tuple[ReplayServer, str], tmp_path: Path
) -> None:
    """The audio the daemon plays for the recorded reply is exactly the recorded WAV."""
    server, ws_base = replay
    output = tmp_path / "played.wav"
    config = config_from_mapping(
        {
            "coze": {
                "api_base": "http://127.0.0.1:9",
                "ws_base": ws_base,
                "bot_id": "7496347519799787557",
            },
            "auth": {"method": "pat"},
            "device": {"id": "42"},
            "state_dir": str(tmp_path),
            "audio": {
                "backend": "file",
                "file_input": str(DATA / "utterance-weather.wav"),
                "file_output": str(output),
                "file_realtime": False,
                "earcons": False,
            },
        },
        env={},
    )
    stop = asyncio.Event()
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] in ("turn", "error"):
            stop.set()

    daemon = Daemon(config, tokens=StaticToken("replay-token"), on_event=on_event, env={})
    async with asyncio.timeout(TIMEOUT_S):
        await supervise(daemon.services(), stop=stop, signals=())

    assert [e["type"] for e in events if e["type"] in ("turn", "error")] == ["turn"]
    assert wav_pcm(output) == trace_audio("websocket_chat_success")
    assert server.path.startswith("/v1/chat?bot_id=7496347519799787557&device_id=42")
    assert server.headers["authorization"] == "Bearer replay-token"
    reply = next(e for e in events if e["type"] == "reply")
    assert reply["text"].startswith("是啊")
