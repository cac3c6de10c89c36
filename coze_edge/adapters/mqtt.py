"""
One connection to the MQTT broker, on paho-mqtt 2 (``CallbackAPIVersion.VERSION2``).

Threads: paho's own network thread (``loop_start``) does all socket work: reads, writes,
keep-alive pings and the TLS layer (paho knows when TLS holds buffered bytes that ``select``
can't see). The blocking part of connecting (DNS, TCP, TLS handshake, bounded by
``connect_timeout_s``) runs in a worker thread. So no broker, however slow or unreachable,
ever blocks the event loop that carries the audio. Crossings:

* paho thread -> event loop: every callback only copies its arguments and hands them over
  with ``loop.call_soon_threadsafe``; futures and the message handler run on the loop.
* event loop -> paho: ``publish`` / ``subscribe`` / ``disconnect`` only append a packet to
  paho's queue under its mutex and wake its thread through a socket pair; they never touch
  the network from the loop.

Each connection is a fresh client with ``reconnect_on_failure=False``: when the link drops,
paho's thread ends and :meth:`MqttConnection.wait_closed` raises; reconnecting (with jittered
backoff) is the caller's job. Library errors stop here: callers see ``BrokerUnavailable``
(retry later) or ``ConfigError`` (unusable TLS files or password file).

Teardown touches two private parts of paho 2.2, because it has no public way to do it:
``Client._thread`` (read once after ``loop_start`` so the ended thread can be joined with a
timeout; ``loop_stop`` joins without one and races with the thread clearing that attribute)
and ``Client._reset_sockets()`` (closes the socket and the wake-up socket pair, which paho
otherwise leaves to its finaliser).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from coze_edge.config import Config, read_secret
from coze_edge.errors import BrokerUnavailable, ConfigError
from coze_edge.logs import register_secret

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "BrokerSettings",
    "MqttConnection",
    "Received",
    "Will",
    "connect",
    "tls_context",
]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""Bound on TCP connect, TLS handshake and the broker's CONNACK, each."""

JOIN_TIMEOUT_S = 1.0
"""How long paho's thread may take to end once its link is down (its select wakes each 1 s)."""

MAX_PAYLOAD_BYTES = 64 * 1024
"""Longest received payload handed on whole. A longer one is cut to one byte more than this:
still too long for whatever checks it (the longest command, ``say``, takes 16,000 bytes), but
its memory is not held while it waits to be handled."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where the broker is and how to log in; build it with :meth:`from_config`."""

    host: str
    port: int = 1883
    client_id: str = ""
    keepalive_s: int = 60
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S

    @classmethod
    def from_config(cls, config: Config, *, env: Mapping[str, str] | None = None) -> BrokerSettings:
        """The settings ``config.mqtt`` names; ConfigError if a file it names is unusable."""
        mqtt = config.mqtt
        if mqtt.host is None:
            raise ConfigError([("mqtt.host", "MQTT is off (no host)")])
        password = read_secret(mqtt.password_file, "mqtt_password", env=env)
        if password is not None:
            register_secret(password)  # masked in every log line and output from now on
        context = tls_context(mqtt.ca_file, mqtt.cert_file, mqtt.key_file) if mqtt.tls else None
        return cls(
            host=mqtt.host,
            port=mqtt.port,
            client_id=mqtt.client_id or f"coze-edge-{config.device.id}",
            keepalive_s=mqtt.keepalive_s,
            username=mqtt.username,
            password=password,
            tls=context,
        )


def tls_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None
) -> ssl.SSLContext:
    """
    A client TLS context that always verifies the broker (certificate and host name): against
    ``ca_file`` if given, else the system's CAs; with a client certificate if given.
    """
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([("mqtt.ca_file", f"cannot use {ca_file}: {exc}")]) from exc
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([("mqtt.cert_file", f"cannot use {cert_file}: {exc}")]) from exc
    context.sslsocket_class = _ClosingSSLSocket
    return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails (paho would leave it to the garbage collector)."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will: what the broker publishes for us if we vanish without saying goodbye."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1


