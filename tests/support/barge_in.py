"""
Barge-in measured on PulseAudio (scripts/audio_run.py, scripts/aec-check): when the user's
voice began, when the reply went silent, and, from taps inside the daemon, where the time
in between went.

The recordings (``parec`` on the monitors, 24 kHz mono s16le) give the total as a user
would hear it. The taps give the parts on the daemon's own clock (the event loop's, which
is ``time.monotonic()``): the user's onset in the microphone stream as PortAudio delivered
it, the cut (the state leaves SPEAKING in the same step as the playback flush), and the
first silent block handed to the speaker's device after it. What the taps cannot see is
the sound server's buffering on both sides: the total minus the parts.

The taps also judge the cleaned microphone audio as the session does (webrtcvad per 20 ms
frame, blocks under the barge-in level count as silence), so that a run says how close the
reply's echo alone came to barging in: the longest ``vad.barge_in_start_ms`` it would
have met (``echo_reach_ms``). Echo alone is what the microphone hears while the reply plays
and the user is silent; the canceller and the echo gate do not depend on that setting, so
one run answers for every value of it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.core.audio import FrameSplitter, rms
from coze_edge.core.endpointer import SpeechDetector
from coze_edge.core.status import State

FRAME_MS = 20
"""The endpointer's frame."""
REACH_MAX_MS = 600
"""Echo reach is looked for up to this ``barge_in_start_ms``."""

QUIET_RMS = 300.0
"""A 10 ms window quieter than this (-41 dBFS) is silence; the reply's speech is at -20 dBFS
(median of its loud windows), so its own pauses are what falls below."""


