"""
The device as Home Assistant meets it, through the real daemon (``coze-edge run``), a real
mosquitto and the simulator: what a restart shows first, the retained last turn, errors in
the diagnostics, the selects and the restart button, and the update check against a
loopback stand-in for PyPI's JSON API. (scripts/ha-check runs a real Home Assistant.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coze_edge import __version__
from coze_edge.core.status import Topics
from coze_edge.errors import EXIT_RESTART
from coze_edge.simulator import Simulator
from tests.support import mosquitto
from tests.support.cli import run_cli, running_cli, write_cli_config
from tests.support.data import DATA
from tests.support.mosquitto import Broker, Seen, mqtt_publish, watching
from tests.support.pypi import FakePypi, fake_pypi
from tests.support.timing import MS

PREFIX = "coze-edge/5551234"
TOPICS = Topics(PREFIX)
NODE = "coze_edge_5551234"
SILENCE = {"file_input": str(DATA / "silence-2s.wav")}
"""A microphone that hears nothing: only a command opens a turn."""
TURN_S = 30.0
"""Long enough for a turn of the simulator, or a start, on a loaded machine."""


def mqtt_on(broker: Broker, **more: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": broker.port, **more}


def state_is(state: str, **fields: object) -> Callable[[Seen], bool]:
    return mosquitto.state_is(TOPICS.state, state, **fields)


def event_is(kind: str, **fields: object) -> Callable[[Seen], bool]:
    return mosquitto.event_is(TOPICS.event, kind, **fields)


def document(seen: Seen | None) -> dict[str, Any]:
    assert seen is not None
    data = json.loads(seen.payload)
    assert isinstance(data, dict)
    return data


async def retained(broker: Broker, topic: str) -> Seen:
    """What a subscriber that comes now (Home Assistant after its restart) gets on ``topic``."""
    async with watching(broker, [topic]) as late:
        found = await late.wait_topic(topic)
    assert found.retained
    return found


# --- 1, 2: what Home Assistant sees first -------------------------------------------------------


@pytest.mark.simulator(reply_speed=20.0)
async def test_after_a_restart_the_kept_mute_and_volume_come_before_online(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """Mute and volume set from Home Assistant are the first state of the next run, and
    that state is on the broker before the device says online: Home Assistant never shows
    the microphone open, nor the old run's values as current."""
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt_on(broker))
    async with watching(broker, [f"{PREFIX}/#", f"homeassistant/+/{NODE}/+/config"]) as watcher:
        async with running_cli(config):
            await watcher.wait_for(state_is("idle"), within=TURN_S)
            await mqtt_publish(broker, TOPICS.cmd("muted"), b"ON")
            await mqtt_publish(broker, TOPICS.cmd("volume"), b"35")
            await watcher.wait_for(state_is("idle", muted=True, volume=35))
        await watcher.wait_topic(TOPICS.availability, b"offline")
        mark = watcher.mark()
        async with running_cli(config) as again:
            await watcher.wait_topic(TOPICS.availability, b"online", since=mark, within=TURN_S)
            await watcher.wait_for(state_is("idle", muted=True), since=mark, within=TURN_S)

    second = [seen.topic for seen in watcher.seen[mark:]]
    online = second.index(TOPICS.availability)
    first_discovery = min(n for n, topic in enumerate(second) if topic.startswith("homeassist"))
    assert second.index(TOPICS.state) < first_discovery < online
    states = [json.loads(seen.payload) for seen in watcher.on(TOPICS.state, mark)]
    assert all(state["muted"] and state["volume"] == 35 for state in states)
    assert "muted (as it was left)" in again.output


# --- 3: the last turn, retained -------------------------------------------------------------------


