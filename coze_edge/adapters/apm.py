"""
In-process echo cancellation, noise suppression, high-pass filter and automatic gain:
WebRTC's audio processing module, as ``livekit.rtc.AudioProcessingModule`` (the optional
extra ``coze-edge[aec]``; imported only when an ``AudioProcessor`` is made).

The echo canceller learns the path from the speaker to the microphone by comparing what
the microphone hears with what the speaker was given (the *render* or far-end stream).
Feed the render stream at the moment audio is handed to the sound device; the canceller
estimates the delay to the microphone itself (a delay hint from PortAudio's reported
latencies made it worse on the test echo path, so none is given). Both streams go through the
module in 10 ms frames. The module itself delays the capture a little: measured at 16 kHz,
4 ms (64 samples) with echo cancellation on, 6 ms with noise suppression; the high-pass
filter alone adds no delay.

Each reply after a pause starts with a fresh canceller. A converged canceller can let the
start of the next reply through: on a PulseAudio echo path (scripts/aec-check) the first
0.4-0.8 s of a later reply leaked at up to -18 dBFS against a -10 dBFS echo, after user
speech in the pause and also when the echo's delay moved by a few samples while nothing
played (separate clocks). A fresh one starts with conservative suppression and converges
within the first syllables; measured on the same path, 24 replies all stayed below
-58 dBFS, with and without a drifting delay.

What the canceller still lets through is caught by comparing each cleaned block with what
the speaker played in the last half second, at the echo's delay (found in the microphone's
audio before cleaning, as render and capture stream positions): a block that follows the
speaker's audio there (normalized cross-correlation above ECHO_LIKENESS_MAX) is residual
echo and becomes silence. When the echo's delay jumps mid-reply (a sample dropped or
repeated somewhere between the speaker and the microphone), the canceller leaks at -20 to
-35 dBFS for up to 360 ms before it has re-adapted: long enough to pass for the user
barging in. Measured offline (the reply through a synthetic echo path of 50-250 ms, render
blocks fed with +-20 ms of jitter, a 1-10 ms jump in the delay at a random moment; 60
runs): a leak filled at least 240 ms of a 480 ms window above -45 dBFS (what a barge-in
needs) in 23 runs without the check and in 5 with it. The user talking over the reply
(30 runs) lost 4 of 628 blocks to it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import numpy as np

from coze_edge.adapters.resample import StreamResampler
from coze_edge.core.audio import AudioFormat, alignment_scores, rms

if TYPE_CHECKING:
    from livekit.rtc import AudioFrame, AudioProcessingModule

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install coze-edge[aec]"

FRESH_AFTER_SILENCE_S: Final = 1.0
"""Render audio after at least this much silence starts a fresh echo canceller."""
SILENT_PEAK: Final = 32
"""A render frame whose samples all stay below this (-60 dBFS) is silence."""
ECHO_LIKENESS_MAX: Final = 0.5
"""A cleaned block that correlates better than this with the speaker's recent audio is
residual echo (see the module's notes)."""
RENDER_HISTORY_S: Final = 0.5
"""How much of the speaker's audio a cleaned block is compared with: the echo's delay
(sound device buffers and the way back to the microphone) must be shorter."""
JUDGED_MIN_RMS: Final = 100.0
"""Blocks quieter than this (-50 dBFS) are not judged: too faint to matter."""
MODULE_DELAY_MAX: Final = 160
"""The module's own delay on the capture stream, at most (samples; measured: 64 at 16 kHz)."""
DELAY_SLACK: Final = 48
"""How far (samples) from the echo's delay in the microphone's audio residual echo is
looked for: a delay that has just jumped by a few milliseconds is within it."""
ECHO_LOCK: Final = 0.8
"""The microphone's audio follows the speaker's this closely where the echo's delay is
found (echo alone correlates at 0.95-1.0 on the test paths)."""
LAG_EVERY: Final = 5
"""Once found, the echo's delay is looked for again in every fifth block (it may drift)."""
JUDGED_MIN_MS: Final = 20
"""Shorter chunks are not judged: too few samples for a correlation to mean anything."""


class ApmUnavailable(ImportError):
    """The ``livekit`` package (WebRTC's audio processing) is not installed or won't load."""


def _load() -> tuple[type[AudioProcessingModule], type[AudioFrame]]:
    try:
        from livekit.rtc import AudioFrame, AudioProcessingModule
    except ImportError as exc:
        raise ApmUnavailable(
            f"echo cancellation needs the livekit package: {INSTALL_HINT} ({exc})"
        ) from exc
    return AudioProcessingModule, AudioFrame


def available() -> bool:
    """True if ``AudioProcessor`` can be used (``livekit`` imports)."""
    try:
        _load()
    except ImportError:
        return False
    return True


class AudioProcessor:
    """
    Cleans microphone audio (mono s16le at ``rate``) with WebRTC's audio processing.

    ``process_capture`` returns exactly as many bytes as it is given. Audio goes through
    the module in whole 10 ms frames. The first time a chunk leaves part of a frame
    waiting, 10 ms of silence is inserted and the output runs 10 ms late from then on,
    which covers every later remainder; this never happens while every chunk is a whole
    number of 10 ms frames, as the 20 ms VAD frames and 60 ms microphone blocks are.
    ``delay_samples`` says how much was inserted. The render stream may come at any rate
    (the speaker's); it is resampled to ``rate``.

    About 70 microseconds of CPU per 10 ms frame pair (render and capture) here.
    """

    def __init__(
        self,
        *,
        rate: int = 16000,
        echo_cancellation: bool = True,
        noise_suppression: bool = False,
        high_pass: bool = False,
        auto_gain: bool = False,
    ) -> None:
        module_class, self._frame_class = _load()
        if rate <= 0 or rate % 100:
            raise ValueError(f"rate must be a positive multiple of 100 Hz, got {rate}")
        self.rate = rate
        self.echo_cancellation = echo_cancellation
        self._fmt = AudioFormat(rate)
        self._frame_bytes = self._fmt.frame_bytes(10)
        self._module_class = module_class
        self._options = {
            "echo_cancellation": echo_cancellation,
            "noise_suppression": noise_suppression,
            "high_pass_filter": high_pass,
            "auto_gain_control": auto_gain,
        }
        try:
            self._module = module_class(**self._options)
        except ImportError as exc:  # livekit loads its native library on first use
            raise ApmUnavailable(
                f"livekit's native library does not load: {exc}; reinstall: {INSTALL_HINT}"
            ) from exc
        self._render_heard = False
        self._silent_frames = 0
        self._fresh_after = int(FRESH_AFTER_SILENCE_S * 100)  # in 10 ms frames
        self.fresh_starts = 0
        self.echo_blocks = 0  # cleaned blocks that were residual echo, silenced
        self._history = bytearray()  # the speaker's last RENDER_HISTORY_S, at ``rate``
        self._history_bytes = self._fmt.frame_bytes(int(RENDER_HISTORY_S * 1000))
        self._rendered = 0  # render stream samples (at ``rate``) gone into the history
        self._captured = 0  # capture stream samples processed
        self._echo_lag: int | None = None  # capture position minus the render position heard
        self._heard_blocks = 0
        self._judged_min_bytes = self._fmt.frame_bytes(JUDGED_MIN_MS)
        self._capture_pending = b""
        self._ready = bytearray()  # processed capture audio not yet returned
        self._delay_bytes = 0
        self._render_pending = b""
        self._render_rate: int | None = None
        self._render_resampler: StreamResampler | None = None
        log.debug(
            "= audio processing at %d Hz: aec=%s ns=%s hpf=%s agc=%s",
            rate,
            echo_cancellation,
            noise_suppression,
            high_pass,
            auto_gain,
        )

    @property
    def delay_samples(self) -> int:
        """Silence inserted ahead of the capture stream to carry partial frames."""
        return self._delay_bytes // 2

    def process_render(self, pcm: bytes, rate: int) -> None:
        """The far-end (what the speaker is given now): mono s16le at ``rate``, any length."""
        if rate != self._render_rate:
            if rate <= 0:
                raise ValueError(f"rate must be positive, got {rate}")
            self._render_rate = rate
            self._render_pending = b""
            self._render_resampler = None if rate == self.rate else StreamResampler(rate, self.rate)
        if self._render_resampler is not None:
            pcm = self._render_resampler.process(pcm)
        data = self._render_pending + pcm if self._render_pending else pcm
        size = self._frame_bytes
        whole = len(data) - len(data) % size
        self._render_pending = data[whole:]
        for start in range(0, whole, size):
            pcm = data[start : start + size]
            if self.echo_cancellation:
                self._before_render(pcm)
                self._history += pcm
                self._rendered += len(pcm) // 2
            self._module.process_reverse_stream(self._frame(pcm))
        if len(self._history) > self._history_bytes:
            del self._history[: len(self._history) - self._history_bytes]

    def _before_render(self, frame: bytes) -> None:
        """Start a fresh canceller when sound follows a pause (see the module's notes)."""
        samples = np.frombuffer(frame, dtype="<i2")
        if int(samples.max()) < SILENT_PEAK and int(samples.min()) > -SILENT_PEAK:
            self._silent_frames += 1
            return
        if self._render_heard and self._silent_frames >= self._fresh_after:
            self._module = self._module_class(**self._options)
            self.fresh_starts += 1
        self._render_heard = True
        self._silent_frames = 0

    def process_capture(self, pcm: bytes) -> bytes:
        """Near-end microphone audio in, cleaned audio of the same length out."""
        data = self._capture_pending + pcm if self._capture_pending else pcm
        size = self._frame_bytes
        whole = len(data) - len(data) % size
        self._capture_pending = data[whole:]
        for start in range(0, whole, size):
            frame = self._frame(data[start : start + size])
            self._module.process_stream(frame)
            self._ready += frame.data.tobytes()
        if len(self._ready) < len(pcm):
            # Part of a frame is waiting, for the first time (later on the delay covers it:
            # a remainder is always shorter than a frame). Run one frame late from now on.
            self._ready[0:0] = bytes(size)
            self._delay_bytes = size
            log.debug("= capture runs 10 ms late from now on, to carry partial frames")
        out = bytes(self._ready[: len(pcm)])
        del self._ready[: len(pcm)]
        heard_at = self._captured
        self._captured += len(pcm) // 2
        if self._residual_echo(pcm, out, heard_at):
            self.echo_blocks += 1
            return bytes(len(out))
        return out

    def _residual_echo(self, heard: bytes, cleaned: bytes, heard_at: int) -> bool:
        """
        True if ``cleaned`` is the speaker's audio that the canceller let through: it
        follows the speaker's recent audio closely, at the echo's delay. ``heard`` is the
        same block before cleaning, which starts at sample ``heard_at`` of the capture
        stream. Looking only at the echo's delay, a voice that merely resembles the
        speaker's (same pitch, say) at some other delay does not count.
        """
        if (
            not self.echo_cancellation
            or len(cleaned) < self._judged_min_bytes
            or self._silent_frames * self._frame_bytes >= self._history_bytes  # nothing played
        ):
            return False
        self._heard_blocks += 1
        relock = self._echo_lag is None or self._heard_blocks % LAG_EVERY == 0
        relock = relock and rms(heard) >= JUDGED_MIN_RMS
        judge = rms(cleaned) >= JUDGED_MIN_RMS
        if not (relock or judge):
            return False
        history = bytes(self._history)
        oldest = self._rendered - len(history) // 2  # render stream position of history[0]
        if relock:
            # Where the speaker's audio is in the microphone's: the render stream position
            # that the capture stream position hears, as a difference of the two.
            scores = alignment_scores(heard, history)
            if scores.size and scores.max() >= ECHO_LOCK:
                self._echo_lag = heard_at - (oldest + int(np.argmax(scores)))
        if self._echo_lag is None or not judge:
            return False
        # The cleaned block is the heard audio of a little earlier: the module's own delay
        # (a few ms) and any frame inserted for partial frames. Only the stretch of history
        # around the echo's delay is compared.
        at = heard_at - self.delay_samples - self._echo_lag - oldest
        low, high = max(0, at - MODULE_DELAY_MAX - DELAY_SLACK), at + DELAY_SLACK + 1
        near = history[2 * low : 2 * high + len(cleaned) - 2]
        scores = alignment_scores(cleaned, near)
        return bool(scores.size and scores.max() > ECHO_LIKENESS_MAX)

    def _frame(self, pcm: bytes) -> AudioFrame:
        return self._frame_class(bytearray(pcm), self.rate, 1, len(pcm) // 2)
