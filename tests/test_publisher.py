"""
The MQTT publisher against a real mosquitto, seen through mosquitto_sub / mosquitto_pub as a
user (or Home Assistant) would see it: availability, state, login, events, discovery,
commands, the Last Will, a broker restart, a frozen broker, TLS with a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from coze_edge.config import Config, DeviceConfig, MqttConfig
from coze_edge.core.commands import (
    AnyCommand,
    Cancel,
    Listen,
    Mute,
    NewConversation,
    Say,
    SetVolume,
    Unmute,
)
from coze_edge.core.status import DeviceStatus, LoginPrompt, State, Topics, discovery_messages
from coze_edge.latest import EventQueue, Latest
from coze_edge.publisher import Publisher
from tests.support.mosquitto import (
    Broker,
    Watcher,
    make_tls_files,
    mqtt_publish,
    running_broker,
    watching,
)
from tests.support.timing import MS

DEVICE_ID = "4517599999261404022"
PREFIX = f"coze-edge/{DEVICE_ID}"
TOPICS = Topics(PREFIX)
VERSION = "0.1.0-test"
ROOT = Path(__file__).resolve().parents[1]


def fast_delays() -> Iterator[float]:
    return itertools.repeat(20 * MS)


def config_for(broker: Broker, state_dir: Path, **mqtt: Any) -> Config:
    return Config(
        device=DeviceConfig(id=DEVICE_ID, name="Kitchen speaker"),
        state_dir=state_dir,
        mqtt=MqttConfig(
            host="127.0.0.1", port=broker.port, topic_prefix=PREFIX, keepalive_s=5, **mqtt
        ),
    )


@dataclass
class Device:
    """What the daemon hands the publisher, and what came back."""

    status: Latest[DeviceStatus]
    events: EventQueue
    login: Latest[LoginPrompt | None]
    commands: list[AnyCommand]
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def publishing(config: Config, *, events_size: int = 64) -> AsyncIterator[Device]:
    commands: list[AnyCommand] = []
    status = Latest(DeviceStatus(State.IDLE, volume=80, coze_connected=True))
    events = EventQueue(events_size)
    login: Latest[LoginPrompt | None] = Latest(None)
    publisher = Publisher(
        config,
        status=status,
        events=events,
        on_command=commands.append,
        login=login,
        sw_version=VERSION,
        delays=fast_delays,
    )
    task = asyncio.create_task(publisher.run())
    try:
        yield Device(status, events, login, commands, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def state_is(**expected: Any) -> Callable[[bytes], bool]:
    def check(payload: bytes) -> bool:
        state = json.loads(payload) if payload else {}
        return all(state.get(key) == value for key, value in expected.items())

    return check


async def online(watcher: Watcher, since: int = 0) -> None:
    await watcher.wait_topic(TOPICS.availability, b"online", since=since)


async def eventually(condition: Callable[[], bool], within: float = 3000 * MS) -> None:
    """Wait until ``condition()`` holds (it reads state that other tasks change)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls a predicate, not a flag
            await asyncio.sleep(5 * MS)


# --- what a subscriber sees ------------------------------------------------------------------


async def test_connecting_publishes_availability_state_login_and_discovery(
    broker: Broker, tmp_path: Path
) -> None:
    """A subscriber that comes later finds online, the state, discovery, all retained."""
    async with publishing(config_for(broker, tmp_path)):
        async with watching(broker, [f"{PREFIX}/#"]) as device_topics:
            await online(device_topics)
            await device_topics.wait_topic(TOPICS.state, state_is(state="idle", volume=80))

        async with watching(broker, [f"{PREFIX}/#", "homeassistant/#"]) as late:
            pass

    retained = {seen.topic: seen.payload for seen in late.seen if seen.retained}
    messages = discovery_messages(
        DEVICE_ID, "Kitchen speaker", TOPICS, "homeassistant", VERSION, updates=False
    )
    expected = {topic: payload for topic, payload in messages if payload}
    assert retained[TOPICS.availability] == b"online"
    assert json.loads(retained[TOPICS.state]) == {
        "state": "idle",
        "muted": False,
        "volume": 80,
        "coze_connected": True,
        "detail": None,
        "wake_word": None,
        "turn_detection": "client_interrupt",
    }
    assert TOPICS.login not in retained  # nothing pending: the empty message cleared it
    assert json.loads(retained[TOPICS.diagnostics])["version"] == VERSION
    assert TOPICS.update not in retained  # no update check: no update entity
    assert {topic: retained[topic] for topic in expected} == expected
    assert len(expected) == 23


