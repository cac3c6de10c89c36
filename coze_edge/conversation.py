"""
The conversation driver: owns the Session, feeds it microphone audio, Coze events,
commands and deadlines, and carries out the effects it returns.

One task (``_drive``) calls into the session; every other task only posts typed items to
its inbox. The tasks, each started once in :meth:`Conversation.run`'s TaskGroup:

* ``coze-connection``: one WebSocket session per run, under the supervisor's policy
  (:func:`~coze_edge.supervisor.keep_running`): at once after a drop, then with backoff;
  a deliberate reconnect (new conversation, refreshed token) is free; a refusal of the bot
  or account waits minutes. It reads reply audio only as fast as it plays: after each
  delta it waits until the driver has queued it and the speaker holds less than
  :data:`PLAYBACK_AHEAD_MS` (so TCP holds back a server that sends faster);
* ``microphone``: opens the microphone once Coze first answered (nothing waits unread on
  an open microphone while the device logs in) and pumps its blocks;
* ``drain-watch``: reports when the speaker has played out a reply the session watches;
* ``token-refresh``: asks the token source for a new token when Coze refused the one in
  use, then reconnects with it;
* ``tools``: runs the device-side plugins the bot calls (``RunTools``), each call in a task
  of its own, stopped at the session's tool deadline; their outputs come back through the
  inbox, so a slow tool never holds up the audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, assert_never

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
from coze_edge.core.earcons import EarconKind, earcon
from coze_edge.core.events import AudioDelta, ServerEvent, ToolCall
from coze_edge.core.session import (
    REFUSALS,
    Announce,
    DuckPlayback,
    Effect,
    Emit,
    FlushPlayback,
    Play,
    PlayEarcon,
    Reconnect,
    ReconnectAfter,
    RememberConversation,
    RunTools,
    Send,
    Session,
    TokenRejected,
    WatchDrain,
    refusal,
)
from coze_edge.core.status import State
from coze_edge.core.tools import error_output
from coze_edge.credentials import TokenSource
from coze_edge.errors import (
    AuthenticationError,
    CozeAPIError,
    CozeRefused,
    CozeUnavailable,
    Restart,
    TransientError,
)
from coze_edge.metrics import LatencyObserver
from coze_edge.status_board import StatusBoard
from coze_edge.supervisor import Service, keep_running

log = logging.getLogger(__name__)

REFUSED_RETRY_S: Final = 300.0
"""After Coze refused the bot or account (REFUSALS): the next try, at the earliest."""

PLAYBACK_AHEAD_MS: Final = 4000
"""Reply audio the speaker may hold before the socket is read again (190 kB at 24 kHz).
Coze sends a reply about six times faster than it plays (the recorded trace: 10 s of audio
in 1.5 s), so without a cap a long reply piles up in memory; with it, the rest waits in
TCP's buffers and the server's. 4 s of lead rides out any network hiccup short of a stall
that would also hold up a reply that fit in memory. A constant, not a setting: nothing
about a device or its network makes another value better."""

IDLE_HANDOFF_MS: Final = 120
"""While captured audio can wait (:attr:`Session.audio_can_wait`: the device waits for
speech or the wake word, and plays nothing), the microphone hands it over this much at a
time: each hand-off wakes the event loop, which costs far more than the VAD or the
endpointer (measured: about 0.3 ms per wake-up against 0.013 ms for a 60 ms block's
VAD). The price is up to this much delay before a turn opens or the wake word is
reported; the turn's audio itself is complete (pre-roll), and once it runs every block
is handed over as it comes."""

IDLE_OUTPUT_BLOCK_MS: Final = 100
"""Meanwhile the speaker's stream, kept open and fed with silence, runs on blocks this
long (``SoundDeviceSpeaker.idle``): an idle 20 ms output stream costs as much CPU as
capturing does. 100 ms only delays an earcon or an announcement by up to that much; a turn
reopens it on the usual blocks before any reply can arrive."""


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
    done: asyncio.Future[None] | None = None
    """Resolved once its effects were carried out (the reader waits for reply audio)."""


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


@dataclass(frozen=True, slots=True)
class Announcement:
    """Local audio to play while no turn runs (the spoken login code)."""

    pcm: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TalkedOver:
    """The echo canceller heard someone talk over the speaker (double talk)."""


@dataclass(frozen=True, slots=True)
class ToolDone:
    """One tool call of a ``RunTools`` ended; ``output`` goes back to Coze."""

    chat_id: str
    call_id: str
    output: str = field(repr=False)


Input = (
    Captured
    | Received
    | Connected
    | Disconnected
    | Drained
    | Commanded
    | Announcement
    | ToolDone
    | TalkedOver
)


class ToolRunner(Protocol):
    """Runs one device-side plugin call (:class:`~coze_edge.tools.Toolbox`)."""

    async def run(self, call: ToolCall) -> str:
        """The call's output; a failure is an error output, never an exception."""
        ...


