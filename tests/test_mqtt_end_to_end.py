"""MQTT commands through the real daemon (subprocess), a real mosquitto and the simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from coze_edge.simulator import Simulator
from tests.support import mosquitto
from tests.support.cli import running_cli, write_cli_config
from tests.support.data import DATA
from tests.support.mosquitto import Broker, Seen, Watcher, mqtt_publish, watching

PREFIX = "coze-edge/5551234"


def state_is(state: str, **fields: object) -> Callable[[Seen], bool]:
    return mosquitto.state_is(f"{PREFIX}/state", state, **fields)


@pytest.mark.simulator(reply_speed=20.0)
async def test_every_command_reaches_the_daemon_and_coze(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """say, volume, mute/unmute, listen, cancel, new_conversation work; a bad payload
    gives an error event and changes nothing; stopping leaves availability offline."""
    config = write_cli_config(
        tmp_path,
        sim,
        audio={"file_input": str(DATA / "silence-2s.wav")},
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    async with watching(broker, [f"{PREFIX}/#"]) as watcher:
        async with running_cli(config) as daemon:
            async with asyncio.timeout(30):
                await daemon.read_until("state: idle")
            await watcher.wait_for(state_is("idle"))
            [conn] = sim.connections

            await mqtt_publish(broker, f"{PREFIX}/cmd/volume", b"35")
            await watcher.wait_for(state_is("idle", volume=35))

            mark = watcher.mark()
            await mqtt_publish(broker, f"{PREFIX}/cmd/volume", b"loud")
            error = await watcher.wait_for(
                lambda s: s.topic == f"{PREFIX}/event" and b'"error"' in s.payload, since=mark
            )
            assert error is not None
            assert b"loud" in error.payload

            mark = watcher.mark()
            await mqtt_publish(broker, f"{PREFIX}/cmd/say", b"Hello there. How are you?")
            await sim.wait_for(lambda: "input_text.generate_audio" in conn.event_types(), 5)
            await watcher.wait_for(state_is("speaking"), since=mark)
            await watcher.wait_for(state_is("idle", volume=35), since=mark + 1)

            await mqtt_publish(broker, f"{PREFIX}/cmd/mute", b"PRESS")
            await watcher.wait_for(state_is("idle", muted=True))
            await mqtt_publish(broker, f"{PREFIX}/cmd/unmute", b"PRESS")
            await watcher.wait_for(state_is("idle", muted=False))

            await mqtt_publish(broker, f"{PREFIX}/cmd/listen", b"PRESS")
            await watcher.wait_for(state_is("listening"))
            mark = watcher.mark()
            await mqtt_publish(broker, f"{PREFIX}/cmd/cancel", b"PRESS")
            await sim.wait_for(lambda: "input_audio_buffer.clear" in conn.event_types(), 5)
            await watcher.wait_for(state_is("idle"), since=mark)

            await mqtt_publish(broker, f"{PREFIX}/cmd/new_conversation", b"PRESS")
            await sim.wait_for(lambda: len(sim.connections) == 2, 5)
            assert volume_unchanged_by_bad_payload(watcher)
        await watcher.wait_for(
            lambda s: s.topic == f"{PREFIX}/availability" and s.payload == b"offline"
        )
    assert daemon.returncode == 0
    says = [
        f["data"]["text"] for f in conn.received if f["event_type"] == "input_text.generate_audio"
    ]
    assert says == ["Hello there. How are you?"]


def volume_unchanged_by_bad_payload(watcher: Watcher) -> bool:
    volumes = {
        json.loads(s.payload)["volume"]
        for s in watcher.on(f"{PREFIX}/state")
        if s.payload and json.loads(s.payload)["state"] != "starting"
    }
    return volumes <= {35, 100}


@pytest.mark.simulator(reply_speed=20.0)
async def test_a_refused_bot_and_a_kept_mute_show_on_the_state_topic(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """Coze refusing the bot shows as state error with its hint on MQTT (the same document
    ``ctl status`` gives); mute set over MQTT survives a SIGKILL and a new start."""
    sim.faults.bot_error = 4015
    config = write_cli_config(
        tmp_path,
        sim,
        audio={"file_input": str(DATA / "silence-2s.wav")},
        mqtt={"host": "127.0.0.1", "port": broker.port},
        coze={"refused_retry_s": 1.0},
    )
    async with watching(broker, [f"{PREFIX}/#"]) as watcher:
        async with running_cli(config) as daemon:
            refused = await watcher.wait_for(state_is("error"))
            assert refused is not None
            detail = json.loads(refused.payload)["detail"]
            assert "publish it as API in Coze" in detail
            assert "4015" in detail
            sim.faults.bot_error = None
            await watcher.wait_for(state_is("idle"))
            await mqtt_publish(broker, f"{PREFIX}/cmd/mute", b"PRESS")
            await watcher.wait_for(state_is("idle", muted=True))
            daemon.process.kill()  # a power cut, as far as the daemon can tell
            await daemon.process.wait()
        mark = watcher.mark()
        async with running_cli(config) as daemon:
            await watcher.wait_for(state_is("idle", muted=True), since=mark)
            async with asyncio.timeout(30):
                await daemon.read_until("muted (as it was left)")