def window_rms(raw: bytes, rate: int = 24000) -> npt.NDArray[np.float64]:
    """The RMS of each whole 10 ms window of s16le audio."""
    step = rate // 100
    samples = np.frombuffer(raw[: len(raw) // (2 * step) * 2 * step], dtype="<i2")
    levels: npt.NDArray[np.float64] = np.sqrt(
        np.mean(samples.astype(np.float64).reshape(-1, step) ** 2, axis=1)
    )
    return levels


CUT_RMS = 2.0
"""A 10 ms window quieter than this is the digital silence of a cut reply; a reply ducked by
40 dB stays above it while it speaks."""


def loud_windows(raw: bytes, rate: int = 24000, quiet: float = QUIET_RMS) -> npt.NDArray[np.bool_]:
    """Which 10 ms windows of a recording carry sound (are louder than ``quiet``)."""
    loud: npt.NDArray[np.bool_] = window_rms(raw, rate) > quiet
    return loud


def first_sound(heard: bytes, user: bytes, rate: int = 24000) -> int | None:
    """
    The sample of ``heard`` where the first sound of ``user`` (what was played into the
    microphone, as loud as the user) lies; ``heard`` may also carry the reply's echo, so
    the user is found by correlation. None if ``heard`` is too short to hold half of it.
    """
    mic = np.frombuffer(heard[: len(heard) // 2 * 2], dtype="<i2").astype(np.float64)
    voice = np.frombuffer(user[: len(user) // 2 * 2], dtype="<i2").astype(np.float64)
    if len(mic) < len(voice) // 2 or not len(voice):
        return None
    size = 1 << int(np.ceil(np.log2(len(mic) + len(voice))))
    scores = np.fft.irfft(np.fft.rfft(mic, size) * np.conj(np.fft.rfft(voice, size)), size)
    start = int(np.argmax(scores[: len(mic)]))  # where the user's audio begins
    return start + int(np.flatnonzero(loud_windows(user, rate))[0]) * (rate // 100)


def onset_to_silence(
    heard: bytes,
    played: bytes,
    user: bytes,
    quiet_s: float = 1.0,
    *,
    level: float = QUIET_RMS,
) -> float | None:
    """
    Milliseconds from the user's first sound at the microphone (``heard``) to the reply
    (``played``) going silent (below ``level``: a ducked reply is silent by the default
    level, only a cut one by :data:`CUT_RMS`) and staying so for ``quiet_s`` (the next reply
    waits for the user to finish). All 24 kHz mono s16le; both recordings start together,
    each a few milliseconds late by its own latency.
    """
    sample = first_sound(heard, user)
    if sample is None:
        return None
    onset = sample // 240
    speaker, quiet = loud_windows(played, quiet=level), int(quiet_s * 100)
    for window in range(onset, len(speaker) - quiet):
        if not speaker[window : window + quiet].any():
            return (window - onset) * 10.0
    return None


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def p50_max(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.0f} / {max(values):.0f} ms"


@dataclass
class Parts:
    """One barge-in on the daemon's clock, in milliseconds."""

    onset_to_cut: float
    """The user's first sound delivered by PortAudio to the cut: the speech the VAD
    needs, the rest of the microphone block it ends in, the daemon's own work."""
    cut_to_device: float
    """The cut to the first silent block handed to the speaker's device (the next
    callback of the output stream)."""
    onset_to_duck: float | None
    """The user's first sound to the first ducked block handed to the device (None: the
    reply was not ducked)."""


class Probe:
    """
    Taps a running daemon's microphone (before any cleaning) and speaker (what is handed
    to the device), so that one barge-in can be taken apart. Install after the daemon
    started (the echo canceller's hooks are in place then) and before the microphone
    opens or while it runs: both hooks are looked up on every block.
    """

    KEEP_S = 30.0

    def __init__(
        self,
        microphone: Microphone,
        speaker: Speaker,
        clock: Callable[[], float],
        rate: int,
        *,
        vad: SpeechDetector,
        min_rms: float,
    ) -> None:
        """``vad`` and ``min_rms``: the session's detector and barge-in level."""
        self._clock = clock
        self._rate = rate
        self._captured: list[tuple[float, int, bytes]] = []  # (tapped at, end position, raw)
        self._position = 0  # capture stream samples so far
        self._silent_renders: list[float] = []  # when each all-zero device block was handed
        self._marked_at = 0
        self._marked_time = 0.0
        self._speaker = speaker
        self._vad = vad
        self._min_rms = min_rms
        self._frames = FrameSplitter(rate * FRAME_MS // 1000 * 2)
        self._judged: list[tuple[float, bool]] = []  # (tapped at, speech loud enough)
        self._ducks: list[float] = []  # when the speaker began each duck
        self._xruns: list[float] = []  # when a speaker underrun or microphone overrun was seen
        self._counts = (microphone.overruns, speaker.underruns)
        capture, render = microphone.on_capture, speaker.on_render

        def xrun_seen() -> None:
            counts = (microphone.overruns, speaker.underruns)
            if counts != self._counts:
                self._counts = counts
                self._xruns.append(self._clock())

        def on_capture(block: bytes) -> bytes:
            now = self._clock()
            xrun_seen()
            self._position += len(block) // 2
            self._captured.append((now, self._position, block))
            keep = self.KEEP_S * self._rate
            while self._captured and self._position - self._captured[0][1] > keep:
                del self._captured[0]
            cleaned = capture(block) if capture is not None else block
            loud = rms(cleaned) >= self._min_rms
            for frame in self._frames.push(cleaned):
                self._judged.append((now, loud and self._vad.is_speech(frame)))
            return cleaned

        def on_render(pcm: bytes, rate: int) -> None:
            xrun_seen()
            ducked = speaker.ducked_at
            if ducked is not None and (not self._ducks or ducked != self._ducks[-1]):
                self._ducks.append(ducked)
            if pcm.count(0) == len(pcm):
                now = self._clock()
                self._silent_renders.append(now)
                while self._silent_renders[0] < now - self.KEEP_S:
                    del self._silent_renders[0]
            if render is not None:
                render(pcm, rate)

        microphone.on_capture = on_capture
        speaker.on_render = on_render

    def mark(self) -> None:
        """The user is about to speak: the onset is looked for in what comes after."""
        self._marked_at = self._position
        self._marked_time = self._clock()

    def parts(self, user: bytes, cut_at: float) -> Parts | None:
        """Take the barge-in apart: ``user`` as played into the microphone (at the capture
        rate), ``cut_at`` when the state left SPEAKING (the daemon's clock)."""
        blocks = [(t, end, raw) for t, end, raw in self._captured if end > self._marked_at]
        if not blocks:
            return None
        start = blocks[0][1] - len(blocks[0][2]) // 2
        sample = first_sound(b"".join(raw for _, _, raw in blocks), user, self._rate)
        if sample is None:
            return None
        onset = start + sample
        tapped, end = next((t, e) for t, e, _ in blocks if e > onset)
        onset_at = tapped - (end - onset) / self._rate
        device = next((t for t in self._silent_renders if t >= cut_at), None)
        if device is None:
            return None
        ducked = self._speaker.ducked_at
        duck = None if ducked is None or ducked < self._marked_time else ducked - onset_at
        return Parts(
            (cut_at - onset_at) * 1000,
            (device - cut_at) * 1000,
            None if duck is None else duck * 1000,
        )

    def since_xrun(self, at: float) -> float | None:
        """Seconds from the last speaker underrun or microphone overrun before ``at`` (the
        daemon's clock) to it; None: there was none."""
        before = [t for t in self._xruns if t <= at]
        return at - before[-1] if before else None

    def ducks(self, spans: Sequence[tuple[float, float]]) -> int:
        """How often the reply was ducked in ``spans`` (from, to on the daemon's clock)."""
        return sum(1 for t in self._ducks for start, end in spans if start <= t < end)

    def echo_reach_ms(self, spans: Sequence[tuple[float, float]]) -> int:
        """
        The longest ``barge_in_start_ms`` (in whole frames, up to :data:`REACH_MAX_MS`) that
        the microphone's audio in ``spans`` (echo alone: from, to on the daemon's clock)
        would have met: at least that much speech inside an onset window of twice as much
        (the endpointer's rule). 0: no frame there was loud speech.
        """
        reach = 0
        for start, end in spans:
            speech = np.array([s for t, s in self._judged if start <= t < end], dtype=np.int64)
            sums = np.concatenate(([0], np.cumsum(speech)))
            for frames in range(reach // FRAME_MS + 1, REACH_MAX_MS // FRAME_MS + 1):
                window = min(2 * frames, len(speech))
                if window < frames or (sums[window:] - sums[:-window]).max() < frames:
                    break
                reach = frames * FRAME_MS
        return reach


def echo_alone(
    states: Sequence[tuple[float, State, str | None]], users: Sequence[float], now: float
) -> list[tuple[float, float]]:
    """The spans of a run up to ``now`` in which the microphone heard the reply's echo
    alone: each SPEAKING state, up to the moment the user began to talk over it
    (``users``)."""
    spans: list[tuple[float, float]] = []
    ends = [t for t, _, _ in states[1:]] + [now]
    for (start, state, _), end in zip(states, ends, strict=True):
        if state is State.SPEAKING and start < now:
            spans.append((start, min([end, now, *(t for t in users if start <= t < end)])))
    return spans