TOOL_BATCHES: Final = 8
"""``requires_action`` batches waiting for the tools task at most (one is usual)."""


def reconnect_delays() -> Iterator[float]:
    """0 s (retry at once after a drop), then 1, 2, 4 ... 60 s, each with jitter."""
    return backoff(first=1.0, cap=60.0, first_immediate=True)


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
        board: StatusBoard,
        on_event: Callable[[dict[str, Any]], None],
        remember_conversation: Callable[[str | None], None] = lambda _: None,
        earcons: bool = True,
        earcon_sounds: Mapping[EarconKind, bytes] | None = None,
        inbox_size: int = 256,
        refused_retry_s: float = REFUSED_RETRY_S,
        playback_ahead_ms: float = PLAYBACK_AHEAD_MS,
        tools: ToolRunner | None = None,
    ) -> None:
        self._session = session
        self._socket_settings = socket_settings
        self._tokens = tokens
        self._microphone = microphone
        self._speaker = speaker
        self._board = board
        self._on_event = on_event
        self._remember_conversation = remember_conversation
        self._earcons = earcons
        self._earcon_sounds = earcon_sounds or {}  # custom ones, at the speaker's rate
        self._refused_retry_s = refused_retry_s
        self._playback_ahead_ms = playback_ahead_ms
        self._tools = tools
        self._tool_batches: asyncio.Queue[RunTools] = asyncio.Queue(TOOL_BATCHES)
        self._inbox: asyncio.Queue[Input] = asyncio.Queue(inbox_size)
        self._socket: CozeSocket | None = None
        self._token: str | None = None
        self._closing: Reconnect | None = None  # why we are closing the socket ourselves
        self._first_idle = asyncio.Event()
        self._drain_wanted = asyncio.Event()
        self._refresh_wanted = asyncio.Event()
        self._last_frame_at: float | None = None
        """When the microphone last delivered a block, or was opened and has not yet."""
        self.metrics = LatencyObserver(speaker)
        """The daemon's own latencies (benchmarks, tests)."""
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

    def announce(self, pcm: bytes) -> None:
        """Play ``pcm`` if the device is not busy with a turn (dropped otherwise)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(Announcement(pcm))

    def talked_over(self) -> None:
        """The echo canceller's double-talk evidence (on the loop, as a block is captured):
        the session may duck the reply before the cleaned audio says speech."""
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(TalkedOver())

    @property
    def devices(self) -> tuple[Microphone, Speaker]:
        return self._microphone, self._speaker

    def audio_healthy(self, *, within_s: float = 5.0) -> bool:
        """Microphone frames arrived recently, or it was opened recently (the watchdog's
        question; the first block may take seconds, FIRST_AUDIO_TIMEOUT_S)."""
        last = self._last_frame_at
        if last is None:
            return True  # not listening yet: nothing to miss
        return asyncio.get_running_loop().time() - last < within_s

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        self._speaker.set_volume(self._board.controls.volume)
        self._session.muted = self._board.controls.muted
        self._report_state()
        connection = Service(
            "coze-connection",
            self._connection,
            delays=reconnect_delays,
            on_failure=self._connection_failed,
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(keep_running(connection), name="coze-connection")
            tasks.create_task(self._pump_microphone(), name="microphone")
            tasks.create_task(self._watch_drains(), name="drain-watch")
            tasks.create_task(self._refresh_when_refused(), name="token-refresh")
            tasks.create_task(self._serve_tools(), name="tools")
            tasks.create_task(self._drive(), name="conversation")

    async def _pump_microphone(self) -> None:
        await self._first_idle.wait()
        loop = asyncio.get_running_loop()
        async with self._microphone:
            self._last_frame_at = loop.time()
            async for block in self._microphone.frames():
                now = loop.time()
                self._last_frame_at = now
                await self._inbox.put(Captured(block, self._microphone.captured_at or now))

    async def _watch_drains(self) -> None:
        while True:
            await self._drain_wanted.wait()
            await self._speaker.wait_drained()
            self._drain_wanted.clear()
            await self._inbox.put(Drained())

    async def _refresh_when_refused(self) -> None:
        while True:
            await self._refresh_wanted.wait()
            token = self._token
            if token is not None:
                await self._tokens.rejected(token)
            self._refresh_wanted.clear()
            await self._reconnect(Reconnect("token refreshed", ReconnectAfter.NOW))

    # ------------------------------------------------------------------ tools

    async def _serve_tools(self) -> None:
        async with asyncio.TaskGroup() as batches:
            while True:
                batch = await self._tool_batches.get()
                batches.create_task(self._run_tools(batch), name=f"tools-{batch.chat_id}")

    async def _run_tools(self, batch: RunTools) -> None:
        """The calls of one ``requires_action`` side by side; at the deadline whatever still
        runs is cancelled (the session has answered for it by then)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(batch.deadline), asyncio.TaskGroup() as calls:
                for call in batch.calls:
                    calls.create_task(self._run_call(batch.chat_id, call), name=f"tool-{call.name}")

    async def _run_call(self, chat_id: str, call: ToolCall) -> None:
        if self._tools is None:
            output = error_output("this device runs no device-side plugins")
        else:
            try:
                output = await self._tools.run(call)
            except Exception as exc:  # a bug in a tool must not end the conversation
                log.exception("! tool %s failed", call.name)
                output = error_output(f"the tool failed ({type(exc).__name__})")
        await self._inbox.put(ToolDone(chat_id, call.id, output))

    def _start_tools(self, batch: RunTools) -> None:
        try:
            self._tool_batches.put_nowait(batch)
        except asyncio.QueueFull:
            # Never expected (one batch per reply); the session answers at the deadline.
            log.warning("! tool calls of chat %s dropped: too many at once", batch.chat_id)

    # ------------------------------------------------------------------ Coze

    async def _connection(self) -> None:
        """One session: open it, read it until it ends, then raise what ended it (the
        supervisor's policy decides how soon the next one opens)."""
        token = await self._tokens.token()
        self._token = token
        self._closing = None
        try:
            sock = await CozeSocket.open(self._socket_settings, token)
        except AuthenticationError as exc:
            log.warning("! Coze refused the token (%s)", exc.describe())
            await self._tokens.rejected(token)
            raise Restart("with a refreshed token") from exc
        except CozeAPIError as exc:
            raise self._refused(exc.code, exc.describe(), exc.logid) from exc
        finally:
            self.first_attempt.set()
        self._board.connect_problem(None)
        reason = "closed"
        try:
            async with sock:
                await self._inbox.put(Connected(sock))
                loop = asyncio.get_running_loop()
                async for event in sock.events():
                    if isinstance(event, AudioDelta):
                        await self._hand_over_audio(
                            Received(event, loop.time(), loop.create_future())
                        )
                    else:
                        await self._inbox.put(Received(event, loop.time()))
        except CozeUnavailable as exc:
            reason = str(exc)
            closing = self._closing
            if closing is None:
                raise
            if closing.after is ReconnectAfter.NOW:
                raise Restart(closing.reason) from None
            if closing.after is ReconnectAfter.LATER:
                raise CozeRefused(
                    closing.reason,
                    detail=self._session.fault or closing.reason,
                    retry_after=self._refused_retry_s,
                ) from None
            raise CozeUnavailable(closing.reason) from None
        finally:
            self._post_nowait(Disconnected(reason))

    async def _hand_over_audio(self, item: Received) -> None:
        """Give reply audio to the driver, then wait for playback to catch up. Meanwhile
        nobody reads the socket, so TCP holds the server back; the driver goes on serving
        the microphone and commands, and a flush (cancel, barge-in) ends the wait at once.
        One delta at a time is in the inbox, however slow the driver."""
        assert item.done is not None
        await self._inbox.put(item)
        await item.done
        await self._speaker.wait_queued_below(self._playback_ahead_ms)

    def _refused(self, code: int | str | None, described: str, logid: str | None) -> Exception:
        """The error for a handshake Coze refused with a business error."""
        if code in REFUSALS:
            return CozeRefused(
                f"Coze refused the session: {described}",
                detail=refusal(code, described, logid),
                retry_after=self._refused_retry_s,
                logid=logid,
            )
        return CozeUnavailable(f"Coze refused the session: {described}", logid=logid)

    def _connection_failed(self, exc: TransientError) -> None:
        if isinstance(exc, CozeRefused):
            self._session.fault = exc.detail
            self._report_state()
        else:
            self._board.connect_problem(str(exc))

    def _post_nowait(self, item: Input) -> None:
        try:
            self._inbox.put_nowait(item)
        except asyncio.QueueFull:
            # The driver is behind; it must still hear of the drop: make room for it.
            self._inbox.get_nowait()
            self._inbox.put_nowait(item)

    async def _reconnect(self, why: Reconnect) -> None:
        log.info("reconnecting: %s", why.reason)
        self._closing = why
        sock, self._socket = self._socket, None
        if sock is not None:
            with contextlib.suppress(CozeUnavailable):
                await sock.close()

    # ------------------------------------------------------------------ the driver

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
            # Only a reply's first delta needs it; not worth a lock per microphone block.
            was_playing = isinstance(item, Received) and self._speaker.playing
            await self._carry_out(effects)
            idle = self._session.audio_can_wait and not self._speaker.playing
            self._microphone.handoff_ms = IDLE_HANDOFF_MS if idle else 0
            self._speaker.idle = idle
            if effects or self.metrics.waiting_for_playback:
                self.metrics.after(
                    effects,
                    loop.time(),
                    captured_at=item.at if isinstance(item, Captured) else None,
                    received_at=item.at if isinstance(item, Received) else None,
                    was_playing=was_playing,
                )
            if (
                isinstance(item, Commanded | Received)
                and item.done is not None
                and not item.done.done()
            ):
                item.done.set_result(None)

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
                return session.playback_drained(now)
            case TalkedOver():
                return session.double_talk(now)
            case Commanded(command, _):
                return self._command(command, now)
            case Announcement(pcm):
                if session.state in (State.CONNECTING, State.IDLE):
                    self._speaker.play_nowait(pcm)
                return []
            case ToolDone(chat_id, call_id, output):
                return session.tool_finished(chat_id, call_id, output, now)
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
            case Mute() | Unmute():
                muted = isinstance(command, Mute)
                self._board.set_controls(replace(self._board.controls, muted=muted))
                return session.set_muted(muted, now)
            case SetVolume(percent):
                self._board.set_controls(replace(self._board.controls, volume=percent))
                self._speaker.set_volume(percent)
                return []
            case Say(text):
                return session.say(split_for_speech(text), now)
            case NewConversation():
                return session.new_conversation(now)
            case QueryStatus():
                return []
            case _:
                assert_never(command)

    def _report_state(self) -> None:
        self._board.conversation_state(self._session.state, self._session.fault)

    async def _carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Send(event):
                    await self._send(event)
                case Play(pcm):
                    self._speaker.play_nowait(pcm)
                case FlushPlayback():
                    self._speaker.flush()
                case DuckPlayback(db):
                    self._speaker.duck(db)
                case PlayEarcon(kind):
                    if self._earcons:
                        sound = self._earcon_sounds.get(kind)
                        self._speaker.play_nowait(sound or earcon(kind, self._speaker.rate))
                case Announce(state):
                    if state is State.IDLE:
                        self._first_idle.set()
                    self._report_state()
                case Emit(kind, fields):
                    self._on_event({"type": kind, **fields})
                case WatchDrain():
                    self._drain_wanted.set()
                case Reconnect():
                    self._report_state()  # the session may have a fault to show
                    await self._reconnect(effect)
                case TokenRejected():
                    self._refresh_wanted.set()
                case RememberConversation(conversation_id):
                    self._remember_conversation(conversation_id)
                case RunTools():
                    self._start_tools(effect)
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