@pytest.mark.parametrize("publish_text", [True, False])
@pytest.mark.simulator(reply_speed=20.0)
async def test_the_last_turn_waits_retained_for_home_assistant(
    tmp_path: Path, broker: Broker, sim: Simulator, publish_text: bool
) -> None:
    """After a turn, a subscriber that comes later (Home Assistant after its restart) finds
    its transcript, reply and latency; with publish_text off only the figures."""
    mqtt = mqtt_on(broker, publish_text=publish_text)
    config = write_cli_config(tmp_path, sim, audio={"file_realtime": False}, mqtt=mqtt)
    async with (
        watching(broker, [TOPICS.last_turn]) as watcher,
        running_cli(config),
    ):
        await watcher.wait_topic(
            TOPICS.last_turn, lambda payload: b"first_audio_ms" in payload, within=TURN_S
        )
        turn = document(await retained(broker, TOPICS.last_turn))

    assert turn["first_audio_ms"] >= 0
    assert turn["at"].endswith("Z")
    if publish_text:
        assert turn["transcript"] == "今天天气真不错"
        assert "好天气" in turn["reply"]
    else:
        assert "transcript" not in turn
        assert "reply" not in turn


# --- 4: errors -----------------------------------------------------------------------------------


@pytest.mark.simulator(reply_speed=20.0)
async def test_a_refused_command_is_an_event_and_the_last_error(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """A bad payload gives an error event (what Home Assistant's event entity fires on) and
    becomes the retained diagnostics' last error, with the command and when."""
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt_on(broker))
    async with watching(broker, [f"{PREFIX}/#"]) as watcher, running_cli(config):
        await watcher.wait_for(state_is("idle"), within=TURN_S)
        assert document(await retained(broker, TOPICS.diagnostics))["last_error"] is None

        await mqtt_publish(broker, TOPICS.cmd("volume"), b"loud")
        await watcher.wait_for(event_is("error", command="volume"))
        await watcher.wait_topic(TOPICS.diagnostics, lambda payload: b"loud" in payload)
        diagnostics = document(await retained(broker, TOPICS.diagnostics))

    last_error = diagnostics["last_error"]
    assert last_error["command"] == "volume"
    assert "loud" in last_error["message"]
    assert last_error["at"].endswith("Z")


@pytest.mark.simulator(reply_speed=20.0)
async def test_without_remote_listen_the_wake_word_cannot_be_turned_off_over_mqtt(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """remote_listen off: `wake_word off` (every sound a turn) is refused with an error
    event; choosing another wake word still works."""
    mqtt = mqtt_on(broker, remote_listen=False)
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt, wake={"word": "alexa"})
    async with watching(broker, [f"{PREFIX}/#"]) as watcher, running_cli(config):
        await watcher.wait_for(state_is("idle", wake_word="alexa"), within=TURN_S)
        await mqtt_publish(broker, TOPICS.cmd("wake_word"), b"off")
        refused = await watcher.wait_for(event_is("error", command="wake_word"))
        await mqtt_publish(broker, TOPICS.cmd("wake_word"), b"hey_jarvis")
        await watcher.wait_for(state_is("idle", wake_word="hey_jarvis"), within=TURN_S)

    assert "mqtt.remote_listen: false" in document(refused)["message"]
    assert {state["wake_word"] for state in map(document, watcher.on(TOPICS.state))} == {
        "alexa",
        "hey_jarvis",
    }


# --- 6: diagnostics, selects, restart ------------------------------------------------------------


@pytest.mark.simulator(reply_speed=20.0)
async def test_diagnostics_count_reconnects_and_say_the_version(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """Version and start time at once; a new conversation renews the Coze session and a
    broker restart the MQTT one, and each is counted."""
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt_on(broker))
    async with running_cli(config):
        async with watching(broker, [f"{PREFIX}/#"]) as watcher:
            await watcher.wait_for(state_is("idle"), within=TURN_S)
            first = document(await retained(broker, TOPICS.diagnostics))
            await mqtt_publish(broker, TOPICS.cmd("new_conversation"), b"PRESS")
            await watcher.wait_topic(TOPICS.diagnostics, lambda p: b'"coze_reconnects": 1' in p)
        await broker.restart()  # nothing retained survives it
        async with watching(broker, [TOPICS.diagnostics]) as after:
            found = await after.wait_topic(
                TOPICS.diagnostics, lambda p: b'"mqtt_reconnects": 1' in p, within=TURN_S
            )

    assert first["version"] == __version__
    assert first["started_at"].endswith("Z")
    assert (first["coze_reconnects"], first["mqtt_reconnects"]) == (0, 0)
    assert first["audio_ok"] is True
    assert document(found)["coze_reconnects"] == 1


