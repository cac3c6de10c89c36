"""State hooks, `coze-edge ctl` against the real daemon, and conversation continuity."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import yaml

from coze_edge.simulator import Simulator
from tests.support.cli import run_cli, running_cli
from tests.support.daemon import ONE_QUESTION, daemon_config, running_daemon
from tests.support.data import DATA


async def test_a_hook_sees_the_state_sequence_of_a_turn(tmp_path: Path) -> None:
    """hooks.on_state runs once per state, in order, with the state in its environment."""
    seen = tmp_path / "states.txt"
    script = tmp_path / "hook.py"
    script.write_text(
        "import os, sys\n"
        f"open({str(seen)!r}, 'a').write(os.environ['COZE_EDGE_HOOK_STATE'] + '\\n')\n"
    )
    async with Simulator(reply_speed=50.0) as sim:
        config = daemon_config(
            sim, tmp_path, audio=ONE_QUESTION, hooks={"on_state": f"{sys.executable} {script}"}
        )
        async with asyncio.timeout(30), running_daemon(config) as run:
            await run.wait(lambda: any(e["type"] == "turn" for e in run.events), 30)
            await asyncio.sleep(1.0)  # let the hooks finish

    assert seen.read_text().split() == [
        "connecting",
        "idle",
        "listening",
        "thinking",
        "speaking",
        "idle",
    ]


async def ctl(config: Path, *args: str) -> tuple[int, str]:
    result = await run_cli("ctl", "-c", str(config), "--json", *args)
    return result.returncode, result.stdout


@pytest.mark.simulator(reply_speed=20.0)
@pytest.mark.daemon(audio={"file_input": str(DATA / "silence-2s.wav")})
async def test_every_ctl_command_and_the_conversation_survives_a_restart(
    tmp_path: Path, sim: Simulator, cli_config: Path
) -> None:
    """ctl drives a running daemon; the conversation id is kept across a restart and
    new_conversation replaces it."""
    config = cli_config
    assert (await ctl(config, "status"))[0] == 69  # nobody listening yet

    async with running_cli(config) as first:
        async with asyncio.timeout(30):
            await first.read_until("state: idle")
        code, out = await ctl(config, "volume", "35")
        assert code == 0, out
        assert json.loads(out)["volume"] == 35
        assert (await ctl(config, "volume", "loud"))[0] == 64  # EX_USAGE
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

    async with running_cli(config) as second:
        async with asyncio.timeout(30):
            await second.read_until("state: idle")
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
        assert (await ctl(config, "new-conversation"))[0] == 0  # as a shell user writes it
        await sim.wait_for(lambda: len(sim.connections) == 4, 5)
        await sim.wait_for(lambda: bool(sim.connections[3].received), 5)
        assert "conversation_id" not in sim.connections[3].received[0]["data"]["chat_config"]
    assert yaml.safe_load(config.read_text())["device"]["id"] == "5551234"
