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

What the canceller still lets through is caught by ``coze_edge.core.echo.EchoGate``, which
also decides when to start a fresh canceller: residual echo (a cleaned block that follows
the speaker's recent audio at the echo's delay) becomes silence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from coze_edge.adapters.resample import StreamResampler
from coze_edge.core.audio import AudioFormat
from coze_edge.core.echo import EchoGate

if TYPE_CHECKING:
    from livekit.rtc import AudioFrame, AudioProcessingModule

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install coze-edge[aec]"


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
    (the speaker's); it is resampled to ``rate``. With echo cancellation, blocks that
    are residual echo become silence, unless ``residual_echo_check`` is False (for
    measuring what the check catches).

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
        residual_echo_check: bool = True,
    ) -> None:
        module_class, self._frame_class = _load()
        if rate <= 0 or rate % 100:
            raise ValueError(f"rate must be a positive multiple of 100 Hz, got {rate}")
        self.rate = rate
        self.echo_cancellation = echo_cancellation
        self._frame_bytes = AudioFormat(rate).frame_bytes(10)
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
        self._gate = EchoGate(rate) if echo_cancellation else None
        self._residual_echo_check = residual_echo_check
        self.fresh_starts = 0
        self.echo_blocks = 0  # cleaned blocks that were residual echo, silenced
        self.double_talk_blocks = 0
        self.on_double_talk: Callable[[], None] | None = None
        """Called (in ``process_capture``) for each block in which someone talks over the
        speaker (``EchoGate.double_talk``): the canceller suppresses the start of that
        voice along with the echo, so the cleaned audio says so only later."""
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
            if self._gate is not None and self._gate.played(pcm):  # sound after a pause
                self._module = self._module_class(**self._options)
                self.fresh_starts += 1
            self._module.process_reverse_stream(self._frame(pcm))

    def path_moved(self) -> None:
        """The sound devices lost or repeated audio (an underrun or overrun): the echo's
        delay may have jumped. A fresh canceller takes over (as after a pause: a converged
        one leaks until it re-adapts), and the blocks of the next moments are held for
        echo (``EchoGate.path_moved``)."""
        if self._gate is None:
            return
        self._module = self._module_class(**self._options)
        self.fresh_starts += 1
        if self._residual_echo_check:
            self._gate.path_moved()

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
        if (
            self._residual_echo_check
            and self._gate is not None
            and self._gate.residual_echo(pcm, out, delay=self.delay_samples)
        ):
            self.echo_blocks += 1
            return bytes(len(out))
        if self._gate is not None and self._gate.double_talk:
            self.double_talk_blocks += 1
            if self.on_double_talk is not None:
                self.on_double_talk()
        return out

    def _frame(self, pcm: bytes) -> AudioFrame:
        return self._frame_class(bytearray(pcm), self.rate, 1, len(pcm) // 2)