async def test_the_state_comes_before_discovery_and_discovery_before_online(
    broker: Broker, tmp_path: Path
) -> None:
    """Per connection the retained documents go first, then discovery, then `online`, each
    acknowledged before the next: Home Assistant never shows an earlier run's values as
    current, nor an entity before its value is there."""
    await mqtt_publish(broker, TOPICS.state, b'{"state": "speaking", "muted": false}', retain=True)
    await mqtt_publish(broker, TOPICS.availability, b"offline", retain=True)
    async with watching(broker, ["#"]) as watcher:
        mark = watcher.mark()
        async with publishing(config_for(broker, tmp_path)):
            await watcher.wait_topic(TOPICS.availability, b"online", since=mark)

    order = [seen.topic for seen in watcher.seen[mark:]]
    discovery = [n for n, topic in enumerate(order) if topic.startswith("homeassistant/")]
    documents = [TOPICS.state, TOPICS.login, TOPICS.diagnostics]
    assert max(order.index(topic) for topic in documents) < min(discovery)
    assert max(discovery) < order.index(TOPICS.availability)
    assert state_is(state="idle", volume=80)(watcher.on(TOPICS.state, mark)[0].payload)


async def test_without_a_discovery_prefix_nothing_is_announced(
    broker: Broker, tmp_path: Path
) -> None:
    """discovery_prefix: null keeps the device out of Home Assistant's discovery topics."""
    async with publishing(config_for(broker, tmp_path, discovery_prefix=None)):
        async with watching(broker, [TOPICS.state]) as watcher:
            await watcher.wait_topic(TOPICS.state)
        async with watching(broker, ["homeassistant/#"]) as late:
            pass

    assert late.seen == [seen for seen in late.seen if seen.topic.startswith("coze-test-probe/")]


async def test_state_changes_are_published_retained(broker: Broker, tmp_path: Path) -> None:
    """Every state the daemon sets reaches the state topic, with the mute and volume fields."""
    async with (
        publishing(config_for(broker, tmp_path)) as device,
        watching(broker, [TOPICS.state]) as watcher,
    ):
        await watcher.wait_topic(TOPICS.state, state_is(state="idle"))
        mark = watcher.mark()

        device.status.set(DeviceStatus(State.LISTENING, muted=False, volume=80))
        await watcher.wait_topic(TOPICS.state, state_is(state="listening"), since=mark)
        device.status.set(DeviceStatus(State.IDLE, muted=True, volume=35, detail="muted"))
        await watcher.wait_topic(TOPICS.state, state_is(muted=True, volume=35), since=mark)


async def test_events_are_published_one_message_each(broker: Broker, tmp_path: Path) -> None:
    """Transcript, reply, turn (with its latency figures) and error each become one event."""
    async with (
        publishing(config_for(broker, tmp_path)) as device,
        watching(broker, [TOPICS.event]) as watcher,
    ):
        sent: list[dict[str, Any]] = [
            {"type": "transcript", "text": "what is the weather"},
            {"type": "reply", "text": "晴，25 度。", "chat_id": "c1"},
            {
                "type": "turn",
                "chat_id": "c1",
                "speech_ms": 1200,
                "total_ms": 2400,
                "first_audio_ms": 640,
                "reply_audio_ms": 1800,
            },
            {"type": "error", "message": "connection to Coze lost mid-turn"},
        ]
        for event in sent:
            device.events.put_nowait(event)

        await eventually(lambda: len(watcher.on(TOPICS.event)) == len(sent))

    assert [json.loads(seen.payload) for seen in watcher.on(TOPICS.event)] == sent
    assert not any(seen.retained for seen in watcher.on(TOPICS.event))


async def test_a_pending_login_is_retained_and_cleared_after(
    broker: Broker, tmp_path: Path
) -> None:
    """The login code stays on the broker while pending; an empty retained message clears it."""
    prompt = LoginPrompt("ABCD-EFGH", "https://www.coze.cn/device", datetime(2030, 1, 2, 3, 4, 5))
    async with publishing(config_for(broker, tmp_path)) as device:
        device.login.set(prompt)
        async with watching(broker, [TOPICS.login]) as watcher:
            found = await watcher.wait_topic(TOPICS.login, lambda payload: payload != b"")
            mark = watcher.mark()

            device.login.set(None)
            await watcher.wait_topic(TOPICS.login, b"", since=mark)

        async with watching(broker, [TOPICS.login]) as late:
            pass

    assert json.loads(found.payload) == {
        "user_code": "ABCD-EFGH",
        "verification_url": "https://www.coze.cn/device",
        "expires_at": "2030-01-02T03:04:05Z",
    }
    assert late.on(TOPICS.login) == []


