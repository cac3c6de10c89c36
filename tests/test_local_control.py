"""State hooks, `coze-edge ctl` against the real daemon, and conversation continuity."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from coze_edge.config import config_from_mapping
from coze_edge.credentials import StaticToken
from coze_edge.daemon import Daemon
from coze_edge.simulator import Simulator
from coze_edge.supervisor import supervise
from tests.support.data import DATA
from tests.test_end_to_end import STOP_WITHIN_S, read_until, start_daemon, write_config


async def test_a_hook_sees_the_state_sequence_of_a_turn(tmp_path: Path) -> None:
    """hooks.on_state runs once per state, in order, with the state in its environment."""
    seen = tmp_path / "states.txt"
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, sys\n"
        f"open({str(seen)!r}, 'a').write(os.environ['COZE_EDGE_HOOK_STATE'] + '\\n')\n"
    )
    async with Simulator(reply_speed=50.0) as sim:
        config = config_from_mapping(
            {
                "coze": {"api_base": sim.api_base, "ws_base": sim.ws_base, "bot_id": "7"},
                "auth": {"method": "pat"},
                "device": {"id": "42"},
                "state_dir": str(tmp_path),
                "audio": {
                    "backend": "file",
                    "file_input": str(DATA / "utterance-weather.wav"),
                    "file_realtime": False,
                },
                "hooks": {"on_state": f"{sys.executable} {script}"},
            },
            env={},
        )
        stop = asyncio.Event()

        def on_event(event: dict[str, Any]) -> None:
            if event["type"] == "turn":
                asyncio.get_running_loop().call_later(1.0, stop.set)  # let the hooks finish

        daemon = Daemon(config, tokens=StaticToken("sim-pat"), on_event=on_event, env={})
        async with asyncio.timeout(30):
            await supervise(daemon.services(), stop=stop, signals=())

    assert seen.read_text().split() == [
        "connecting",
        "idle",
        "listening",
        "thinking",
        "speaking",
        "idle",
    ]


async def ctl(config: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COZE_EDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coze_edge",
        "ctl",
        "-c",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_every_ctl_command_and_the_conversation_survives_a_restart(tmp_path: Path) -> None:
    """ctl drives a running daemon; the conversation id is kept across a restart and
    new_conversation replaces it."""
    async with Simulator(pats=("e2e-pat",), reply_speed=20.0) as sim:
        config = write_config(tmp_path, sim, file_input=str(DATA / "silence-2s.wav"))
        assert (await ctl(config, "status"))[0] == 69  # nobody listening yet

        proc = await start_daemon(config)
        log: list[str] = []
        try:
            async with asyncio.timeout(30):
                await read_until(proc, "state: idle", log)
            code, out = await ctl(config, "volume", "35")
            assert code == 0, out
            assert json.loads(out)["volume"] == 35
            assert (await ctl(config, "volume", "loud"))[0] == 1
            assert json.loads((await ctl(config, "mute"))[1])["muted"] is True
            assert json.loads((await ctl(config, "unmute"))[1])["muted"] is False
            await ctl(config, "say", "Hello", "there.")
            [conn] = sim.connections
            await sim.wait_for(lambda: "input_text.generate_audio" in conn.event_types(), 5)
            assert (await ctl(config, "listen"))[0] == 0
            await sim.wait_for(lambda: "input_audio_buffer.append" in conn.event_types(), 5)
            assert (await ctl(config, "cancel"))[0] == 0
            await sim.wait_for(lambda: "input_audio_buffer.clear" in conn.event_types(), 5)
            first_conversation = json.loads((tmp_path / "state" / "conversation.json").read_text())
            assert first_conversation["conversation_id"]
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(STOP_WITHIN_S + 2):
                await proc.communicate()

        second = await start_daemon(config)
        try:
            async with asyncio.timeout(30):
                await read_until(second, "state: idle", [])
            update = sim.connections[1].received[0]
            assert update["event_type"] == "chat.update"
            assert (
                update["data"]["chat_config"]["conversation_id"]
                == first_conversation["conversation_id"]
            )
            assert (await ctl(config, "new_conversation"))[0] == 0
            await sim.wait_for(lambda: len(sim.connections) == 3, 5)
            await sim.wait_for(lambda: bool(sim.connections[2].received), 5)
            fresh = sim.connections[2].received[0]["data"]["chat_config"]
            assert "conversation_id" not in fresh
        finally:
            second.send_signal(signal.SIGTERM)
            async with asyncio.timeout(STOP_WITHIN_S + 2):
                await second.communicate()
    assert yaml.safe_load(config.read_text())["device"]["id"] == "5551234"
