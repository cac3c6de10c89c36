"""
What the broker's users may do and see, through the real daemon (``coze-edge run``), a real
mosquitto and the simulator: ``mqtt.remote_listen``, ``mqtt.publish_text``, and the ACL of
config/mosquitto-acl.example with a speaker, Home Assistant and a stranger as its users.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coze_edge.core.status import Topics, discovery_messages
from coze_edge.simulator import Simulator
from tests.support import mosquitto
from tests.support.cli import CliRun, run_cli, running_cli, write_cli_config
from tests.support.data import DATA
from tests.support.mosquitto import (
    Broker,
    Seen,
    Watcher,
    mqtt_publish,
    publish_refusal,
    running_broker,
    watching,
)

DEVICE = "5551234"
"""The device id write_cli_config gives the daemon, and its user name at the broker."""
PREFIX = f"coze-edge/{DEVICE}"
TOPICS = Topics(PREFIX)
OTHER = "7777"
"""Another speaker on the same broker."""
ACL = Path(__file__).parents[1] / "config" / "mosquitto-acl.example"
USERS = {
    "homeassistant": "ha-secret",
    DEVICE: "speaker-secret",
    OTHER: "other-speaker-secret",
    "guest": "guest-secret",
}
SILENCE = {"file_input": str(DATA / "silence-2s.wav")}
"""A microphone that hears nothing: only a command can open a turn."""
CJK = re.compile("[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
"""What the simulator's transcript (今天天气真不错) and the recorded reply are written in."""


def state_is(state: str, **fields: object) -> Callable[[Seen], bool]:
    return mosquitto.state_is(TOPICS.state, state, **fields)


def event_is(kind: str, **fields: object) -> Callable[[Seen], bool]:
    return mosquitto.event_is(TOPICS.event, kind, **fields)


def events(watcher: Watcher, since: int = 0) -> list[dict[str, Any]]:
    return [json.loads(seen.payload) for seen in watcher.on(TOPICS.event, since)]


def states(watcher: Watcher, since: int = 0) -> list[dict[str, Any]]:
    return [json.loads(seen.payload) for seen in watcher.on(TOPICS.state, since) if seen.payload]


async def until_idle(watcher: Watcher, daemon: CliRun) -> None:
    async with asyncio.timeout(30):
        await daemon.read_until("state: idle")
    await watcher.wait_for(state_is("idle"))


# --- mqtt.remote_listen ------------------------------------------------------------------------


@pytest.mark.simulator(reply_speed=20.0)
async def test_without_remote_listen_cmd_listen_opens_no_turn(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """remote_listen off: a published cmd/listen opens no turn (Coze is sent no audio) and
    an error event says why; `coze-edge ctl listen`, local, still opens one."""
    mqtt = {"host": "127.0.0.1", "port": broker.port, "remote_listen": False}
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt)
    async with watching(broker, [f"{PREFIX}/#"]) as watcher, running_cli(config) as daemon:
        await until_idle(watcher, daemon)
        [conn] = sim.connections
        mark = watcher.mark()

        await mqtt_publish(broker, TOPICS.cmd("listen"), b"PRESS")
        await mqtt_publish(broker, TOPICS.cmd("listen"), b"PRESS")
        # Commands are carried out in order: once the volume is in the state, a listen
        # would have been too.
        await mqtt_publish(broker, TOPICS.cmd("volume"), b"35")
        await watcher.wait_for(state_is("idle", volume=35), since=mark)
        await watcher.wait_for(event_is("error", command="listen"), since=mark)

        assert "listening" not in {state["state"] for state in states(watcher, mark)}
        assert "input_audio_buffer.append" not in conn.event_types()
        assert conn.heard == b""

        # The same daemon, told locally, listens: what was checked above would show it.
        result = await run_cli("ctl", "-c", str(config), "listen")
        assert result.returncode == 0, result.stdout
        await sim.wait_for(lambda: "input_audio_buffer.append" in conn.event_types(), 5)
        await watcher.wait_for(state_is("listening"), since=mark)

    refusals = [e for e in events(watcher, mark) if e.get("command") == "listen"]
    assert len(refusals) == 2
    assert all("mqtt.remote_listen: false" in e["message"] for e in refusals)
    assert daemon.output.count("ignoring cmd/listen") == 1  # however often refused


# --- mqtt.publish_text -------------------------------------------------------------------------


@pytest.mark.parametrize("publish_text", [True, False])
@pytest.mark.simulator(reply_speed=20.0)
async def test_publish_text_decides_whether_what_was_said_reaches_the_broker(
    tmp_path: Path, broker: Broker, sim: Simulator, publish_text: bool
) -> None:
    """A subscriber to # during a whole turn gets the transcript and the reply with
    publish_text on, and no text of the user's or the bot's at all with it off."""
    mqtt = {"host": "127.0.0.1", "port": broker.port, "publish_text": publish_text}
    config = write_cli_config(tmp_path, sim, audio={"file_realtime": False}, mqtt=mqtt)
    async with (
        watching(broker, ["#"]) as watcher,
        running_cli(config) as daemon,
        asyncio.timeout(30),
    ):
        await daemon.read_until("turn: ")  # the weather question, answered
        await watcher.wait_for(event_is("turn"))

    everything = [seen.payload.decode() for seen in watcher.seen]
    said = [e for e in events(watcher) if e["type"] in {"transcript", "reply"}]
    [conn] = sim.connections
    assert "input_audio_buffer.append" in conn.event_types()  # there was a turn to hear
    if publish_text:
        assert [e["type"] for e in said] == ["transcript", "reply"]
        assert said[0]["text"] == "今天天气真不错"
        assert "好天气" in said[1]["text"]
    else:
        assert said == []
        assert [payload for payload in everything if CJK.search(payload)] == []


