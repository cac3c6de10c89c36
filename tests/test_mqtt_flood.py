"""A flood of MQTT commands through a real mosquitto: the drops cost a log line per interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from coze_edge.config import Config, DeviceConfig, MqttConfig
from coze_edge.core.commands import AnyCommand
from coze_edge.core.status import DeviceStatus, State, Topics
from coze_edge.latest import EventQueue, Latest
from coze_edge.publisher import Publisher
from tests.support.mosquitto import Broker, watching
from tests.support.timing import MS

PREFIX = "coze-edge/42"
TOPICS = Topics(PREFIX)
COMMANDS = 20_000


async def flood(broker: Broker, topic: str, payload: bytes, count: int) -> float:
    """Publish ``payload`` to ``topic`` ``count`` times, as fast as mosquitto_pub can (one
    message per line of its input); how long that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    process = await asyncio.create_subprocess_exec(
        "mosquitto_pub",
        *broker.client_args(),
        *("-q", "0"),  # no acknowledgements: as fast as the broker forwards them
        "-t",
        topic,
        "-l",
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await process.communicate((payload + b"\n") * count)
    assert process.returncode == 0, err.decode(errors="replace")
    return loop.time() - started


async def settled(count: Callable[[], int]) -> None:
    """Return once ``count()`` stayed the same for 300 ms (what the broker delivers of a
    flood is up to it: mosquitto drops what overflows a client's queue)."""
    async with asyncio.timeout(10_000 * MS):
        last = -1
        while count() != last:
            last = count()
            await asyncio.sleep(300 * MS)


async def test_dropped_commands_are_a_line_per_interval_in_the_log(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Commands far faster than the daemon takes them: some are dropped, and the log says
    so once for the flood (the count of the rest follows an interval later), not once per
    dropped command."""
    config = Config(
        device=DeviceConfig(id="42"),
        state_dir=tmp_path,
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, topic_prefix=PREFIX),
    )
    commands: list[AnyCommand] = []
    publisher = Publisher(
        config,
        status=Latest(DeviceStatus(State.IDLE)),
        events=EventQueue(64),
        on_command=commands.append,
        login=Latest(None),
        sw_version="test",
    )
    with caplog.at_level(logging.WARNING, logger="coze_edge.publisher"):
        async with watching(broker, [TOPICS.availability]) as watcher:
            task = asyncio.create_task(publisher.run())
            try:
                await watcher.wait_topic(TOPICS.availability, b"online")
                seconds = await flood(broker, TOPICS.cmd("volume"), b"50", COMMANDS)
                await settled(lambda: len(commands) + publisher.dropped_messages)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    print(
        f"{COMMANDS} commands in {seconds:.1f} s: {len(commands)} taken, "
        f"{publisher.dropped_messages} dropped, "
        f"{len(drops)} log line(s) about it"
    )
    assert publisher.dropped_messages > 0  # else the flood tested nothing
    assert drops == ["! MQTT: commands come too fast; dropped one (1 in all)"]
