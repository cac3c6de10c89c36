"""
The MQTT publisher: the device's state, events and pending login out; commands in.

Independent of the audio path by construction: the conversation only calls
``Latest.set`` and ``EventQueue.put_nowait``, which never wait, and this service reads them
at the broker's pace. A slow broker therefore skips stale states (only the newest is sent
once the previous one is acknowledged) and drops the oldest events (counted); an
unreachable one costs nothing but a reconnect attempt now and then, with jittered backoff.

Per connection, in this order: the retained documents (state, login, last turn,
diagnostics, update), then the Home Assistant discovery documents, then availability
``online`` (the Last Will says ``offline``): an entity Home Assistant makes finds its
current value waiting, never the previous run's, and nothing shows as available before
that. Then each change as it comes. Home Assistant's birth message
(``<discovery_prefix>/status`` = ``online``) makes it announce itself again. On a clean
stop it publishes the state and ``offline``, then disconnects, within about 1.5 s.

Besides passing events on, it keeps two documents made of them: the last turn (transcript,
reply and the ``turn`` figures; retained, so Home Assistant's sensors survive its restarts)
and the last error (in the diagnostics, beside the broker reconnects it counts).

Two settings narrow what the broker's users may do and see: ``mqtt.remote_listen: false``
refuses ``cmd/listen`` and turning the wake word off (an ``error`` event says why),
``mqtt.publish_text: false`` keeps the ``transcript`` and ``reply`` events, what was said,
off the broker (and out of the last turn).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from coze_edge.adapters.mqtt import BrokerSettings, MqttConnection, Received, Will, connect
from coze_edge.config import Config
from coze_edge.core.backoff import backoff
from coze_edge.core.commands import (
    AnyCommand,
    CommandError,
    Listen,
    QueryStatus,
    SetWakeWord,
    parse_command,
)
from coze_edge.core.status import (
    AVAILABLE,
    NOT_AVAILABLE,
    TEXT_EVENTS,
    DeviceStatus,
    Diagnostics,
    LastTurn,
    LoginPrompt,
    Topics,
    UpdateInfo,
    discovery_messages,
    event_payload,
    iso_utc,
    login_payload,
    next_last_turn,
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
WAKE_OFF_REFUSED = (
    "turning the wake word off over MQTT is refused on this device (mqtt.remote_listen: false)"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


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
        on_command: Callable[[AnyCommand], None],
        login: Latest[LoginPrompt | None],
        sw_version: str,
        diagnostics: Latest[Diagnostics] | None = None,
        update: Latest[UpdateInfo] | None = None,
        delays: Callable[[], Iterator[float]] = default_delays,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """``diagnostics``: the daemon's (its own if None); ``update``: what the update check
        found, None = no update entity (the check is off)."""
        self._config = config
        self._status = status
        self._events = events
        self._on_command = on_command
        self._login = login
        self._sw_version = sw_version
        self._clock = clock
        self._diagnostics = diagnostics or Latest(Diagnostics(sw_version, clock()))
        self._update = update
        self._delays = delays
        self._env = env
        self._topics = Topics(config.mqtt.topic_prefix)
        self._discovery_prefix = config.mqtt.discovery_prefix
        self._inbox: asyncio.Queue[Received] = asyncio.Queue(INBOX_SIZE)
        self._rediscover = asyncio.Event()
        self._listen_refused = False
        self._last_turn: LastTurn | None = None
        self._connections = 0
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
            self._connections += 1
            if self._connections > 1:
                current = self._diagnostics.get_nowait()
                self._diagnostics.set(replace(current, mqtt_reconnects=self._connections - 1))
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
            tasks.create_task(self._handle_messages(), name="mqtt-commands")
            await self._subscribe(connection)
            await self._hello(connection)
            tasks.create_task(self._keep_state(connection), name="mqtt-state")
            tasks.create_task(self._keep_login(connection), name="mqtt-login")
            tasks.create_task(self._keep_diagnostics(connection), name="mqtt-diagnostics")
            if self._update is not None:
                tasks.create_task(self._keep_update(connection), name="mqtt-update")
            tasks.create_task(self._forward_events(connection), name="mqtt-events")
            tasks.create_task(self._announce_on_birth(connection), name="mqtt-rediscover")

    async def _subscribe(self, connection: MqttConnection) -> None:
        topics = [self._topics.cmd_wildcard]
        if self._discovery_prefix is not None:
            topics.append(f"{self._discovery_prefix}/status")  # Home Assistant's birth message
        refused = await connection.subscribe(topics)
        if refused:
            log.error("! MQTT: the broker refused the subscription to %s", ", ".join(refused))

    async def _hello(self, connection: MqttConnection) -> None:
        """The retained documents, then discovery, then ``online``, each step acknowledged
        before the next: Home Assistant shows no value of an earlier run as current."""
        documents: list[tuple[str, bytes]] = []
        if self._status.is_set():
            documents.append((self._topics.state, _state(self._status.take_nowait())))
        # With no login pending this is the empty retained message, which also clears a code
        # left on the broker by an earlier run.
        documents.append((self._topics.login, login_payload(self._login.take_nowait())))
        if self._last_turn is not None:
            documents.append((self._topics.last_turn, self._last_turn.to_json().encode()))
        elif not self._config.mqtt.publish_text:
            # An earlier run may have left what was said there; this one may not show it.
            documents.append((self._topics.last_turn, b""))
        diagnostics = self._diagnostics.take_nowait()
        documents.append((self._topics.diagnostics, diagnostics.to_json().encode()))
        if self._update is not None and self._update.is_set():
            documents.append((self._topics.update, self._update.take_nowait().to_json().encode()))
        async with asyncio.TaskGroup() as tasks:
            for topic, payload in documents:
                tasks.create_task(connection.publish(topic, payload, retain=True))
        await self._announce(connection)
        await connection.publish(self._topics.availability, AVAILABLE, retain=True)

    async def _keep_state(self, connection: MqttConnection) -> None:
        while True:
            # Whatever was set while the last publish waited for its acknowledgement is
            # skipped except the newest: a slow broker never sees stale states.
            status = await self._status.wait_changed()
            await connection.publish(self._topics.state, _state(status), retain=True)

    async def _keep_login(self, connection: MqttConnection) -> None:
        while True:
            prompt = await self._login.wait_changed()
            await connection.publish(self._topics.login, login_payload(prompt), retain=True)

    async def _keep_diagnostics(self, connection: MqttConnection) -> None:
        while True:
            diagnostics = await self._diagnostics.wait_changed()
            payload = diagnostics.to_json().encode()
            await connection.publish(self._topics.diagnostics, payload, retain=True)

    async def _keep_update(self, connection: MqttConnection) -> None:
        assert self._update is not None
        while True:
            update = await self._update.wait_changed()
            await connection.publish(self._topics.update, update.to_json().encode(), retain=True)

    async def _forward_events(self, connection: MqttConnection) -> None:
        publish_text = self._config.mqtt.publish_text
        while True:
            event = await self._events.get()
            now = self._clock()
            if event.get("type") in TEXT_EVENTS and not publish_text:
                continue  # what was said stays off the broker
            # A Coze error may quote what it was sent, the token included: masked, as in
            # the log, before it leaves the device.
            fields = redact_fields(dict(event))
            kind = str(fields.pop("type", "event"))
            await connection.publish(self._topics.event, event_payload(kind, **fields))
            if kind == "error":
                self._note_error(fields, now)
            last_turn = next_last_turn(self._last_turn, event, now, with_text=publish_text)
            if last_turn is not None:
                self._last_turn = last_turn
                payload = last_turn.to_json().encode()
                await connection.publish(self._topics.last_turn, payload, retain=True)

    def _note_error(self, fields: dict[str, Any], now: datetime) -> None:
        current = self._diagnostics.get_nowait()
        self._diagnostics.set(replace(current, last_error={**fields, "at": iso_utc(now)}))

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
            updates=self._update is not None,
            configuration_url=mqtt.configuration_url,
            suggested_area=mqtt.suggested_area,
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
        if command == SetWakeWord(None) and not self._config.mqtt.remote_listen:
            # Without a wake word any speech is a turn: as good as a listen that never ends.
            log.warning("! MQTT command refused: %s", WAKE_OFF_REFUSED)
            self._events.put_nowait(
                {"type": "error", "message": WAKE_OFF_REFUSED, "command": "wake_word"}
            )
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
