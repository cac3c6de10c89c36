"""The MQTT adapter against a real mosquitto: what it hands on of the messages it receives."""

from __future__ import annotations

import asyncio

import pytest

from coze_edge.adapters.mqtt import MAX_PAYLOAD_BYTES, BrokerSettings, Received, Will, connect
from coze_edge.core.commands import CommandError, parse_command
from tests.support.mosquitto import Broker, mqtt_publish
from tests.support.timing import MS


async def test_a_huge_payload_is_cut_before_it_is_handed_on(broker: Broker) -> None:
    """A 1 MiB message arrives cut to MAX_PAYLOAD_BYTES + 1 bytes, still too long for the
    command it was sent as; the next message arrives whole."""
    huge = bytes(range(256)) * 4096
    received: list[Received] = []
    settings = BrokerSettings(host="127.0.0.1", port=broker.port, client_id="adapter-test")
    will = Will("adapter-test/availability", b"offline")
    async with connect(settings, will=will, on_message=received.append) as connection:
        assert await connection.subscribe(["adapter-test/cmd/+"]) == []
        await mqtt_publish(broker, "adapter-test/cmd/say", huge)
        await mqtt_publish(broker, "adapter-test/cmd/listen", b"PRESS")
        async with asyncio.timeout(3000 * MS):
            while len(received) < 2:  # noqa: ASYNC110 - the adapter appends from its callback
                await asyncio.sleep(5 * MS)

    cut, whole = received
    assert cut == Received("adapter-test/cmd/say", huge[: MAX_PAYLOAD_BYTES + 1], retain=False)
    assert whole == Received("adapter-test/cmd/listen", b"PRESS", retain=False)
    with pytest.raises(CommandError, match="over 4000 characters"):
        parse_command("say", cut.payload)