async def test_home_assistant_birth_makes_the_device_announce_itself_again(
    broker: Broker, tmp_path: Path
) -> None:
    """`homeassistant/status online` brings every discovery document again, and the state."""
    async with (
        publishing(config_for(broker, tmp_path)),
        watching(broker, ["homeassistant/+/+/+/config", f"{PREFIX}/#"]) as watcher,
    ):
        await online(watcher)
        await watcher.wait_topic(TOPICS.state)
        mark = watcher.mark()

        await mqtt_publish(broker, "homeassistant/status", b"online")

        topics = {
            topic for topic, _ in discovery_messages(DEVICE_ID, "x", TOPICS, "homeassistant", "")
        }
        await eventually(lambda: topics <= {seen.topic for seen in watcher.seen[mark:]})
        await watcher.wait_topic(TOPICS.state, since=mark)


# --- commands ----------------------------------------------------------------------------------


async def test_every_command_reaches_the_daemon(broker: Broker, tmp_path: Path) -> None:
    """Each cmd/<name>, with the payloads Home Assistant and users send, arrives parsed."""
    sent = [
        ("listen", b"PRESS"),
        ("cancel", b"PRESS"),
        ("mute", b""),
        ("unmute", b"anything"),
        ("muted", b"ON"),
        ("muted", b"OFF"),
        ("volume", b"35"),
        ("volume", b" 35.0 "),
        ("say", "你好, world".encode()),
        ("new_conversation", b"PRESS"),
        ("new-conversation", b"PRESS"),  # - for _, as a shell user writes it
    ]
    async with (
        publishing(config_for(broker, tmp_path)) as device,
        watching(broker, [TOPICS.availability]) as watcher,
    ):
        await online(watcher)
        for name, payload in sent:
            await mqtt_publish(broker, TOPICS.cmd(name), payload)
        await eventually(lambda: len(device.commands) == len(sent))

    assert device.commands == [
        Listen(),
        Cancel(),
        Mute(),
        Unmute(),
        Mute(),
        Unmute(),
        SetVolume(35),
        SetVolume(35),
        Say("你好, world"),
        NewConversation(),
        NewConversation(),
    ]


async def test_a_bad_payload_gives_an_error_event_and_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    """`volume loud`, an empty `say` and an unknown command are refused with an error event."""
    async with (
        publishing(config_for(broker, tmp_path)) as device,
        watching(broker, [TOPICS.event, TOPICS.state]) as watcher,
    ):
        await watcher.wait_topic(TOPICS.state)
        for name, payload in [("volume", b"loud"), ("say", b"   "), ("dance", b"PRESS")]:
            await mqtt_publish(broker, TOPICS.cmd(name), payload)
        await eventually(lambda: len(watcher.on(TOPICS.event)) == 3)
        await mqtt_publish(broker, TOPICS.cmd("listen"), b"PRESS")  # still listening after
        await eventually(lambda: device.commands == [Listen()])

    errors = [json.loads(seen.payload) for seen in watcher.on(TOPICS.event)]
    assert [(error["type"], error["command"]) for error in errors] == [
        ("error", "volume"),
        ("error", "say"),
        ("error", "dance"),
    ]
    assert "loud" in errors[0]["message"]
    assert len(watcher.on(TOPICS.state)) == 1  # the state was not touched


async def test_status_command_publishes_the_state_again(broker: Broker, tmp_path: Path) -> None:
    """cmd/status re-sends the current state and passes nothing on."""
    async with (
        publishing(config_for(broker, tmp_path)) as device,
        watching(broker, [TOPICS.state]) as watcher,
    ):
        await watcher.wait_topic(TOPICS.state)
        mark = watcher.mark()

        await mqtt_publish(broker, TOPICS.cmd("status"), b"")

        await watcher.wait_topic(TOPICS.state, state_is(state="idle"), since=mark)
        assert device.commands == []


async def test_a_retained_command_is_not_obeyed(broker: Broker, tmp_path: Path) -> None:
    """A command left retained on the broker does not replay at every connection."""
    await mqtt_publish(broker, TOPICS.cmd("say"), b"stale", retain=True)
    async with (
        publishing(config_for(broker, tmp_path)) as device,
        watching(broker, [TOPICS.availability]) as watcher,
    ):
        await online(watcher)
        await mqtt_publish(broker, TOPICS.cmd("listen"), b"PRESS")
        await eventually(lambda: device.commands != [])

    assert device.commands == [Listen()]


