"""
The conversation driver: owns the Session, feeds it microphone audio, Coze events,
commands and deadlines, and carries out the effects it returns.

One task (``_drive``) calls into the session; the microphone pump, the Coze reader and the
command sources only post typed items to its inbox. The WebSocket session stays open
while the daemon runs and is re-established after a drop: at once, then with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, assert_never

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.coze_ws import CozeSocket, SocketSettings
from coze_edge.core.backoff import backoff
from coze_edge.core.commands import (
    Cancel,
    Command,
    Listen,
    Mute,
    NewConversation,
    QueryStatus,
    Say,
    SetVolume,
    Unmute,
    split_for_speech,
)
from coze_edge.core.earcons import earcon
from coze_edge.core.events import AudioAppend, AudioComplete, ServerEvent
from coze_edge.core.session import (
    Announce,
    Effect,
    Emit,
    FlushPlayback,
    Play,
    PlayEarcon,
    Reconnect,
    RememberConversation,
    Send,
    Session,
    TokenRejected,
    WatchDrain,
)
from coze_edge.core.status import DeviceStatus, State
from coze_edge.credentials import TokenSource
from coze_edge.errors import AuthenticationError, CozeAPIError, CozeUnavailable

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 60.0
"""A connection that lasted this long resets the reconnect backoff."""


@dataclass(frozen=True, slots=True)
class Captured:
    pcm: bytes = field(repr=False)
    at: float = 0.0
    """When the microphone captured it (the loop's clock)."""


@dataclass(frozen=True, slots=True)
class Received:
    event: ServerEvent
    at: float = 0.0
    """When it was read from the socket (the loop's clock)."""


@dataclass(frozen=True, slots=True)
class Connected:
    socket: CozeSocket


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class Drained:
    pass


@dataclass(frozen=True, slots=True)
class Commanded:
    command: Command
    done: asyncio.Future[None] | None = None
    """Resolved once the command's effects were carried out (ctl answers after that)."""


Input = Captured | Received | Connected | Disconnected | Drained | Commanded


def reconnect_delays() -> Iterator[float]:
    """0 s (retry at once after a drop), then 1, 2, 4 ... 60 s, each with jitter."""
    return backoff(first=1.0, cap=60.0, first_immediate=True)


LATENCIES: Final = (
    "capture_to_append",
    "capture_to_complete",
    "capture_to_flush",
    "delta_to_device",
)
"""The daemon's own delays, in seconds, each from a block or event to what it caused:
a captured block to its ``append`` (or the ``complete`` or the playback flush it caused)
on its way out, and a reply's first delta to its first sample handed to the device."""


class ConversationMetrics:
    """Counters a benchmark or ``status`` reads; never reset while running."""

    def __init__(self) -> None:
        self.frames_captured = 0
        self.last_frame_at: float | None = None
        self.connections = 0
        self.latency: dict[str, deque[float]] = {name: deque(maxlen=2000) for name in LATENCIES}


class Conversation:
    """Runs the voice pipeline until cancelled."""

    def __init__(
        self,
        session: Session,
        *,
        socket_settings: SocketSettings,
        tokens: TokenSource,
        microphone: Microphone,
        speaker: Speaker,
        on_status: Callable[[DeviceStatus], None],
        on_event: Callable[[dict[str, Any]], None],
        remember_conversation: Callable[[str | None], None] = lambda _: None,
        volume: int = 100,
        earcons: bool = True,
        inbox_size: int = 256,
    ) -> None:
        self._session = session
        self._socket_settings = socket_settings
        self._tokens = tokens
        self._microphone = microphone
        self._speaker = speaker
        self._on_status = on_status
        self._on_event = on_event
        self._remember_conversation = remember_conversation
        self._volume = volume
        self._earcons = earcons
        self._inbox: asyncio.Queue[Input] = asyncio.Queue(inbox_size)
        self._socket: CozeSocket | None = None
        self._token: str | None = None
        self._first_idle = asyncio.Event()
        self._reply_received_at: float | None = None  # a reply's first delta, until it plays
        self._drain_watched = False
        self._refreshing = False
        self._tasks: asyncio.TaskGroup | None = None
        self.metrics = ConversationMetrics()
        self.first_attempt = asyncio.Event()
        """Set once the first connection attempt finished (READY=1 waits for it)."""

    # ------------------------------------------------------------------ outside

    def submit(self, command: Command) -> asyncio.Future[None]:
        """Post a command (MQTT, ctl socket); never blocks, drops when the inbox is full.
        The future resolves once the command was carried out."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._inbox.put_nowait(Commanded(command, done))
        except asyncio.QueueFull:
            log.warning("! command %s dropped: the daemon is overloaded", type(command).__name__)
            done.set_result(None)
        return done

    def status(self) -> DeviceStatus:
        state = self._session.state
        return DeviceStatus(
            state=state,
            muted=self._session.muted,
            volume=self._volume,
            coze_connected=state is not State.CONNECTING,
        )

    @property
    def devices(self) -> tuple[Microphone, Speaker]:
        return self._microphone, self._speaker

    def audio_healthy(self, *, within_s: float = 5.0) -> bool:
        """Microphone frames arrived recently (the watchdog's question)."""
        last = self.metrics.last_frame_at
        if last is None:
            return not self._first_idle.is_set()  # not listening yet: nothing to miss
        return asyncio.get_running_loop().time() - last < within_s

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        self._speaker.set_volume(self._volume)
        self._on_status(self.status())
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            tasks.create_task(self._keep_connected(), name="coze-connection")
            tasks.create_task(self._pump_microphone(), name="microphone")
            tasks.create_task(self._drive(), name="conversation")

    async def _pump_microphone(self) -> None:
        await self._first_idle.wait()
        loop = asyncio.get_running_loop()
        async for block in self._microphone.frames():
            now = loop.time()
            self.metrics.frames_captured += 1
            self.metrics.last_frame_at = now
            await self._inbox.put(Captured(block, self._microphone.captured_at or now))

    async def _keep_connected(self) -> None:
        loop = asyncio.get_running_loop()
        delays = reconnect_delays()
        while True:
            started = loop.time()
            reason = await self._connect_once()
            self.first_attempt.set()
            await self._inbox.put(Disconnected(reason))
            if loop.time() - started > HEALTHY_AFTER_S:
                delays = reconnect_delays()
            delay = next(delays)
            if delay:
                log.info("reconnecting to Coze in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> str:
        """Open one session and read it until it ends; returns why it ended."""
        loop = asyncio.get_running_loop()
        token = await self._tokens.token()
        self._token = token
        try:
            async with await CozeSocket.open(self._socket_settings, token) as sock:
                self.metrics.connections += 1
                await self._inbox.put(Connected(sock))
                self.first_attempt.set()
                async for event in sock.events():
                    await self._inbox.put(Received(event, loop.time()))
        except AuthenticationError as exc:
            log.warning("! Coze refused the token (%s)", exc.describe())
            await self._tokens.rejected(token)
            return "token refused"
        except CozeAPIError as exc:
            log.error("! Coze refused the session: %s", exc.describe())
            return str(exc)
        except CozeUnavailable as exc:
            log.warning("! Coze connection: %s", exc)
            return str(exc)
        return "closed"  # pragma: no cover - events() ends only by raising

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._session.next_deadline()
            item: Input | None = None
            try:
                async with asyncio.timeout_at(deadline):
                    item = await self._inbox.get()
            except TimeoutError:
                effects = self._session.handle_timer(loop.time())
            else:
                effects = self._feed(item, loop.time())
            # Only a reply's first delta needs it (_measure); not worth a lock per mic block.
            was_playing = isinstance(item, Received) and self._speaker.playing
            await self._carry_out(effects)
            if effects or self._reply_received_at is not None:
                self._measure(item, effects, was_playing, loop.time())
            if isinstance(item, Commanded) and item.done is not None and not item.done.done():
                item.done.set_result(None)

    def _measure(
        self, item: Input | None, effects: list[Effect], was_playing: bool, now: float
    ) -> None:
        """Latency samples for ``metrics.latency`` (a few comparisons per input)."""
        latency = self.metrics.latency
        kinds = {type(e.event) if isinstance(e, Send) else type(e) for e in effects}
        if isinstance(item, Captured):
            for name, kind in (
                ("capture_to_append", AudioAppend),
                ("capture_to_complete", AudioComplete),
                ("capture_to_flush", FlushPlayback),
            ):
                if kind in kinds:
                    latency[name].append(now - item.at)
        if FlushPlayback in kinds:
            self._reply_received_at = None
        elif (
            isinstance(item, Received)
            and not was_playing
            and self._reply_received_at is None
            and Play in kinds
        ):
            self._reply_received_at = item.at
        started = self._speaker.burst_started_at
        received = self._reply_received_at
        if received is not None and started is not None and started >= received:
            latency["delta_to_device"].append(started - received)
            self._reply_received_at = None

    def _feed(self, item: Input, now: float) -> list[Effect]:
        session = self._session
        match item:
            case Captured(pcm):
                return session.audio_captured(pcm, now)
            case Received(event):
                return session.received(event, now)
            case Connected(sock):
                self._socket = sock
                return session.connected(now)
            case Disconnected(reason):
                self._socket = None
                log.debug("= disconnected: %s", reason)
                return session.disconnected(now)
            case Drained():
                self._drain_watched = False
                return session.playback_drained(now)
            case Commanded(command, _):
                return self._command(command, now)
            case _:
                assert_never(item)

    def _command(self, command: Command, now: float) -> list[Effect]:
        session = self._session
        log.info("command: %s", type(command).__name__)
        match command:
            case Listen():
                return session.listen(now)
            case Cancel():
                return session.cancel(now)
            case Mute():
                return session.set_muted(True, now)
            case Unmute():
                return session.set_muted(False, now)
            case SetVolume(percent):
                self._volume = percent
                self._speaker.set_volume(percent)
                return [Announce(session.state)]
            case Say(text):
                return session.say(split_for_speech(text), now)
            case NewConversation():
                return session.new_conversation(now)
            case QueryStatus():
                return [Announce(session.state)]
            case _:
                assert_never(command)

    async def _carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Send(event):
                    await self._send(event)
                case Play(pcm):
                    self._speaker.play_nowait(pcm)
                case FlushPlayback():
                    self._speaker.flush()
                case PlayEarcon(kind):
                    if self._earcons:
                        self._speaker.play_nowait(earcon(kind, self._speaker.rate))
                case Announce(state):
                    if state is State.IDLE:
                        self._first_idle.set()
                    self._on_status(self.status())
                case Emit(kind, fields):
                    self._on_event({"type": kind, **fields})
                case WatchDrain():
                    self._watch_drain()
                case Reconnect(reason):
                    await self._reconnect(reason)
                case TokenRejected():
                    self._refresh_token()
                case RememberConversation(conversation_id):
                    self._remember_conversation(conversation_id)
                case _:
                    assert_never(effect)

    async def _send(self, event: Any) -> None:
        sock = self._socket
        if sock is None:
            log.debug("! not connected; dropped %s", type(event).__name__)
            return
        try:
            await sock.send(event)
        except CozeUnavailable as exc:
            # The reader sees the same close and reports Disconnected; nothing to do here.
            log.debug("! send failed: %s", exc)

    def _watch_drain(self) -> None:
        if self._drain_watched or self._tasks is None:
            return
        self._drain_watched = True

        async def watch() -> None:
            await self._speaker.wait_drained()
            await self._inbox.put(Drained())

        self._tasks.create_task(watch(), name="drain-watch")

    async def _reconnect(self, reason: str) -> None:
        log.info("reconnecting: %s", reason)
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(CozeUnavailable):
                await sock.close()

    def _refresh_token(self) -> None:
        if self._refreshing or self._tasks is None or self._token is None:
            return
        self._refreshing = True
        token = self._token

        async def refresh() -> None:
            try:
                await self._tokens.rejected(token)
            finally:
                self._refreshing = False
            await self._reconnect("token refreshed")

        self._tasks.create_task(refresh(), name="token-refresh")
