"""
The conversation state machine: microphone audio, Coze events, commands and the time in;
the effects to carry out come back from every call. No I/O, no clock, no asyncio.

States (CONTRACT.md): CONNECTING until Coze confirmed ``chat.update``; IDLE waiting for
speech; LISTENING while the user talks (audio streams upstream); THINKING after the turn
was committed, until reply audio arrives; SPEAKING while the reply plays. Every state but
IDLE has a deadline, so the device never sits in one forever.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Protocol

from coze_edge.core.audio import WholeSamples, rms
from coze_edge.core.earcons import EarconKind
from coze_edge.core.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechContinues,
    SpeechEnded,
    SpeechLikely,
    SpeechStarted,
    SpeechUnlikely,
)
from coze_edge.core.events import (
    CHAT_CANCEL,
    AudioAppend,
    AudioClear,
    AudioComplete,
    AudioCompleted,
    AudioDelta,
    ChatCancel,
    ChatCanceled,
    ChatCompleted,
    ChatFailed,
    ChatRequiresAction,
    ChatStarted,
    ChatUpdate,
    ChatUpdated,
    ClientEvent,
    GenerateAudio,
    MessageCompleted,
    ServerError,
    ServerEvent,
    ServerSpeechStarted,
    ServerSpeechStopped,
    SubmitToolOutputs,
    ToolCall,
    TranscriptCompleted,
    TranscriptUpdate,
)
from coze_edge.core.status import State
from coze_edge.core.tools import bounded, error_output
from coze_edge.core.wake import WakeGate
from coze_edge.errors import LocalProtocolError

log = logging.getLogger(__name__)

# Error codes that mean the token is bad: refresh it and reconnect (coze-protocol.md 1.7).
TOKEN_INVALID_CODES: Final = frozenset({4100, 700012006})

CONVERSATION_UNKNOWN: Final = 4002
"""Coze does not know (or no longer lets us use) the conversation id we named."""

CANCEL_REFUSED: Final = 4104
"""Nothing to cancel: the chat ended before our cancel arrived. Never the user's problem."""

REFUSALS: Final = frozenset({4006, 4008, 4011, 4015, 4019, 4022, 4101, 4102, 4200})
"""Coze refuses this bot or account until a person changes something in Coze's console
(or, for 4008, until tomorrow): state ``error`` with the hint, retried after minutes."""

# What a user can do about the codes a voice session is likely to meet.
ERROR_HINTS: Final[dict[int, str]] = {
    4000: "request rejected as malformed",
    4002: "Coze no longer knows the remembered conversation; starting a new one",
    4006: "coze.bot_id is wrong or not accessible with this token",
    4008: "daily usage limit of this bot reached",
    4009: "Coze is busy; retrying",
    4011: "the Coze account's token balance is insufficient",
    4013: "the bot's model service failed; retrying",
    4015: "the bot is not published to the API channel: publish it as API in Coze",
    4016: "another chat is running in this conversation",
    4019: "the Coze account is in arrears",
    4020: "request quota (RPM) exceeded",
    4022: "the Coze account is in arrears for model usage",
    4100: "the access token is invalid or expired",
    4101: "the token lacks the 'chat' permission or the bot's workspace",
    4102: "blocked by Coze risk control",
    4200: "a resource the bot uses was not found (an unpublished workflow?)",
    5000: "Coze internal error; retrying",
}

CANCELED_BY_CLIENT: Final = 2
"""``conversation.chat.canceled`` code for a cancel we sent (1: user speech, 3: new input)."""

TTS_CHAT_ID: Final = "0"
"""The chat id of ``input_text.generate_audio`` output (no chat events come with it)."""


def refusal(code: int | str | None, msg: str, logid: str | None) -> str:
    """What the device shows while Coze refuses it (state ``error``): what to do, the code
    and the logid to quote to Coze support."""
    hint = ERROR_HINTS.get(code, msg) if isinstance(code, int) else msg
    return f"{hint} (Coze error {code}, logid {logid or '-'})"


_TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.CONNECTING: frozenset({State.IDLE}),
    # IDLE -> THINKING: with server_vad, Coze started a chat the device did not ask for.
    State.IDLE: frozenset({State.LISTENING, State.THINKING, State.SPEAKING, State.CONNECTING}),
    State.LISTENING: frozenset({State.THINKING, State.IDLE, State.CONNECTING}),
    State.THINKING: frozenset({State.SPEAKING, State.LISTENING, State.IDLE, State.CONNECTING}),
    State.SPEAKING: frozenset({State.LISTENING, State.IDLE, State.CONNECTING}),
}


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``event`` to Coze on the current socket. If there is none (the connection just
    dropped), the driver drops it: a ``disconnected`` call follows, and nothing in flight is
    ever replayed on a later socket."""

    event: ClientEvent


@dataclass(frozen=True, slots=True)
class Play:
    """Queue ``pcm`` (output-rate s16le mono, whole samples: never of odd length, whatever
    the deltas' lengths) on the speaker after what is queued; never waits. The session only
    asks this in SPEAKING (or on entering it)."""

    pcm: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FlushPlayback:
    """Silence the speaker within one device block and drop everything queued; a
    ``WatchDrain`` asked before it may still report (the session ignores a drain that
    comes when it is no longer SPEAKING)."""


@dataclass(frozen=True, slots=True)
class DuckPlayback:
    """Play ``db`` dB below the volume from the next device block on (0.0: at the volume
    again); what is queued stays queued. The user may be talking over the reply: it yields
    at once, before that is certain. The session undoes it when the reply ends or is cut."""

    db: float


@dataclass(frozen=True, slots=True)
class PlayEarcon:
    """Play a short local tone after what is queued (the driver may skip it when earcons
    are off); never sent upstream."""

    kind: EarconKind


@dataclass(frozen=True, slots=True)
class Announce:
    """``state`` was entered (or the mute flag or ``fault`` changed in it): the driver
    reports the session's state and fault to the status board, which tells the log,
    systemd, MQTT and the control socket. Comes after the effects that led to it."""

    state: State


@dataclass(frozen=True, slots=True)
class Emit:
    """An event for the outside world (MQTT ``event`` topic, log): ``transcript``,
    ``reply``, ``turn`` (its latency figures) or ``error`` (with ``code``, ``logid`` and a
    ``hint`` when there is one). Never changes what the session does next."""

    type: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WatchDrain:
    """Call :meth:`Session.playback_drained` once the speaker has played everything queued
    (once, however many are asked while it plays)."""


class ReconnectAfter(Enum):
    """How soon a new connection follows a :class:`Reconnect`."""

    NOW = "now"
    """Deliberate (a new conversation): at once, not counted as a failure."""
    BACKOFF = "backoff"
    """Something went wrong: after the reconnect backoff."""
    LATER = "later"
    """Coze refuses this bot or account (:data:`REFUSALS`): after minutes."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the current socket and open a new one, ``after`` says when. The session has
    already given up on the turn in flight; ``disconnected`` then ``connected`` follow as
    for any other drop. ``reason`` is for the log."""

    reason: str
    after: ReconnectAfter = ReconnectAfter.BACKOFF


@dataclass(frozen=True, slots=True)
class TokenRejected:
    """Coze refused the token in use: ask the token source for another (which may take a
    while, or end the process for a personal access token nobody can renew), then
    ``Reconnect`` with it at once."""


@dataclass(frozen=True, slots=True)
class RememberConversation:
    """Persist ``conversation_id`` (None: forget it), so the bot keeps its context across
    restarts. Best effort: a disk that refuses costs the context, not the session."""

    conversation_id: str | None


@dataclass(frozen=True, slots=True)
class RunTools:
    """Run the tool ``calls`` of chat ``chat_id`` side by side, off the audio path, and report
    each one's output with :meth:`Session.tool_finished` as it ends. Whatever still runs at
    ``deadline`` (the owner's clock) is stopped (a command's process group killed): the
    session answers Coze for it then, with an error output."""

    chat_id: str
    calls: tuple[ToolCall, ...]
    deadline: float


Effect = (
    Send
    | Play
    | FlushPlayback
    | DuckPlayback
    | PlayEarcon
    | Announce
    | Emit
    | WatchDrain
    | Reconnect
    | TokenRejected
    | RememberConversation
    | RunTools
)


class _RecentIds:
    """The last few chat ids we cancelled: bounded, so months of barge-ins cost nothing."""

    def __init__(self, size: int = 16) -> None:
        self._ids: dict[str, None] = {}
        self._size = size

    def add(self, chat_id: str) -> None:
        self._ids[chat_id] = None
        while len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]

    def discard(self, chat_id: str) -> None:
        self._ids.pop(chat_id, None)

    def __contains__(self, chat_id: object) -> bool:
        return chat_id in self._ids


class WakeDetector(Protocol):
    """A wake-word spotter over capture-format audio (adapters/wakeword.py)."""

    def process(self, pcm: bytes) -> bool:
        """True when the wake word ended in this audio."""
        ...

    @property
    def audio_s(self) -> float:
        """Audio seen so far, in seconds."""
        ...

    last_detection_s: float | None


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class SessionSettings:
    capture_rate: int = 16000
    """Rate of the PCM the microphone delivers and Coze receives."""
    output_rate: int = 24000
    """Rate of the reply PCM asked of Coze."""
    chunk_ms: int = 60
    """Audio per ``input_audio_buffer.append``."""
    input_codec: str = "pcm"
    """What Coze is told the appends carry: ``pcm``, or ``opus`` (the socket encodes the
    PCM the session hands it, one packet per append)."""
    reply_timeout_s: float = 15.0
    """From the end of the user's turn (or the last reply event) to giving up on the reply."""
    max_utterance_s: float = 15.0
    """The longest a user turn may last before it is committed anyway."""
    configure_timeout_s: float = 10.0
    """How long ``chat.update`` may go unanswered before reconnecting."""
    barge_in: bool = True
    """The user may talk over the reply."""
    voice_id: str | None = None
    user_id: str | None = None
    conversation_id: str | None = None
    server_vad: bool = False
    """True: Coze's VAD ends turns (``server_vad``); False: ours does (``client_interrupt``)."""
    end_silence_ms: int = 700
    """Silence that ends a turn, also told to the server VAD."""
    follow_up_s: float = 5.0
    """With a wake word: after a reply, speech alone may answer for this long."""
    start_ms: int = 60
    """Speech that opens a turn while the device is quiet."""
    barge_in_start_ms: int = 300
    """Speech that interrupts the reply: longer, so the device's own echo does not."""
    barge_in_min_rms: float = 0.0
    """While the reply plays, microphone blocks quieter than this RMS count as silence:
    the echo-safe fallback where no echo canceller runs; 0 = off."""
    barge_in_duck_ms: int = 0
    """While the reply plays, this much speech (less than ``barge_in_start_ms``) lowers it
    by ``barge_in_duck_db`` until the onset is certain (then it is cut) or the speech has
    left the onset window without one (then it is restored): the reply yields as soon as
    the user may be talking; 0 = off."""
    barge_in_duck_db: float = 40.0
    """How much quieter a ducked reply plays."""
    double_talk_hold_s: float = 0.3
    """A duck on the echo canceller's evidence alone (:meth:`Session.double_talk`) lasts
    this long after the last of it, unless the speech has become likely by then."""
    custom_variables: Mapping[str, str] = field(default_factory=dict)
    """The bot prompt's ``{{key}}`` variables (``chat_config.custom_variables``)."""
    meta_data: Mapping[str, str] = field(default_factory=dict)
    """``chat_config.meta_data`` for every chat."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """A chatflow's custom inputs (``chat_config.parameters``)."""
    tool_names: frozenset[str] = frozenset()
    """The device-side plugins this device runs; a call of any other is answered at once
    with an error."""
    tool_deadline_s: float = 5.0
    """From ``requires_action`` to ``submit_tool_outputs`` at the latest: Coze waits only so
    long, so a call still running then is answered with an error."""
    tool_output_bytes: int = 4096
    """The longest output sent back for one call; longer ones are cut."""

    def chat_update(self, conversation_id: str | None) -> ChatUpdate:
        chat_config: dict[str, Any] = {"auto_save_history": True}
        if conversation_id:
            chat_config["conversation_id"] = conversation_id
        if self.user_id:
            chat_config["user_id"] = self.user_id
        for key, value in (
            ("custom_variables", self.custom_variables),
            ("meta_data", self.meta_data),
            ("parameters", self.parameters),
        ):
            if value:
                chat_config[key] = dict(value)
        output: dict[str, Any] = {"codec": "pcm", "pcm_config": {"sample_rate": self.output_rate}}
        if self.voice_id:
            output["voice_id"] = self.voice_id
        turn: dict[str, Any] = {"type": "server_vad" if self.server_vad else "client_interrupt"}
        if self.server_vad:
            turn["silence_duration_ms"] = self.end_silence_ms
        return ChatUpdate(
            {
                "chat_config": chat_config,
                "input_audio": {
                    "format": "pcm",
                    "codec": self.input_codec,
                    "sample_rate": self.capture_rate,
                    "channel": 1,
                    "bit_depth": 16,
                },
                "output_audio": output,
                "turn_detection": turn,
            }
        )


@dataclass(slots=True)
class _PendingTools:
    """The tool calls of one ``requires_action`` that are still to be answered."""

    chat_id: str
    calls: tuple[ToolCall, ...]
    deadline: float
    outputs: dict[str, str] = field(default_factory=dict)
    """Call id -> output, as each call ends (or is refused)."""

    def done(self) -> bool:
        return all(call.id in self.outputs for call in self.calls)


@dataclass(slots=True)
class _Turn:
    """What one user turn and its reply have seen so far (for the ``turn`` event)."""

    started: float
    ended: float | None = None
    first_audio: float | None = None
    chat_id: str | None = None
    transcript: str = ""
    reply_done: bool = False
    audio_done: bool = False
    audio_bytes: int = 0


class Session:
    """
    The voice conversation with Coze, as a state machine over inputs and time.

    One owner (the conversation driver) calls these methods, never concurrently; each
    returns the effects to carry out, in order, before the next call. ``now`` is the
    owner's monotonic clock in seconds; it must not go backwards between calls.

    Inputs and what they promise in return:

    * :meth:`connected` / :meth:`disconnected`: a socket opened or ended. ``connected``
      sends ``chat.update``; nothing is appended before Coze answers ``chat.updated``.
      ``disconnected`` drops whatever was in flight (never replayed) and enters CONNECTING.
    * :meth:`audio_captured`: microphone audio in the capture format, any length. Muted or
      CONNECTING: ignored. Otherwise it feeds the wake word, the endpointer and barge-in.
    * :meth:`double_talk`: the echo canceller heard someone talk over the speaker (per
      block, as it is captured). Ducks a reply that may be talked over, for a while.
    * :meth:`received`: one decoded server event. Any event may come at any time, also
      unknown ones, late ones of a chat we cancelled, and errors; none raises. Errors are
      sorted by what they mean for the device: the token (``TokenRejected``), a
      conversation Coze forgot (drop it, ``Reconnect`` NOW), a refusal of the bot or
      account (``fault`` set, ``Reconnect`` LATER), a refused setup (``Reconnect`` after
      backoff), an error about our own cancel (ignored: the chat had ended), anything
      else (the turn in flight fails with an ``error`` event, the session is kept).
    * :meth:`handle_timer`: call at (or after) :meth:`next_deadline`; every state but IDLE
      has a deadline, so the device never sits in one forever.
    * :meth:`playback_drained`: the answer to ``WatchDrain``.
    * :meth:`tool_finished`: the answer to ``RunTools``, one per call. The calls of a
      ``requires_action`` are answered together once all are in, or at the tool deadline
      (the missing ones with an error output), never twice and never for a chat given up.
    * Commands (:meth:`listen`, :meth:`cancel`, :meth:`set_muted`, :meth:`say`,
      :meth:`new_conversation`): valid in any state; where one makes no sense it returns
      no effects.

    Invariants: a ``conversation.chat.cancel`` is sent only while Coze still produces
    output (a reply whose chat completed is only silenced locally); audio of a chat we
    gave up on is never played; the state changes only along ``_TRANSITIONS``
    (LocalProtocolError otherwise: a bug here, not a peer's fault).
    """

    def __init__(
        self,
        settings: SessionSettings,
        endpointer: Endpointer,
        wake: WakeDetector | None = None,
    ) -> None:
        self._settings = settings
        self._endpointer = endpointer
        self._wake = wake
        self._gate = WakeGate(enabled=wake is not None, follow_up_s=settings.follow_up_s)
        self.state = State.CONNECTING
        self.muted = False
        self.conversation_id = settings.conversation_id
        self._deadline: float | None = None
        self._chunk_bytes = settings.capture_rate * 2 * settings.chunk_ms // 1000
        self._outgoing = bytearray()
        self._turn: _Turn | None = None
        self._canceled = _RecentIds()
        self._play_end = 0.0  # when the audio queued so far will have played, at the latest
        self._reply_pcm = WholeSamples()  # a delta may end mid-sample; the next completes it
        self._chat_id: str | None = None  # the bot chat currently producing output
        self._busy = False  # Coze is (or is about to be) producing output a cancel would stop
        self._tts = False  # ... and that output is spoken text (input_text.generate_audio)
        self._unwanted_turn = False  # server_vad: Coze will answer a turn we abandoned
        self._configured = False
        self._ducked = False  # the reply plays quieter: the user may be talking over it
        self._duck_until: float | None = None  # a duck on double-talk evidence ends then
        self.fault: str | None = None
        """Why Coze refuses the session (a :data:`REFUSALS` code, with what to do); cleared
        once a session is configured again. Shown as state ``error``."""
        self.dropped_deltas = 0
        self._tools: _PendingTools | None = None  # tool calls Coze waits for us to answer

    # ------------------------------------------------------------------ helpers

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` is due next (the owner's clock); None: only an input
        can change anything."""
        tools = self._tools.deadline if self._tools is not None else None
        deadlines = [
            d
            for d in (self._deadline, self._gate.next_deadline(), tools, self._duck_until)
            if d is not None
        ]
        return min(deadlines, default=None)

    def _enter(self, new: State, *, deadline: float | None) -> list[Effect]:
        self._deadline = deadline
        if new is self.state:
            return []
        if new not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"{self.state.name} -> {new.name}")
        log.debug("= %s -> %s", self.state.name, new.name)
        effects: list[Effect] = []
        if new is State.SPEAKING:
            self._endpointer.set_start_ms(self._settings.barge_in_start_ms)
            if self._barge_in_allowed():
                self._endpointer.set_early_ms(self._settings.barge_in_duck_ms)
        elif self.state is State.SPEAKING:
            self._endpointer.set_start_ms(self._settings.start_ms)
            self._endpointer.set_early_ms(0)
            self._reply_pcm.clear()  # the reply ended or was flushed: half a sample is noise
            effects += self._restore_playback()
        self.state = new
        return [*effects, Announce(new)]

    def _barge_in_allowed(self) -> bool:
        """Speech may interrupt a reply (with a wake word, only the wake word does)."""
        return self._settings.barge_in and not self._gate.enabled

    def _restore_playback(self) -> list[Effect]:
        self._duck_until = None
        if not self._ducked:
            return []
        self._ducked = False
        return [DuckPlayback(0.0)]

    def _duck(self) -> list[Effect]:
        if self._ducked:
            return []
        self._ducked = True
        return [DuckPlayback(-self._settings.barge_in_duck_db)]

    def _append(self, audio: bytes, *, flush: bool = False) -> list[Effect]:
        self._outgoing += audio
        effects: list[Effect] = []
        size = self._chunk_bytes
        while len(self._outgoing) >= size:
            effects.append(Send(AudioAppend(bytes(self._outgoing[:size]))))
            del self._outgoing[:size]
        if flush and self._outgoing:
            effects.append(Send(AudioAppend(bytes(self._outgoing))))
            self._outgoing.clear()
        return effects

    def _interrupt_reply(self) -> list[Effect]:
        """Stop the bot: cancel its output if Coze still produces it (a reply whose chat
        completed only plays out locally: cancelling it would earn a 4104), and silence the
        speaker."""
        effects: list[Effect] = []
        if self.state in (State.THINKING, State.SPEAKING) and self._busy:
            effects.append(Send(ChatCancel()))
            self._busy = False
            if self._chat_id is not None:
                self._canceled.add(self._chat_id)
            elif self._tts:
                self._canceled.add(TTS_CHAT_ID)  # its late deltas are not wanted
            self._chat_id = None
            self._tts = False
        if self.state is State.SPEAKING:
            effects.append(FlushPlayback())
        return effects

    def _start_listening(self, speech: SpeechStarted, now: float) -> list[Effect]:
        effects = self._interrupt_reply()
        self._tools = None  # a new turn: the old one's calls are not answered any more
        self._outgoing.clear()
        self._turn = _Turn(started=now)
        self._gate.turn_started(now)
        effects += self._enter(State.LISTENING, deadline=now + self._settings.max_utterance_s)
        return effects + self._append(speech.audio)

    def _commit(self, now: float) -> list[Effect]:
        effects = self._append(b"", flush=True)
        if not self._settings.server_vad:
            effects.append(Send(AudioComplete()))
            self._busy = True  # Coze starts a chat for the committed audio
        if self._turn is not None:
            self._turn.ended = now
        self._endpointer.reset()
        return effects + self._enter(State.THINKING, deadline=now + self._settings.reply_timeout_s)

    def _back_to_idle(self) -> list[Effect]:
        awaited = self.state is State.THINKING and self._turn is not None and not self._turn.chat_id
        if self._settings.server_vad and (self.state is State.LISTENING or awaited):
            # Coze's VAD still ends the turn we gave up on and answers it: not wanted.
            self._unwanted_turn = True
        self._turn = None
        self._tools = None
        if self._busy:  # given up on while Coze still produces it: its late output is unwanted
            if self._chat_id is not None:
                self._canceled.add(self._chat_id)
            elif self._tts:
                self._canceled.add(TTS_CHAT_ID)
        self._chat_id = None
        self._busy = self._tts = False
        self._outgoing.clear()
        return self._enter(State.IDLE, deadline=None)

    def _fail_turn(self, message: str, **fields: Any) -> list[Effect]:
        effects: list[Effect] = [Emit("error", {"message": message, **fields})]
        effects.append(PlayEarcon("error"))
        return effects + self._back_to_idle()

    def _finish_turn(self, now: float) -> list[Effect]:
        turn = self._turn
        effects: list[Effect] = []
        if turn is not None and turn.ended is not None:
            figures: dict[str, Any] = {
                "chat_id": turn.chat_id,
                "speech_ms": round((turn.ended - turn.started) * 1000),
                "total_ms": round((now - turn.ended) * 1000),
            }
            if turn.first_audio is not None:
                figures["first_audio_ms"] = round((turn.first_audio - turn.ended) * 1000)
            figures["reply_audio_ms"] = round(
                turn.audio_bytes / (2 * self._settings.output_rate) * 1000
            )
            effects.append(Emit("turn", figures))
        if turn is not None:
            # The bot answered the user, who may answer back without the wake word. Text the
            # device was told to say opens no window: Coze never heard it, and `say` must not
            # open the microphone where `listen` may not (mqtt.remote_listen).
            self._gate.reply_finished(now)
        return effects + self._back_to_idle()

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> list[Effect]:
        """A new socket is open: configure it (nothing is appended before chat.updated)."""
        self._configured = False
        self._unwanted_turn = False
        self._deadline = now + self._settings.configure_timeout_s
        return [Send(self._settings.chat_update(self.conversation_id))]

    def disconnected(self, now: float) -> list[Effect]:
        """The socket is gone: whatever was in flight is lost; never replayed."""
        effects: list[Effect] = []
        if self.state is State.SPEAKING:
            effects.append(FlushPlayback())
        if self.state in (State.LISTENING, State.THINKING, State.SPEAKING):
            effects.append(Emit("error", {"message": "connection to Coze lost mid-turn"}))
        self._endpointer.reset()
        self._outgoing.clear()
        self._turn = None
        self._tools = None  # that chat went with the socket
        self._chat_id = None
        self._busy = self._tts = False
        self._unwanted_turn = False
        self._configured = False
        if self.state is State.CONNECTING:
            self._deadline = None
            return effects
        return effects + self._enter(State.CONNECTING, deadline=None)

    # ------------------------------------------------------------------ microphone

    @property
    def audio_can_wait(self) -> bool:
        """
        Captured audio may reach :meth:`audio_captured` a little late, in larger pieces:
        muted or CONNECTING (it is dropped), or IDLE with the client's VAD (waiting for
        speech or the wake word; the turn begins with the pre-roll, so nothing is lost,
        only begun a little later). False wherever a person is waiting on the device: a
        turn, a reply (barge-in), and with ``server_vad`` (Coze's VAD hears the stream).
        """
        if self.muted or self.state is State.CONNECTING:
            return True
        return self.state is State.IDLE and not self._settings.server_vad

    def audio_captured(self, block: bytes, now: float) -> list[Effect]:
        """Microphone audio in the capture format (any length)."""
        if self.muted or self.state is State.CONNECTING:
            return []
        if self._settings.server_vad:
            # Coze's VAD decides; stream everything (unless the reply is playing and the
            # user may not interrupt, which would only make the bot hear itself).
            if self.state is State.SPEAKING and not self._settings.barge_in:
                return []
            return [Send(AudioAppend(block))]
        listening = self.state is State.LISTENING
        if self._wake is not None and not listening and self._wake.process(block):
            return self._woke(block, now)
        if (
            self.state is State.SPEAKING
            and self._settings.barge_in_min_rms
            and rms(block) < self._settings.barge_in_min_rms
        ):
            block = bytes(len(block))  # likely our own voice: not loud enough to interrupt
        effects: list[Effect] = []
        for event in self._endpointer.feed(block):
            effects += self._on_endpoint(event, now)
        return effects

    def double_talk(self, now: float) -> list[Effect]:
        """
        The echo canceller's evidence that someone talks over the reply: the microphone
        heard, at the echo's delay, mostly something other than the speaker's audio. While
        a reply plays and may be talked over, it is ducked at once, for
        ``double_talk_hold_s`` after the last evidence, or on until the endpointer decides
        (the cut at ``barge_in_start_ms`` of speech, or the restore when the speech fades).
        The canceller's own output reaches the endpointer only 50-100 ms later: it
        suppresses the start of a voice that talks over the speaker along with the echo.
        """
        if (
            self.muted
            or self.state is not State.SPEAKING
            or not self._settings.barge_in_duck_ms
            or not self._barge_in_allowed()
            or math.isinf(self._settings.barge_in_min_rms)  # half-duplex: no voice interrupts
        ):
            return []
        self._duck_until = now + self._settings.double_talk_hold_s
        return self._duck()

    def _woke(self, block: bytes, now: float) -> list[Effect]:
        """The wake word ended in ``block``: a turn opens with only the audio after it."""
        assert self._wake is not None
        heard = self._wake.last_detection_s
        after_s = 0.0 if heard is None else max(0.0, self._wake.audio_s - heard)
        keep = min(len(block), round(after_s * self._settings.capture_rate) * 2)
        self._gate.woke(now)
        self._endpointer.reset()
        effects: list[Effect] = [PlayEarcon("wake")]
        effects += self._start_listening(self._endpointer.force_start(), now)
        for event in self._endpointer.feed(block[len(block) - keep :] if keep else b""):
            effects += self._on_endpoint(event, now)
        return effects

    def _on_endpoint(self, event: EndpointEvent, now: float) -> list[Effect]:
        match event:
            case SpeechStarted():
                if self.state is State.IDLE and self._gate.armed(now):
                    return self._start_listening(event, now)
                if self._barge_in_allowed() and self.state in (State.THINKING, State.SPEAKING):
                    return self._start_listening(event, now)
                return []
            case SpeechLikely():
                # Only while SPEAKING, with barge-in allowed (see _enter): yield at once.
                return self._duck() if self.state is State.SPEAKING else []
            case SpeechUnlikely():
                if self._duck_until is not None and now < self._duck_until:
                    return []  # the canceller still hears someone: the timer decides
                return self._restore_playback()  # it was the echo, or a short sound
            case SpeechContinues(audio):
                return self._append(audio) if self.state is State.LISTENING else []
            case SpeechEnded():
                return self._commit(now) if self.state is State.LISTENING else []
        return []  # pragma: no cover - exhaustive

    # ------------------------------------------------------------------ coze

    def received(self, event: ServerEvent, now: float) -> list[Effect]:
        """One event from Coze (see the class docstring for what each kind leads to)."""
        match event:
            case ChatUpdated(config):
                return self._on_configured(config)
            case ServerError(code, msg, logid, origin):
                return self._on_error(code, msg, logid, origin)
            case TranscriptUpdate(content):
                return []
            case TranscriptCompleted(content):
                if self._turn is not None:
                    self._turn.transcript = content
                return [Emit("transcript", {"text": content})]
            case ChatStarted(chat_id, conversation_id):
                effects: list[Effect] = []
                if conversation_id and conversation_id != self.conversation_id:
                    self.conversation_id = conversation_id
                    effects.append(RememberConversation(conversation_id))
                if chat_id in self._canceled:
                    return effects
                if self._settings.server_vad and self.state is State.IDLE:
                    if not self._unwanted_turn:
                        # Coze's VAD ended a turn (or Coze speaks first): play its reply.
                        self._turn = _Turn(started=now)
                        effects += self._enter(
                            State.THINKING, deadline=now + self._settings.reply_timeout_s
                        )
                    self._unwanted_turn = False
                if self.state not in (State.THINKING, State.SPEAKING):
                    # A chat of a turn the user already talked over or gave up on: it runs
                    # now, so it can be cancelled (if it ends first, the 4104 is ignored).
                    self._canceled.add(chat_id)
                    return [*effects, Send(ChatCancel())]
                self._chat_id = chat_id
                self._busy = True
                if self._turn is not None:
                    self._turn.chat_id = chat_id
                if self.state in (State.THINKING, State.SPEAKING):
                    self._deadline = now + self._settings.reply_timeout_s
                return effects
            case MessageCompleted(chat_id, role, kind, content):
                if role == "assistant" and kind == "answer" and chat_id not in self._canceled:
                    return [Emit("reply", {"text": content, "chat_id": chat_id})]
                return []
            case AudioDelta(chat_id, audio):
                return self._on_audio(chat_id, audio, now)
            case AudioCompleted(chat_id):
                self._reply_pcm.clear()
                if chat_id == TTS_CHAT_ID and self._tts:
                    self._busy = self._tts = False  # spoken text has no chat events
                if chat_id in self._canceled or self.state is not State.SPEAKING:
                    return []
                if self._turn is not None:
                    self._turn.audio_done = True
                self._deadline = None  # the speaker drains in bounded time
                return [WatchDrain()]
            case ChatCompleted(chat_id):
                return self._on_chat_completed(chat_id, now)
            case ChatFailed(chat_id, _, code, msg):
                if chat_id in self._canceled:
                    return []
                if chat_id == self._chat_id:
                    self._busy = False
                if code in REFUSALS or code == CONVERSATION_UNKNOWN:
                    return self._on_error(code, msg, None)
                effects = [FlushPlayback()] if self.state is State.SPEAKING else []
                if self.state in (State.THINKING, State.SPEAKING):
                    return effects + self._fail_turn(
                        f"the bot failed to answer: {msg}",
                        code=code,
                        hint=ERROR_HINTS.get(code or 0),
                    )
                return effects
            case ChatRequiresAction(chat_id, _, tool_calls):
                return self._on_tool_calls(chat_id, tool_calls, now)
            case ChatCanceled(code):
                # Server-side barge-in (server_vad) or our own cancel echoed back.
                if code == CANCELED_BY_CLIENT:
                    return []  # ours: everything was done when we sent it
                self._busy = False
                if self._chat_id is not None:
                    self._canceled.add(self._chat_id)
                    self._chat_id = None
                if self.state is State.SPEAKING:
                    return [FlushPlayback(), *self._back_to_idle()]
                if self.state is State.THINKING:
                    return self._back_to_idle()
                return []
            case ServerSpeechStarted():
                # A new turn, also over a reply (Coze cancels that chat itself, code 1).
                if self.state not in (State.IDLE, State.THINKING, State.SPEAKING):
                    return []
                effects = [FlushPlayback()] if self.state is State.SPEAKING else []
                if self._chat_id is not None:
                    self._canceled.add(self._chat_id)
                    self._chat_id = None
                elif self._tts:
                    self._canceled.add(TTS_CHAT_ID)
                self._busy = self._tts = self._unwanted_turn = False
                self._turn = _Turn(started=now)
                return effects + self._enter(
                    State.LISTENING, deadline=now + self._settings.max_utterance_s
                )
            case ServerSpeechStopped():
                if self.state is State.LISTENING:
                    self._busy = True  # Coze's VAD committed the turn: a chat follows
                    if self._turn is not None:
                        self._turn.ended = now
                    return self._enter(
                        State.THINKING, deadline=now + self._settings.reply_timeout_s
                    )
                return []
        return []

    def _on_tool_calls(self, chat_id: str, calls: tuple[ToolCall, ...], now: float) -> list[Effect]:
        """``requires_action``: the bot wants device-side plugins run. The calls of the
        reply in flight are handed to the driver (:class:`RunTools`) and answered by
        ``tool_deadline_s`` at the latest; a call of a tool this device lacks is answered at
        once; a chat no turn waits for any more is answered with errors, so it can end."""
        if chat_id in self._canceled:
            return []  # we cancelled it: nothing waits for an answer
        ours = self.state in (State.THINKING, State.SPEAKING) and self._chat_id in (None, chat_id)
        if not ours:
            refused = error_output("the turn this call belongs to is over")
            return [Send(SubmitToolOutputs(chat_id, tuple((c.id, refused) for c in calls)))]
        settings = self._settings
        tools = _PendingTools(chat_id, calls, deadline=now + settings.tool_deadline_s)
        for call in calls:
            if call.name not in settings.tool_names:
                tools.outputs[call.id] = error_output(f"this device has no tool {call.name!r}")
        log.debug("< requires_action: %s", ", ".join(call.name for call in calls) or "no calls")
        self._tools = tools
        if tools.done():
            return self._submit_tools(now)
        # No reply comes until the outputs went: the reply timeout starts after that.
        self._deadline = max(self._deadline or now, tools.deadline + settings.reply_timeout_s)
        runnable = tuple(call for call in calls if call.id not in tools.outputs)
        return [RunTools(chat_id, runnable, tools.deadline)]

    def tool_finished(self, chat_id: str, call_id: str, output: str, now: float) -> list[Effect]:
        """The answer to one call of a :class:`RunTools`: its output (an error output for a
        failure). Once every call of the chat has one, they go to Coze together; an output
        that comes too late (after the deadline, a cancel or a new turn) is dropped."""
        tools = self._tools
        if tools is None or tools.chat_id != chat_id or call_id in tools.outputs:
            return []
        if call_id not in {call.id for call in tools.calls}:
            return []
        tools.outputs[call_id] = output
        return self._submit_tools(now) if tools.done() else []

    def _submit_tools(self, now: float) -> list[Effect]:
        """Answer the pending calls: each its output, or an error if it has none yet."""
        tools, self._tools = self._tools, None
        if tools is None or tools.chat_id in self._canceled:
            return []
        late = error_output(
            f"no answer within {self._settings.tool_deadline_s:g} s (the device stopped waiting)"
        )
        limit = self._settings.tool_output_bytes
        outputs = tuple(
            (call.id, bounded(tools.outputs.get(call.id, late), limit)) for call in tools.calls
        )
        missing = [call.name for call in tools.calls if call.id not in tools.outputs]
        if missing:
            log.warning("! tool calls unanswered by the deadline: %s", ", ".join(missing))
        if self.state is State.THINKING:
            self._deadline = now + self._settings.reply_timeout_s
        elif self.state is State.SPEAKING:
            self._deadline = max(self._play_end, now) + self._settings.reply_timeout_s
        return [Send(SubmitToolOutputs(tools.chat_id, outputs))]

    def _on_configured(self, config: Any) -> list[Effect]:
        effects: list[Effect] = []
        chat_config = config.get("chat_config") if isinstance(config, dict) else None
        conversation_id = (
            chat_config.get("conversation_id") if isinstance(chat_config, dict) else None
        )
        if isinstance(conversation_id, str) and conversation_id != self.conversation_id:
            self.conversation_id = conversation_id
            effects.append(RememberConversation(conversation_id))
        self._configured = True
        self.fault = None
        if self.state is State.CONNECTING:
            effects += self._enter(State.IDLE, deadline=None)
        return effects

    def _on_error(
        self, code: int | None, msg: str, logid: str | None, origin: str | None = None
    ) -> list[Effect]:
        hint = ERROR_HINTS.get(code or 0)
        fields: dict[str, Any] = {"code": code, "logid": logid}
        if hint:
            fields["hint"] = hint
        if code == CANCEL_REFUSED or origin == CHAT_CANCEL:
            # About our own cancel (the chat had ended): never the user's turn.
            log.debug("= Coze ignored a cancel: %s (code %s)", msg, code)
            return []
        if code in TOKEN_INVALID_CODES:
            return [Emit("error", {"message": msg, **fields}), TokenRejected()]
        if code == CONVERSATION_UNKNOWN and self.conversation_id is not None:
            forgotten, self.conversation_id = self.conversation_id, None
            message = f"Coze does not know conversation {forgotten}; starting a new one"
            return [
                *self._abandon_turn(),
                Emit("error", {"message": message, **fields}),
                RememberConversation(None),
                Reconnect("the remembered conversation is unknown to Coze", ReconnectAfter.NOW),
            ]
        if code in REFUSALS:
            self.fault = refusal(code, msg, logid)
            return [
                *self._abandon_turn(),
                Emit("error", {"message": f"Coze refused the session: {msg}", **fields}),
                Reconnect(f"Coze refused the session (code {code})", ReconnectAfter.LATER),
            ]
        if not self._configured:
            # chat.update itself was refused: a new connection starts from scratch.
            return [
                Emit("error", {"message": f"session setup refused: {msg}", **fields}),
                Reconnect(f"chat.update refused (code {code})"),
            ]
        if self.state in (State.LISTENING, State.THINKING, State.SPEAKING):
            flush: list[Effect] = [FlushPlayback()] if self.state is State.SPEAKING else []
            self._endpointer.reset()
            return flush + self._fail_turn(msg, **fields)
        return [Emit("error", {"message": msg, **fields})]

    def _abandon_turn(self) -> list[Effect]:
        """Before a reconnect: the turn in flight ends quietly (its error is reported once)."""
        if self.state not in (State.LISTENING, State.THINKING, State.SPEAKING):
            return []
        effects: list[Effect] = [FlushPlayback()] if self.state is State.SPEAKING else []
        self._endpointer.reset()
        return [*effects, PlayEarcon("error"), *self._back_to_idle()]

    def _on_audio(self, chat_id: str, audio: bytes, now: float) -> list[Effect]:
        if chat_id in self._canceled or self.state in (State.LISTENING, State.CONNECTING):
            self.dropped_deltas += 1
            return []
        # A byte stream: a delta may end mid-sample, and the speaker takes whole samples.
        audio = self._reply_pcm.take(chat_id, audio)
        effects: list[Effect] = []
        if self.state in (State.IDLE, State.THINKING):
            # IDLE: proactive speech (input_text.generate_audio, chat id "0").
            effects += self._enter(State.SPEAKING, deadline=None)
            self._play_end = now
        # Give up only once the queued audio has played and nothing came for a while.
        self._play_end = max(self._play_end, now) + len(audio) / (2 * self._settings.output_rate)
        self._deadline = self._play_end + self._settings.reply_timeout_s
        if self._turn is not None:
            if self._turn.first_audio is None:
                self._turn.first_audio = now
            self._turn.audio_bytes += len(audio)
        return [*effects, Play(audio)] if audio else effects

    def _on_chat_completed(self, chat_id: str, now: float) -> list[Effect]:
        if chat_id in self._canceled:
            self._canceled.discard(chat_id)
            return []
        self._chat_id = None
        self._busy = False  # what is left plays locally: nothing more to cancel
        effects: list[Effect] = []
        if self._turn is not None:
            self._turn.reply_done = True
        if self.state is State.THINKING:
            # A reply without audio (text only, or nothing to say).
            return effects + self._finish_turn(now)
        if self.state is State.SPEAKING:
            self._deadline = None  # the speaker drains in bounded time
            return [*effects, WatchDrain()]
        return effects

    def playback_drained(self, now: float) -> list[Effect]:
        """The speaker played everything queued."""
        if self.state is not State.SPEAKING:
            return []
        if self._turn is not None and not (self._turn.reply_done or self._turn.audio_done):
            return []  # more audio may come; the reply deadline still guards us
        return self._finish_turn(now)

    # ------------------------------------------------------------------ time

    def handle_timer(self, now: float) -> list[Effect]:
        self._gate.handle_timer(now)
        if self._duck_until is not None and now >= self._duck_until:
            self._duck_until = None
            if not self._endpointer.speech_likely and self.state is State.SPEAKING:
                return self._restore_playback()
        if self._tools is not None and now >= self._tools.deadline:
            return self._submit_tools(now)  # Coze waits only so long: answer what we have
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        match self.state:
            case State.CONNECTING:
                return [Reconnect("chat.update went unanswered")]
            case State.LISTENING:
                log.info("utterance reached %.0f s; committing it", self._settings.max_utterance_s)
                return self._commit(now)
            case State.THINKING:
                cancel: list[Effect] = [Send(ChatCancel())] if self._busy else []
                self._busy = False
                return [
                    *cancel,
                    *self._fail_turn(f"no reply within {self._settings.reply_timeout_s:.0f} s"),
                ]
            case State.SPEAKING:
                # The reply stalled mid-way: let what is queued play out, then stop waiting.
                if self._chat_id is not None:
                    self._canceled.add(self._chat_id)
                return self._fail_turn("the reply stalled")
        return []

    # ------------------------------------------------------------------ commands

    def listen(self, now: float) -> list[Effect]:
        """Open a turn now, without waiting for speech onset."""
        if self.muted or self.state not in (State.IDLE, State.THINKING, State.SPEAKING):
            return []
        effects: list[Effect] = [PlayEarcon("listening")]
        return effects + self._start_listening(self._endpointer.force_start(), now)

    def cancel(self, now: float) -> list[Effect]:
        """Stop whatever the device is doing and go back to waiting."""
        match self.state:
            case State.LISTENING:
                self._endpointer.reset()
                return [Send(AudioClear()), *self._back_to_idle()]
            case State.THINKING | State.SPEAKING:
                return [*self._interrupt_reply(), *self._back_to_idle()]
        return []

    def set_muted(self, muted: bool, now: float) -> list[Effect]:
        """Close (or reopen) the microphone: nothing goes upstream while muted."""
        if muted == self.muted:
            return []
        self.muted = muted
        self._endpointer.reset()
        effects = self._restore_playback()  # nobody can be talking over it now
        if muted and self.state is State.LISTENING:
            effects += [Send(AudioClear()), *self._back_to_idle()]
        return [*effects, Announce(self.state)]

    def say(self, pieces: list[str], now: float) -> list[Effect]:
        """Speak text through Coze's TTS (``input_text.generate_audio``)."""
        if self.state is State.CONNECTING or not pieces:
            return []
        effects = self._interrupt_reply() if self.state in (State.THINKING, State.SPEAKING) else []
        if self.state is State.LISTENING:
            effects += [Send(AudioClear())]
            self._endpointer.reset()
        if self.state is not State.IDLE:
            effects += self._back_to_idle()
        self._canceled.discard(TTS_CHAT_ID)
        self._busy = self._tts = True
        return effects + [Send(GenerateAudio(piece)) for piece in pieces]

    def new_conversation(self, now: float) -> list[Effect]:
        """Forget the conversation: the next chat.update starts a fresh one."""
        self.conversation_id = None
        effects: list[Effect] = [RememberConversation(None)]
        if self.state is not State.CONNECTING:
            effects.append(Reconnect("new conversation", ReconnectAfter.NOW))
        return effects
