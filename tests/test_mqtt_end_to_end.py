"""MQTT commands through the real daemon (subprocess), a real mosquitto and the simulator."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import yaml

from coze_edge.simulator import Simulator
from tests.support.data import DATA
from tests.support.mosquitto import Seen, Watcher, mqtt_publish, running_broker, watching
from tests.test_end_to_end import STOP_WITHIN_S, read_until, start_daemon, write_config

PREFIX = "coze-edge/5551234"


def state_is(state: str, **fields: object) -> Callable[[Seen], bool]:
    def match(seen: Seen) -> bool:
        if seen.topic != f"{PREFIX}/state" or not seen.payload:
            return False
        data = json.loads(seen.payload)
        return bool(data["state"] == state and all(data[k] == v for k, v in fields.items()))

    return match


async def test_every_command_reaches_the_daemon_and_coze(tmp_path: Path) -> None:
    """say, volume, mute/unmute, listen, cancel, new_conversation work; a bad payload
    gives an error event and changes nothing; stopping leaves availability offline."""
    async with (
        running_broker(tmp_path / "broker") as broker,
        Simulator(pats=("e2e-pat",), reply_speed=20.0) as sim,
        watching(broker, [f"{PREFIX}/#"]) as watcher,
    ):
        config_path = write_config(tmp_path, sim, file_input=str(DATA / "silence-2s.wav"))
        config = yaml.safe_load(config_path.read_text())
        config["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
        config_path.write_text(yaml.safe_dump(config))
        proc = await start_daemon(config_path)
        log: list[str] = []
        try:
            async with asyncio.timeout(30):
                await read_until(proc, "state: idle", log)
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
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(STOP_WITHIN_S + 2):
                await proc.communicate()
        await watcher.wait_for(
            lambda s: s.topic == f"{PREFIX}/availability" and s.payload == b"offline"
        )
    assert proc.returncode == 0
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