@pytest.mark.simulator(reply_speed=50.0)
async def test_the_wake_word_select_changes_the_running_daemon_and_is_kept(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """Configured for 'alexa', the device ignores 'Okay Nabu, what is the weather...'; once
    Home Assistant's select says okay_nabu, the same words wake it (a wake_word event, then
    a turn), and the next run keeps the choice."""
    audio = {"file_input": str(DATA / "wake-okay-nabu-then-question.wav"), "file_realtime": False}
    config = write_cli_config(
        tmp_path, sim, audio=audio, wake={"word": "alexa"}, mqtt=mqtt_on(broker)
    )
    async with watching(broker, [f"{PREFIX}/#"]) as watcher:
        async with running_cli(config):
            await watcher.wait_for(state_is("idle", wake_word="alexa"), within=TURN_S)
            await mqtt_publish(broker, TOPICS.cmd("wake_word"), b"okay_nabu")
            woke = await watcher.wait_for(event_is("wake_word"), within=TURN_S)
            await watcher.wait_for(event_is("turn"), within=TURN_S)
        mark = watcher.mark()
        async with running_cli(config) as again:
            await watcher.wait_for(
                state_is("idle", wake_word="okay_nabu"), since=mark, within=TURN_S
            )

    assert document(woke) == {"type": "wake_word", "word": "okay_nabu"}
    assert len(sim.connections) == 3  # alexa, okay_nabu, and the next run
    assert "wake word okay_nabu (as chosen since; the config says alexa)" in again.output
    controls = json.loads((tmp_path / "state" / "controls.json").read_text())
    assert controls["wake_word"] == "okay_nabu"


@pytest.mark.simulator(reply_speed=20.0)
async def test_the_turn_detection_select_reconfigures_the_coze_session(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """Choosing server_vad opens a new Coze session configured with Coze's VAD; the state
    says so, and a command sent meanwhile reaches the new session. `ctl turn_detection`
    does the same."""
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt_on(broker))
    async with watching(broker, [f"{PREFIX}/#"]) as watcher, running_cli(config):
        await watcher.wait_for(state_is("idle", turn_detection="client_interrupt"), within=TURN_S)
        await mqtt_publish(broker, TOPICS.cmd("turn_detection"), b"server_vad")
        await mqtt_publish(broker, TOPICS.cmd("say"), b"Said while it was rebuilt.")
        await watcher.wait_for(state_is("idle", turn_detection="server_vad"), within=TURN_S)
        await sim.wait_for(lambda: len(sim.connections) == 2, 5)
        await sim.wait_for(lambda: "chat.update" in sim.connections[1].event_types(), 5)
        await sim.wait_for(
            lambda: "input_text.generate_audio" in sim.connections[1].event_types(), 5
        )
        # The same from the command line.
        result = await run_cli("ctl", "-c", str(config), "turn_detection", "client_interrupt")
        assert result.returncode == 0, result.stdout
        await watcher.wait_for(state_is("idle", turn_detection="client_interrupt"), within=TURN_S)
        await sim.wait_for(lambda: len(sim.connections) == 3, 5)
        await sim.wait_for(lambda: "chat.update" in sim.connections[2].event_types(), 5)

    modes = [
        frame["data"]["turn_detection"]["type"]
        for conn in sim.connections
        for frame in conn.received
        if frame["event_type"] == "chat.update"
    ]
    assert modes == ["client_interrupt", "server_vad", "client_interrupt"]


@pytest.mark.simulator(reply_speed=20.0)
async def test_the_restart_button_stops_the_daemon_with_exit_code_75(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """cmd/restart stops the daemon cleanly (offline on the broker) with the exit code the
    unit restarts on."""
    config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt_on(broker))
    async with watching(broker, [f"{PREFIX}/#"]) as watcher, running_cli(config) as daemon:
        await watcher.wait_for(state_is("idle"), within=TURN_S)
        mark = watcher.mark()
        await mqtt_publish(broker, TOPICS.cmd("restart"), b"PRESS")
        async with asyncio.timeout(5):
            await daemon.process.wait()
        await watcher.wait_topic(TOPICS.availability, b"offline", since=mark)

    assert daemon.returncode == EXIT_RESTART == 75
    assert "restarting as asked" in daemon.output


# --- 7: the update entity ------------------------------------------------------------------------


def checking(broker: Broker, pypi: FakePypi) -> dict[str, Any]:
    return mqtt_on(broker, check_updates=True, updates_url=pypi.url)


@pytest.mark.simulator(reply_speed=20.0)
async def test_the_update_entity_shows_pypis_latest_and_asks_once_a_day(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """The update document has the installed and the latest version and says how to
    update; a restart within the day shows the same without asking again."""
    async with fake_pypi() as pypi:
        config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=checking(broker, pypi))
        for _ in range(2):
            async with watching(broker, [TOPICS.update]) as watcher, running_cli(config):
                found = await watcher.wait_topic(
                    TOPICS.update, lambda p: b"latest_version" in p, within=TURN_S
                )
            update = document(found)
            entity = await retained(broker, f"homeassistant/update/{NODE}/software/config")

    assert update["installed_version"] == __version__
    assert update["latest_version"] == "9.9.9"
    assert "pip install --upgrade coze-edge" in update["release_summary"]
    assert document(entity)["state_topic"] == TOPICS.update
    assert pypi.asked == [f"coze-edge/{__version__}"]


@pytest.mark.simulator(reply_speed=20.0)
async def test_an_unreachable_pypi_leaves_the_latest_unknown_and_the_device_working(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """PyPI answering 503 (or a device offline): no latest version, one log line, and the
    device goes on as ever."""
    async with fake_pypi(status=503) as pypi:
        config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=checking(broker, pypi))
        async with watching(broker, [f"{PREFIX}/#"]) as watcher, running_cli(config) as daemon:
            await watcher.wait_for(state_is("idle"), within=TURN_S)
            await daemon.read_until("update check: ")
            update = document(await retained(broker, TOPICS.update))
            await mqtt_publish(broker, TOPICS.cmd("volume"), b"35")
            await watcher.wait_for(state_is("idle", volume=35))

    assert update == {key: update[key] for key in ("installed_version", "title", "release_summary")}
    assert "HTTP 503; trying again hourly" in daemon.output
    assert len(pypi.asked) == 1


@pytest.mark.simulator(reply_speed=20.0)
async def test_with_update_checks_off_pypi_is_never_asked_and_there_is_no_entity(
    tmp_path: Path, broker: Broker, sim: Simulator
) -> None:
    """mqtt.check_updates false: no question, no update topic, the entity withdrawn."""
    async with fake_pypi() as pypi:
        mqtt = mqtt_on(broker, check_updates=False, updates_url=pypi.url)
        config = write_cli_config(tmp_path, sim, audio=SILENCE, mqtt=mqtt)
        topic = f"homeassistant/update/{NODE}/software/config"
        async with watching(broker, [f"{PREFIX}/#", topic]) as watcher, running_cli(config):
            await watcher.wait_for(state_is("idle"), within=TURN_S)
            await asyncio.sleep(200 * MS)  # what a question would have taken, and more

    assert pypi.asked == []
    assert watcher.on(TOPICS.update) == []
    assert [seen.payload for seen in watcher.on(topic)] == [b""]
