"""
Turns per-frame speech decisions into utterances: where speech starts, and where it ends.

Onset: at least ``start_ms`` of speech frames inside the last ``2 * start_ms`` of audio (the
onset window). Requiring only half the window to be speech lets the short gaps inside
syllables through, while a single click or cough shorter than ``start_ms`` never opens a
turn. The utterance then begins at the first speech frame of that window, and the
``SpeechStarted`` event carries ``pre_roll_ms`` of the audio before it plus everything from
it up to now, so the soft beginning of the first word is never lost.

Early onset (``early_ms``, off unless set): while the window holds at least ``early_ms`` of
speech but not yet ``start_ms``, speech is likely (``SpeechLikely``, once); if the window
then falls back below ``early_ms`` without an onset, it is not (``SpeechUnlikely``). The
device playing a reply lowers it at the first and restores it at the second, so it yields
to the user before the onset is certain, and its own echo, taken for speech, costs a dip.

End: ``end_silence_ms`` of consecutive non-speech frames. The trailing silence still comes
out as ``SpeechContinues`` (Coze hears the pause), then ``SpeechEnded``.

Every byte handed out is a contiguous piece of the input: the audio of one utterance, joined
in order, is exactly the input from its first pre-roll byte to its last frame.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from coze_edge.core.audio import CAPTURE, AudioFormat, FrameSplitter, PreRoll

log = logging.getLogger(__name__)


class SpeechDetector(Protocol):
    """Decides, one frame at a time, whether a frame holds speech."""

    def is_speech(self, frame: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """An utterance began; ``audio`` (pre-roll and onset frames) goes upstream first."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechContinues:
    """One more frame of the current utterance (trailing silence included)."""

    audio: bytes


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The utterance is over: enough silence followed it."""


@dataclass(frozen=True, slots=True)
class SpeechLikely:
    """At least ``early_ms`` of speech in the onset window, not yet an onset."""


@dataclass(frozen=True, slots=True)
class SpeechUnlikely:
    """After ``SpeechLikely``: less than ``early_ms`` of speech in the window again, and no
    onset came (an onset ends the likely speech without this event)."""


EndpointEvent = SpeechStarted | SpeechContinues | SpeechEnded | SpeechLikely | SpeechUnlikely


class Endpointer:
    """
    Feeds microphone audio through a detector and reports utterance edges.

    Sans-I/O: audio in, events out; no clock (time is the audio itself). Durations are
    rounded up to whole ``frame_ms`` frames. ``listen_grace_ms``: after ``force_start`` (a
    turn opened by command, before anyone spoke) this much silence may pass before the
    first speech frame, so the user has time to begin; once speech was heard,
    ``end_silence_ms`` applies again.
    """

    def __init__(
        self,
        detector: SpeechDetector,
        *,
        fmt: AudioFormat = CAPTURE,
        frame_ms: int = 20,
        pre_roll_ms: int = 300,
        start_ms: int = 60,
        end_silence_ms: int = 700,
        listen_grace_ms: int = 3000,
    ) -> None:
        if frame_ms <= 0 or fmt.frame_bytes(frame_ms) == 0:
            raise ValueError(f"frame_ms must give whole frames, got {frame_ms}")
        for name, value in (
            ("pre_roll_ms", pre_roll_ms),
            ("start_ms", start_ms),
            ("end_silence_ms", end_silence_ms),
            ("listen_grace_ms", listen_grace_ms),
        ):
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {value}")
        self._detector = detector
        self._fmt = fmt
        self._frame_ms = frame_ms
        self._splitter = FrameSplitter(fmt.frame_bytes(frame_ms))
        self._pre_roll_bytes = fmt.frame_bytes(pre_roll_ms)
        self._pre_roll = PreRoll(self._pre_roll_bytes)
        self._end_frames = self._frames(end_silence_ms)
        self._grace_frames = max(self._end_frames, self._frames(listen_grace_ms))
        self._start_frames = 1
        self._early_frames = 0  # 0: no early onset
        self._likely = False  # SpeechLikely was reported, and neither onset nor its end
        self._window: deque[tuple[bytes, bool]] = deque(maxlen=2)
        self.set_start_ms(start_ms)
        self._in_speech = False
        self._heard_speech = False  # in this utterance; False only after force_start
        self._silent_frames = 0

    def _frames(self, ms: int) -> int:
        return max(1, math.ceil(ms / self._frame_ms))

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def speech_likely(self) -> bool:
        """``SpeechLikely`` was reported, and neither an onset nor ``SpeechUnlikely`` (nor a
        reset) came since."""
        return self._likely

    @property
    def frame_bytes(self) -> int:
        return self._splitter.size

    def set_start_ms(self, ms: int) -> None:
        """Change how much speech declares an onset (raised while the device plays)."""
        if ms < 0:
            raise ValueError(f"start_ms must not be negative, got {ms}")
        self._start_frames = self._frames(ms)
        window = 2 * self._start_frames
        if window != self._window.maxlen:
            old = list(self._window)
            self._window = deque(maxlen=window)
            for frame, speech in old:
                self._slide(frame, speech)

    def set_early_ms(self, ms: int) -> None:
        """Change how much speech makes an onset likely (0: never reported). Speech that
        was likely is forgotten, without a ``SpeechUnlikely``."""
        if ms < 0:
            raise ValueError(f"early_ms must not be negative, got {ms}")
        self._early_frames = self._frames(ms) if ms else 0
        self._likely = False

    def reset(self) -> None:
        """Forget everything heard so far (after mute, cancel, reconnect, a commit), also
        speech that was likely (without a ``SpeechUnlikely``)."""
        self._splitter.clear()
        self._pre_roll.clear()
        self._window.clear()
        self._likely = False
        self._in_speech = False
        self._heard_speech = False
        self._silent_frames = 0

    def force_start(self) -> SpeechStarted:
        """Open an utterance now, without waiting for speech; carries the pre-roll."""
        history = self._pre_roll.take() + b"".join(frame for frame, _ in self._window)
        self._window.clear()
        self._likely = False
        self._begin(heard_speech=False)
        log.debug("= speech forced")
        return SpeechStarted(self._last_pre_roll(history))

    def feed(self, block: bytes) -> list[EndpointEvent]:
        """Audio in the endpointer's format, any length; returns the events it causes."""
        events: list[EndpointEvent] = []
        for frame in self._splitter.push(block):
            speech = self._detector.is_speech(frame)
            if self._in_speech:
                events += self._during_speech(frame, speech)
            else:
                events += self._before_speech(frame, speech)
        return events

    # ------------------------------------------------------------------ internals

    def _slide(self, frame: bytes, speech: bool) -> None:
        """Append to the onset window; what falls out of it goes to the pre-roll."""
        if len(self._window) == self._window.maxlen:
            self._pre_roll.push(self._window[0][0])
        self._window.append((frame, speech))

    def _before_speech(self, frame: bytes, speech: bool) -> list[EndpointEvent]:
        self._slide(frame, speech)
        heard = sum(s for _, s in self._window)
        if heard < self._start_frames:
            early = self._early_frames
            if early and not self._likely and heard >= early:
                self._likely = True
                log.debug("= speech likely")
                return [SpeechLikely()]
            if self._likely and heard < early:
                self._likely = False
                log.debug("= speech unlikely")
                return [SpeechUnlikely()]
            return []
        self._likely = False
        frames = list(self._window)
        first = next(i for i, (_, s) in enumerate(frames) if s)
        leading = b"".join(f for f, _ in frames[:first])
        onset = b"".join(f for f, _ in frames[first:])
        before = self._last_pre_roll(self._pre_roll.take() + leading)
        self._window.clear()
        self._begin(heard_speech=True)
        log.debug("= speech started (%d ms pre-roll)", self._fmt.duration_ms(len(before)))
        return [SpeechStarted(before + onset)]

    def _during_speech(self, frame: bytes, speech: bool) -> list[EndpointEvent]:
        events: list[EndpointEvent] = [SpeechContinues(frame)]
        if speech:
            self._heard_speech = True
            self._silent_frames = 0
            return events
        self._silent_frames += 1
        limit = self._end_frames if self._heard_speech else self._grace_frames
        if self._silent_frames >= limit:
            self._in_speech = False
            self._heard_speech = False
            self._silent_frames = 0
            log.debug("= speech ended")
            events.append(SpeechEnded())
        return events

    def _begin(self, *, heard_speech: bool) -> None:
        self._pre_roll.clear()
        self._in_speech = True
        self._heard_speech = heard_speech
        self._silent_frames = 0

    def _last_pre_roll(self, history: bytes) -> bytes:
        if self._pre_roll_bytes == 0:
            return b""
        return history[-self._pre_roll_bytes :]