# --- config/mosquitto-acl.example --------------------------------------------------------------


def speaker_config(tmp_path: Path, sim: Simulator, broker: Broker) -> Path:
    """The daemon of device DEVICE, logging in as the user named by its device id."""
    password = tmp_path / "mqtt_password"
    password.write_text(USERS[DEVICE] + "\n")
    password.chmod(0o600)
    mqtt = {
        "host": "127.0.0.1",
        "port": broker.port,
        "username": DEVICE,
        "password_file": str(password),
    }
    return write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt)


@pytest.mark.simulator(reply_speed=20.0)
async def test_under_the_example_acl_the_speaker_works_as_its_own_user(
    tmp_path: Path, sim: Simulator
) -> None:
    """Logged in as its device id, the speaker publishes availability, state, diagnostics,
    discovery and events, hears Home Assistant's birth message, and obeys Home Assistant's
    commands."""
    discovery = {
        topic for topic, _ in discovery_messages(DEVICE, "kitchen", TOPICS, "homeassistant", "")
    }
    async with running_broker(tmp_path / "broker", users=USERS, acl=ACL) as broker:
        config = speaker_config(tmp_path, sim, broker)
        topics = [f"{PREFIX}/#", "homeassistant/#"]
        async with watching(broker, topics, as_user="homeassistant") as ha:
            async with running_cli(config) as daemon:
                await until_idle(ha, daemon)
                await ha.wait_topic(TOPICS.availability, b"online")
                await ha.wait_for(lambda _: discovery <= {seen.topic for seen in ha.seen})
                await ha.wait_topic(TOPICS.diagnostics)  # the ACL lets the new topics through

                mark = ha.mark()
                await mqtt_publish(
                    broker, "homeassistant/status", b"online", as_user="homeassistant"
                )
                await ha.wait_for(
                    lambda _: discovery <= {seen.topic for seen in ha.seen[mark:]}, since=mark
                )

                await mqtt_publish(broker, TOPICS.cmd("volume"), b"35", as_user="homeassistant")
                await ha.wait_for(state_is("idle", volume=35), since=mark)
                await mqtt_publish(broker, TOPICS.cmd("listen"), b"PRESS", as_user="homeassistant")
                await ha.wait_for(state_is("listening"), since=mark)
                await mqtt_publish(broker, TOPICS.cmd("cancel"), b"PRESS", as_user="homeassistant")
                await mqtt_publish(broker, TOPICS.cmd("volume"), b"loud", as_user="homeassistant")
                await ha.wait_for(event_is("error", command="volume"), since=mark)
            await ha.wait_topic(TOPICS.availability, b"offline", since=mark)

    assert ha.on(TOPICS.login) != []  # the empty retained message that clears a login
    assert "refused the subscription" not in daemon.output


@pytest.mark.simulator(reply_speed=20.0)
async def test_under_the_example_acl_nobody_else_commands_or_reads_the_speaker(
    tmp_path: Path, sim: Simulator
) -> None:
    """A stranger (another user) is refused commands and Home Assistant's topics, and reads
    nothing of the speaker's; the speaker may not command itself or any other speaker, nor
    publish under another speaker's topics."""
    async with running_broker(tmp_path / "broker", users=USERS, acl=ACL) as broker:
        config = speaker_config(tmp_path, sim, broker)
        async with (
            watching(
                broker, [f"{PREFIX}/#", f"coze-edge/{OTHER}/#"], as_user="homeassistant"
            ) as ha,
            watching(broker, ["#"], as_user="guest") as stranger,
            running_cli(config) as daemon,
        ):
            await until_idle(ha, daemon)
            refused = [
                ("guest", TOPICS.cmd("volume"), b"10"),
                ("guest", TOPICS.cmd("listen"), b"PRESS"),
                ("guest", f"coze-edge/{OTHER}/cmd/listen", b"PRESS"),
                ("guest", TOPICS.state, b'{"state": "idle"}'),
                ("guest", "homeassistant/status", b"online"),
                ("guest", f"homeassistant/button/coze_edge_{DEVICE}/listen/config", b"{}"),
                (DEVICE, TOPICS.cmd("volume"), b"10"),
                (DEVICE, f"coze-edge/{OTHER}/cmd/listen", b"PRESS"),
                (DEVICE, f"coze-edge/{OTHER}/state", b'{"state": "idle"}'),
                (DEVICE, f"homeassistant/button/coze_edge_{OTHER}/listen/config", b"{}"),
            ]
            for user, topic, payload in refused:
                reason = await publish_refusal(broker, topic, payload, as_user=user)
                assert reason == "Not authorized", (user, topic)

            # The speaker is busy meanwhile, and Home Assistant sees all of it.
            mark = ha.mark()
            await mqtt_publish(broker, TOPICS.cmd("volume"), b"loud", as_user="homeassistant")
            await ha.wait_for(event_is("error", command="volume"), since=mark)
            volume = TOPICS.cmd("volume")
            assert await publish_refusal(broker, volume, b"35", as_user="homeassistant") is None
            await ha.wait_for(state_is("idle", volume=35), since=mark)

    assert {state["volume"] for state in states(ha)} <= {100, 35}
    assert [seen for seen in ha.seen if seen.topic.startswith(f"coze-edge/{OTHER}/")] == []
    assert [
        seen.topic for seen in stranger.seen if not seen.topic.startswith("coze-test-probe/")
    ] == []
