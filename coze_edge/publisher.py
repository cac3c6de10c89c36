"""
The MQTT publisher: the device's state, events and pending login out; commands in.

Independent of the audio path by construction: the conversation only calls
``Latest.set`` and ``EventQueue.put_nowait``, which never wait, and this service reads them
at the broker's pace. A slow broker therefore skips stale states (only the newest is sent
once the previous one is acknowledged) and drops the oldest events (counted); an
unreachable one costs nothing but a reconnect attempt now and then, with jittered backoff.

Per connection: availability ``online`` (the Last Will says ``offline``), the Home Assistant
discovery documents, the state, the login; then each change as it comes. Home Assistant's
birth message (``<discovery_prefix>/status`` = ``online``) makes it announce itself again.
On a clean stop it publishes the state and ``offline``, then disconnects, within about 1.5 s.

Two settings narrow what the broker's users may do and see: ``mqtt.remote_listen: false``
refuses ``cmd/listen`` (an ``error`` event says why), ``mqtt.publish_text: false`` keeps the
``transcript`` and ``reply`` events, what was said, off the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

from coze_edge.adapters.mqtt import BrokerSettings, MqttConnection, Received, Will, connect
from coze_edge.config import Config
from coze_edge.core.backoff import backoff
from coze_edge.core.commands import Command, CommandError, Listen, QueryStatus, parse_command
from coze_edge.core.status import (
    AVAILABLE,
    NOT_AVAILABLE,
    TEXT_EVENTS,
    DeviceStatus,
    LoginPrompt,
    Topics,
    discovery_messages,
    event_payload,
    login_payload,
)
from coze_edge.errors import BrokerUnavailable
from coze_edge.flood_log import FloodLog
from coze_edge.latest import EventQueue, Latest
from coze_edge.logs import redact_fields
from coze_edge.supervisor import Service, keep_running

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

GOODBYE_TIMEOUT_S = 1.0
"""On a clean stop: how long the final state and ``offline`` may take to be acknowledged."""

DISCONNECT_TIMEOUT_S = 0.5
"""On a clean stop: how long the DISCONNECT may take before the socket is dropped."""

INBOX_SIZE = 64
"""Received messages waiting to be handled; a flood beyond this drops the oldest."""

LISTEN_REFUSED = "listen over MQTT is off on this device (mqtt.remote_listen: false)"


def default_delays() -> Iterator[float]:
    """Seconds to wait before each reconnect attempt."""
    return backoff(first=1.0, cap=60.0)


class Publisher:
    """Keeps the broker told about the device, and passes commands from it to ``on_command``."""

    def __init__(
        self,
        config: Config,
        *,
        status: Latest[DeviceStatus],
        events: EventQueue,
        on_command: Callable[[Command], None],
        login: Latest[LoginPrompt | None],
        sw_version: str,
        delays: Callable[[], Iterator[float]] = default_delays,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._status = status
        self._events = events
        self._on_command = on_command
        self._login = login
        self._sw_version = sw_version
        self._delays = delays
        self._env = env
        self._topics = Topics(config.mqtt.topic_prefix)
        self._discovery_prefix = config.mqtt.discovery_prefix
        self._inbox: asyncio.Queue[Received] = asyncio.Queue(INBOX_SIZE)
        self._rediscover = asyncio.Event()
        self._listen_refused = False
        self.dropped_messages = 0
        """Received messages dropped because they came faster than they could be handled."""
        self._drops = FloodLog(log)

    @property
    def topics(self) -> Topics:
        return self._topics

    def service(self) -> Service:
        """The publisher under the supervisor's policy: one broker session per run."""
        return Service("mqtt", self._session, delays=self._delays)

    async def run(self) -> None:
        """Connect, publish, reconnect after every loss (jittered backoff); until cancelled."""
        await keep_running(self.service())

    # ------------------------------------------------------------------ one connection

    async def _session(self) -> None:
        settings = BrokerSettings.from_config(self._config, env=self._env)
        will = Will(self._topics.availability, NOT_AVAILABLE)
        async with connect(settings, will=will, on_message=self._receive) as connection:
            log.info("MQTT: connected to %s", connection.where)
            try:
                await self._serve(connection)
            except asyncio.CancelledError:
                await self._goodbye(connection)
                raise

    async def _serve(self, connection: MqttConnection) -> None:
        # A lost broker ends the group with BrokerUnavailable inside; the supervisor's
        # policy finds it there.
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(connection.wait_closed(), name="mqtt-link")
            tasks.create_task(self._subscribe(connection), name="mqtt-subscribe")
            tasks.create_task(self._keep_state(connection), name="mqtt-state")
            tasks.create_task(self._keep_login(connection), name="mqtt-login")
            tasks.create_task(self._forward_events(connection), name="mqtt-events")
            tasks.create_task(self._handle_messages(), name="mqtt-commands")
            tasks.create_task(self._announce_on_birth(connection), name="mqtt-rediscover")

    async def _subscribe(self, connection: MqttConnection) -> None:
        topics = [self._topics.cmd_wildcard]
        if self._discovery_prefix is not None:
            topics.append(f"{self._discovery_prefix}/status")  # Home Assistant's birth message
        refused = await connection.subscribe(topics)
        if refused:
            log.error("! MQTT: the broker refused the subscription to %s", ", ".join(refused))

    async def _keep_state(self, connection: MqttConnection) -> None:
        await connection.publish(self._topics.availability, AVAILABLE, retain=True)
        await self._announce(connection)
        status = self._status.get_nowait() if self._status.is_set() else None
        while True:
            if status is not None:
                await connection.publish(self._topics.state, _state(status), retain=True)
            # Whatever was set while that publish waited for its acknowledgement is skipped
            # except the newest: a slow broker never sees stale states.
            status = await self._status.wait_changed()

    async def _keep_login(self, connection: MqttConnection) -> None:
        # With no login pending this publishes the empty retained message, which also clears
        # a code left on the broker by an earlier run.
        prompt = self._login.get_nowait() if self._login.is_set() else None
        while True:
            await connection.publish(self._topics.login, login_payload(prompt), retain=True)
            prompt = await self._login.wait_changed()

    async def _forward_events(self, connection: MqttConnection) -> None:
        while True:
            event = await self._events.get()
            if event.get("type") in TEXT_EVENTS and not self._config.mqtt.publish_text:
                continue  # what was said stays off the broker
            # A Coze error may quote what it was sent, the token included: masked, as in
            # the log, before it leaves the device.
            fields = redact_fields(dict(event))
            kind = str(fields.pop("type", "event"))
            await connection.publish(self._topics.event, event_payload(kind, **fields))

    async def _announce(self, connection: MqttConnection) -> None:
        if self._discovery_prefix is None:
            return
        device, mqtt = self._config.device, self._config.mqtt
        messages = discovery_messages(
            device.id,
            device.name,
            self._topics,
            self._discovery_prefix,
            self._sw_version,
            remote_listen=mqtt.remote_listen,
            publish_text=mqtt.publish_text,
        )
        async with asyncio.TaskGroup() as tasks:
            for topic, payload in messages:
                tasks.create_task(connection.publish(topic, payload, retain=True))
        withdrawn = sum(1 for _, payload in messages if not payload)
        log.debug(
            "= announced %d entities to Home Assistant, withdrew %d",
            len(messages) - withdrawn,
            withdrawn,
        )

    async def _announce_on_birth(self, connection: MqttConnection) -> None:
        self._rediscover.clear()
        while True:
            await self._rediscover.wait()
            self._rediscover.clear()
            log.info("MQTT: Home Assistant came online; announcing the device again")
            await self._announce(connection)
            await connection.publish(self._topics.availability, AVAILABLE, retain=True)
            self._publish_state_again()

    def _publish_state_again(self) -> None:
        # Setting the same value again wakes _keep_state, the one writer of the state
        # topic, so an older state can never overtake a newer one.
        if self._status.is_set():
            self._status.set(self._status.get_nowait())

    async def _goodbye(self, connection: MqttConnection) -> None:
        try:
            async with asyncio.timeout(GOODBYE_TIMEOUT_S):
                if self._status.is_set():
                    state = _state(self._status.get_nowait())
                    await connection.publish(self._topics.state, state, retain=True)
                await connection.publish(self._topics.availability, NOT_AVAILABLE, retain=True)
        except (TimeoutError, BrokerUnavailable) as exc:
            log.warning("! MQTT: could not say offline: %s", exc or "timed out")
        await connection.close(DISCONNECT_TIMEOUT_S)

    # ------------------------------------------------------------------ messages in

    def _receive(self, message: Received) -> None:
        """From the adapter, on the event loop: queue it, never wait."""
        if self._inbox.full():
            self._inbox.get_nowait()
            self.dropped_messages += 1
            self._drops.warning(
                "dropped MQTT commands",
                "! MQTT: commands come too fast; dropped one (%d in all)",
                self.dropped_messages,
            )
        self._inbox.put_nowait(message)

    async def _handle_messages(self) -> None:
        while True:
            message = await self._inbox.get()
            if self._discovery_prefix is not None and message.topic == (
                f"{self._discovery_prefix}/status"
            ):
                if message.payload.strip() == AVAILABLE:
                    self._rediscover.set()
                continue
            name = self._topics.command_name(message.topic)
            if name is None:
                continue
            if message.retain:
                # Somebody published a command with the retain flag: obeying it would repeat
                # it after every reconnect.
                log.warning("! MQTT: ignoring retained command %s", name)
                continue
            self._handle_command(name, message.payload)

    def _handle_command(self, name: str, payload: bytes) -> None:
        try:
            command = parse_command(name, payload)
        except CommandError as exc:
            log.warning("! MQTT command refused: %s", exc)
            self._events.put_nowait({"type": "error", "message": str(exc), "command": name})
            return
        if isinstance(command, Listen) and not self._config.mqtt.remote_listen:
            self._refuse_listen()
            return
        log.info("MQTT command: %s", name)
        if isinstance(command, QueryStatus):
            self._publish_state_again()
        else:
            self._on_command(command)

    def _refuse_listen(self) -> None:
        # Each refusal answers its sender; the log says it once, so a flood of them is no
        # flood in the journal.
        if not self._listen_refused:
            self._listen_refused = True
            log.warning("! MQTT: %s; ignoring cmd/listen (said once)", LISTEN_REFUSED)
        self._events.put_nowait({"type": "error", "message": LISTEN_REFUSED, "command": "listen"})


def _state(status: DeviceStatus) -> bytes:
    return status.to_json().encode()