# --- what the broker's users may do and see: mqtt.remote_listen, mqtt.publish_text ---------------


async def test_without_remote_listen_cmd_listen_is_refused_and_said_once_in_the_log(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """remote_listen off: cmd/listen reaches nothing; each gets an error event saying why,
    the log says it once; other commands still work."""
    async with (
        publishing(config_for(broker, tmp_path, remote_listen=False)) as device,
        watching(broker, [TOPICS.event]) as watcher,
    ):
        for name in ["listen", "listen", "cancel"]:
            await mqtt_publish(broker, TOPICS.cmd(name), b"PRESS")
        await eventually(lambda: device.commands != [] and len(watcher.on(TOPICS.event)) == 2)

    assert device.commands == [Cancel()]
    errors = [json.loads(seen.payload) for seen in watcher.on(TOPICS.event)]
    assert errors == 2 * [
        {"type": "error", "command": "listen", "message": errors[0]["message"]},
    ]
    assert "mqtt.remote_listen: false" in errors[0]["message"]
    said = [r for r in caplog.records if "remote_listen" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING]


async def test_without_publish_text_no_transcript_or_reply_reaches_the_broker(
    broker: Broker, tmp_path: Path
) -> None:
    """publish_text off: the transcript and reply events are not published; the turn's
    figures and errors still are, and no text of them is anywhere on the broker."""
    events: list[dict[str, Any]] = [
        {"type": "transcript", "text": "what is the weather"},
        {"type": "reply", "text": "晴，25 度。", "chat_id": "c1"},
        {"type": "turn", "chat_id": "c1", "speech_ms": 1200, "first_audio_ms": 640},
        {"type": "error", "message": "connection to Coze lost mid-turn"},
    ]
    async with (
        publishing(config_for(broker, tmp_path, publish_text=False)) as device,
        watching(broker, ["#"]) as watcher,
    ):
        for event in events:
            device.events.put_nowait(event)
        # Events go out in order: once the error is there, the others had their chance.
        await watcher.wait_topic(TOPICS.event, lambda payload: b'"error"' in payload)

    assert [json.loads(seen.payload) for seen in watcher.on(TOPICS.event)] == events[2:]
    everything = b"".join(seen.payload for seen in watcher.seen)
    assert b"weather" not in everything
    assert "晴".encode() not in everything


async def test_switching_either_off_withdraws_its_home_assistant_entities(
    broker: Broker, tmp_path: Path
) -> None:
    """A run with remote_listen and publish_text off removes the listen button and the text
    sensors an earlier run left on the broker; the other entities stay."""
    entities = discovery_messages(
        DEVICE_ID, "Kitchen speaker", TOPICS, "homeassistant", VERSION, updates=False
    )
    topics = {topic for topic, payload in entities if payload}  # no update check here
    async with watching(broker, ["homeassistant/#"]) as watcher:
        async with publishing(config_for(broker, tmp_path)):
            await eventually(lambda: topics <= {seen.topic for seen in watcher.seen})
        mark = watcher.mark()
        config = config_for(broker, tmp_path, remote_listen=False, publish_text=False)
        async with publishing(config):
            await eventually(lambda: topics <= {seen.topic for seen in watcher.seen[mark:]})
    async with watching(broker, ["homeassistant/#"]) as late:
        pass

    retained = {seen.topic for seen in late.seen if seen.retained}
    withdrawn = {
        f"homeassistant/button/coze_edge_{DEVICE_ID}/listen/config",
        f"homeassistant/sensor/coze_edge_{DEVICE_ID}/transcript/config",
        f"homeassistant/sensor/coze_edge_{DEVICE_ID}/reply/config",
    }
    assert retained == topics - withdrawn
    no_update = f"homeassistant/update/coze_edge_{DEVICE_ID}/software/config"
    emptied = {seen.topic for seen in watcher.seen[mark:] if not seen.payload}
    assert emptied == withdrawn | {no_update}


# --- stopping, dying, losing the broker ---------------------------------------------------------


async def test_a_clean_stop_says_offline_and_leaves_the_last_state(
    broker: Broker, tmp_path: Path
) -> None:
    """Cancelling the publisher publishes the state and `offline`, retained, within a second."""
    async with watching(broker, [TOPICS.availability]) as watcher:
        async with publishing(config_for(broker, tmp_path)) as device:
            await online(watcher)
            device.status.set(DeviceStatus(State.STARTING, volume=10))
            mark = watcher.mark()
            loop = asyncio.get_running_loop()
            started = loop.time()
            device.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await device.task
            took = loop.time() - started

        await watcher.wait_topic(TOPICS.availability, b"offline", since=mark)

    async with watching(broker, [f"{PREFIX}/#"]) as late:
        pass
    retained = {seen.topic: seen.payload for seen in late.seen if seen.retained}
    assert retained[TOPICS.availability] == b"offline"
    assert state_is(state="starting", volume=10)(retained[TOPICS.state])
    assert took < 1.0


CHILD = """
import asyncio, sys
from pathlib import Path
from coze_edge.config import Config, DeviceConfig, MqttConfig
from coze_edge.core.status import DeviceStatus, State
from coze_edge.latest import EventQueue, Latest
from coze_edge.publisher import Publisher

port, prefix, device_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
config = Config(
    device=DeviceConfig(id=device_id, name="Kitchen speaker"),
    state_dir=Path(sys.argv[4]),
    mqtt=MqttConfig(host="127.0.0.1", port=port, topic_prefix=prefix, keepalive_s=5),
)

async def main() -> None:
    publisher = Publisher(
        config,
        status=Latest(DeviceStatus(State.SPEAKING)),
        events=EventQueue(),
        on_command=print,
        login=Latest(None),
        sw_version="child",
    )
    await publisher.run()

asyncio.run(main())
"""


async def test_the_last_will_says_offline_when_the_process_is_killed(
    broker: Broker, tmp_path: Path
) -> None:
    """kill -9 of the process holding the connection: the broker publishes `offline` at once."""
    async with watching(broker, [TOPICS.availability, TOPICS.state]) as watcher:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(broker.port),
            PREFIX,
            DEVICE_ID,
            str(tmp_path),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        killed = False
        try:
            await watcher.wait_topic(TOPICS.availability, b"online", within=10_000 * MS)
            await watcher.wait_topic(TOPICS.state, state_is(state="speaking"))
            mark = watcher.mark()
            child.send_signal(signal.SIGKILL)
            killed = True
        finally:
            # Signal the child once only: a second signal polls the dying child
            # (Popen.send_signal calls waitpid(WNOHANG)) and can reap it before
            # asyncio's watcher thread, which then reports exit code 255.
            if not killed:
                child.kill()
            await child.wait()

        await watcher.wait_topic(
            TOPICS.availability, b"offline", since=mark, within=3000 * MS
        )  # ~2 ms idle; slack for a loaded CI host
    assert child.returncode == -signal.SIGKILL


async def test_a_broker_restart_is_survived(broker: Broker, tmp_path: Path) -> None:
    """After the broker comes back (with nothing retained), online and the state are back."""
    async with publishing(config_for(broker, tmp_path)) as device:
        async with watching(broker, [TOPICS.availability]) as before:
            await online(before)

        await broker.restart()
        device.status.set(DeviceStatus(State.THINKING, volume=80))

        async with watching(broker, [f"{PREFIX}/#"]) as after:
            await online(after)
            await after.wait_topic(TOPICS.state, state_is(state="thinking"))
            mark = after.mark()
            await mqtt_publish(broker, TOPICS.cmd("listen"), b"PRESS")  # commands work again
            await eventually(lambda: device.commands == [Listen()])
        assert not device.task.done()
        assert after.on(TOPICS.availability, since=mark) == []


async def test_a_frozen_broker_costs_the_daemon_nothing_and_only_the_newest_state_is_sent(
    broker: Broker, tmp_path: Path
) -> None:
    """While the broker hangs, set/put never wait; afterwards it gets the newest state only."""
    async with (
        publishing(config_for(broker, tmp_path), events_size=16) as device,
        watching(broker, [TOPICS.state, TOPICS.event]) as watcher,
    ):
        await watcher.wait_topic(TOPICS.state, state_is(state="idle"))
        await asyncio.sleep(20 * MS)  # let the acknowledgement of `idle` come back
        mark = watcher.mark()
        broker.pause()
        try:
            device.status.set(DeviceStatus(State.LISTENING, volume=1))
            device.events.put_nowait({"type": "transcript", "text": "1"})
            await asyncio.sleep(50 * MS)  # both are on their way to the frozen broker

            loop = asyncio.get_running_loop()
            worst = 0.0
            for i in range(2, 51):
                before = loop.time()
                device.status.set(DeviceStatus(State.LISTENING, volume=i))
                device.events.put_nowait({"type": "transcript", "text": str(i)})
                await asyncio.sleep(2 * MS)
                worst = max(worst, loop.time() - before - 2 * MS)
        finally:
            broker.resume()

        await watcher.wait_topic(TOPICS.state, state_is(volume=50), since=mark)
        await watcher.wait_topic(TOPICS.event, b'{"type": "transcript", "text": "50"}', since=mark)

    volumes = [json.loads(seen.payload)["volume"] for seen in watcher.on(TOPICS.state, mark)]
    texts = [json.loads(seen.payload)["text"] for seen in watcher.on(TOPICS.event, mark)]
    # The state sent just before the freeze may still await its acknowledgement when `1` is
    # set; then `1` is skipped too. Never anything between 1 and 50.
    assert volumes in ([1, 50], [50])
    assert texts == ["1", *map(str, range(35, 51))]
    assert device.events.overruns == 33
    assert worst < 50 * MS


async def test_an_unresponsive_broker_never_blocks_and_stopping_is_quick(tmp_path: Path) -> None:
    """A broker that accepts TCP but never answers: the loop stays free, cancel is prompt."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = Config(
        device=DeviceConfig(id=DEVICE_ID),
        state_dir=tmp_path,
        mqtt=MqttConfig(host="127.0.0.1", port=port, topic_prefix=PREFIX),
    )
    loop = asyncio.get_running_loop()
    async with server, publishing(config) as device:
        await eventually(lambda: held != [])
        worst = 0.0
        for i in range(50):
            before = loop.time()
            device.status.set(DeviceStatus(State.IDLE, volume=i))
            await asyncio.sleep(2 * MS)
            worst = max(worst, loop.time() - before - 2 * MS)
        started = loop.time()
        device.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await device.task
        took = loop.time() - started
        for writer in held:
            writer.close()

    assert worst < 50 * MS
    assert took < 500 * MS


async def test_a_refused_login_is_retried_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password is logged (once a streak) and retried with backoff; the publisher
    keeps running."""
    (tmp_path / "password").write_text("wrong\n")
    (tmp_path / "password").chmod(0o600)
    async with running_broker(tmp_path / "broker", user=("speaker", "right")) as broker:
        config = config_for(
            broker, tmp_path, username="speaker", password_file=tmp_path / "password"
        )
        with caplog.at_level(logging.DEBUG, logger="coze_edge.supervisor"):
            async with publishing(config) as device:
                await eventually(lambda: caplog.text.count("refused") >= 2)
                assert not device.task.done()
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert "Not authorized" in warnings[0].getMessage()

    assert "wrong" not in caplog.text


async def test_tls_with_a_client_certificate_and_a_password(tmp_path: Path) -> None:
    """Over verified TLS, with a client certificate and a password file, it all works."""
    tls = make_tls_files(tmp_path / "tls")
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "password").chmod(0o600)
    async with running_broker(tmp_path / "broker", tls=tls, user=("speaker", "s3cret")) as broker:
        config = config_for(
            broker,
            tmp_path,
            username="speaker",
            password_file=tmp_path / "password",
            tls=True,
            ca_file=tls.ca,
            cert_file=tls.client_cert,
            key_file=tls.client_key,
        )
        async with (
            publishing(config) as device,
            watching(broker, [f"{PREFIX}/#"]) as watcher,
        ):
            await online(watcher)
            await watcher.wait_topic(TOPICS.state, state_is(state="idle"))
            await mqtt_publish(broker, TOPICS.cmd("volume"), b"42")
            await eventually(lambda: device.commands == [SetVolume(42)])


async def test_tls_refuses_a_broker_it_cannot_verify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the right CA the broker's certificate is refused: verification is always on."""
    tls = make_tls_files(tmp_path / "tls")
    other = make_tls_files(tmp_path / "other")
    async with running_broker(tmp_path / "broker", tls=tls) as broker:
        config = config_for(
            broker,
            tmp_path,
            tls=True,
            ca_file=other.ca,
            cert_file=tls.client_cert,
            key_file=tls.client_key,
        )
        with caplog.at_level(logging.WARNING, logger="coze_edge.publisher"):
            async with publishing(config) as device:
                await eventually(lambda: "TLS verification failed" in caplog.text)
                assert not device.task.done()