@dataclass(frozen=True, slots=True)
class Received:
    """A message from a subscription."""

    topic: str
    payload: bytes
    retain: bool
    """True when it came from the broker's store of retained messages, not live."""


@contextlib.asynccontextmanager
async def connect(
    settings: BrokerSettings, *, will: Will, on_message: Callable[[Received], None]
) -> AsyncIterator[MqttConnection]:
    """
    A connection, once the broker accepted it; disconnected cleanly (bounded) on the way out.
    ``on_message`` runs on the event loop and must not block.
    """
    connection = MqttConnection(settings, will=will, on_message=on_message)
    await connection.open()
    try:
        yield connection
    finally:
        await connection.close()


class MqttConnection:
    """One session with the broker. Use :func:`connect`."""

    def __init__(
        self, settings: BrokerSettings, *, will: Will, on_message: Callable[[Received], None]
    ) -> None:
        self._settings = settings
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[str] = self._loop.create_future()
        self._acks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._start_lock = threading.Lock()
        self._abandoned = False
        self._connect_returned = False
        self._network_thread: threading.Thread | None = None

        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = settings.connect_timeout_s
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls is not None:
            client.tls_set_context(settings.tls)
        client.on_connect = self._paho_connect
        client.on_disconnect = self._paho_disconnect
        client.on_publish = self._paho_publish
        client.on_subscribe = self._paho_subscribe
        client.on_message = self._paho_message
        self._client = client

    @property
    def where(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    # ------------------------------------------------------------------ from the event loop

    async def open(self) -> None:
        """Connect and wait for the broker's CONNACK; BrokerUnavailable if that fails."""
        log.debug("> connecting to %s as %s", self.where, self._settings.client_id)
        try:
            try:
                await asyncio.to_thread(self._connect_blocking)
            except OSError as exc:  # refused, unreachable, DNS, TLS handshake, timeout
                raise BrokerUnavailable(
                    f"cannot connect to {self.where}: {_describe(exc)}"
                ) from exc
            try:
                async with asyncio.timeout(self._settings.connect_timeout_s):
                    await self._connack
            except TimeoutError:
                raise BrokerUnavailable(f"{self.where} did not answer CONNECT") from None
        except BaseException:
            # Also on cancellation: a connection finishing later in the worker thread is
            # dropped rather than left running.
            self._abort()
            await self._release()
            raise
        log.debug("< connected to %s", self.where)

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish; with qos 1, wait until the broker has it (PUBACK)."""
        self._check_open()
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"publish to {self.where} failed: {_error(info.rc)}")
        log.debug("> %s (%d bytes%s)", topic, len(payload), ", retained" if retain else "")
        if qos > 0:
            await self._wait_ack(info.mid)

    async def subscribe(self, topics: list[str], *, qos: int = 1) -> list[str]:
        """Subscribe and wait for the SUBACK; the topics the broker refused."""
        self._check_open()
        rc, mid = self._client.subscribe([(topic, qos) for topic in topics])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise BrokerUnavailable(f"subscribe at {self.where} failed: {_error(rc)}")
        granted = await self._wait_ack(mid)
        return [topic for topic, code in zip(topics, granted, strict=False) if code.is_failure]

    async def wait_closed(self) -> None:
        """Wait until the connection is lost; then raise BrokerUnavailable saying why."""
        reason = await asyncio.shield(self._lost)
        raise BrokerUnavailable(f"connection to {self.where} lost: {reason}")

    async def close(self, grace_s: float = 1.0) -> None:
        """Say DISCONNECT (so no Last Will) and wait up to ``grace_s`` for it to go out."""
        try:
            if self._lost.done():
                return
            self._client.disconnect()
            try:
                async with asyncio.timeout(grace_s):
                    await asyncio.shield(self._lost)
            except TimeoutError:
                log.warning(
                    "! %s did not take the DISCONNECT in %.1f s; dropping", self.where, grace_s
                )
                self._abort()
        finally:
            await self._release()

    def _check_open(self) -> None:
        if self._lost.done():
            raise BrokerUnavailable(f"connection to {self.where} lost: {self._lost.result()}")

    async def _wait_ack(self, mid: int) -> list[ReasonCode]:
        # Registered before the loop runs the hand-off of paho's acknowledgement, which is
        # queued behind this code: no acknowledgement can be missed.
        future: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._acks[mid] = future
        try:
            return await future
        finally:
            del self._acks[mid]

    async def _release(self) -> None:
        """Once the link is down: wait for paho's thread to end, then close the client's sockets."""
        client = self._client
        client.on_connect = client.on_disconnect = None
        client.on_publish = client.on_subscribe = client.on_message = None
        with self._start_lock:
            self._abandoned = True
            connect_returned, thread = self._connect_returned, self._network_thread
        if not connect_returned:
            return  # the worker thread is still connecting; it sees _abandoned and cleans up
        if thread is not None:
            # The link is down (or shut down by _abort), so the thread is on its way out.
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("! paho's network thread for %s did not end", self.where)
                return
        # Nothing uses the client any more: close its socket and the socket pair that woke its
        # thread now, rather than leave them to finalisers (which, in a garbage-collected
        # cycle, may run on the sockets first and find them open).
        client._reset_sockets()

    def _abort(self) -> None:
        # Shut the socket down under paho's thread: its next read sees the end, it reports
        # the loss and ends. No DISCONNECT was sent, so the broker publishes the Last Will.
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    # ------------------------------------------------------------------ in a worker thread

    def _connect_blocking(self) -> None:
        client = self._client
        try:
            client.connect(self._settings.host, self._settings.port, self._settings.keepalive_s)
        except BaseException:
            with self._start_lock:
                self._connect_returned = True
            raise
        with self._start_lock:
            self._connect_returned = True
            if self._abandoned:  # open() gave up meanwhile and left the cleanup to us
                client._reset_sockets()  # dropped without DISCONNECT: the Last Will fires
                return
            client.loop_start()
            self._network_thread = client._thread  # to join it once the link is down

    # ------------------------------------------------------------------ in paho's thread

    def _soon(self, callback: Callable[..., None], *args: Any) -> None:
        # RuntimeError: the event loop is closed, so nobody waits for this any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _paho_connect(
        self,
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._soon(self._connected, reason.is_failure, str(reason))

    def _paho_disconnect(
        self,
        client: Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._soon(self._disconnected, str(reason))

    def _paho_publish(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self._soon(self._acked, mid, [])

    def _paho_subscribe(
        self,
        client: Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._soon(self._acked, mid, list(reasons))

    def _paho_message(self, client: Client, userdata: Any, message: MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            return  # not a topic we subscribed to
        payload = bytes(message.payload[: MAX_PAYLOAD_BYTES + 1])
        self._soon(self._on_message, Received(topic, payload, bool(message.retain)))

    # ------------------------------------------------------------------ back on the loop

    def _connected(self, failed: bool, reason: str) -> None:
        if self._connack.done():
            return
        if failed:
            self._connack.set_exception(BrokerUnavailable(f"{self.where} refused: {reason}"))
        else:
            self._connack.set_result(None)

    def _disconnected(self, reason: str) -> None:
        log.debug("< disconnected from %s: %s", self.where, reason)
        if not self._connack.done():
            self._connack.set_exception(BrokerUnavailable(f"{self.where} closed: {reason}"))
        if not self._lost.done():
            self._lost.set_result(reason)
        for future in self._acks.values():
            if not future.done():
                future.set_exception(
                    BrokerUnavailable(f"connection to {self.where} lost: {reason}")
                )

    def _acked(self, mid: int, reasons: list[ReasonCode]) -> None:
        future = self._acks.get(mid)
        if future is not None and not future.done():
            future.set_result(reasons)


def _error(rc: MQTTErrorCode) -> str:
    return rc.name.removeprefix("MQTT_ERR_").lower().replace("_", " ")


def _describe(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS verification failed: {exc.verify_message}"
    return exc.strerror or str(exc) or type(exc).__name__
