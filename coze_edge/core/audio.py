"""
PCM arithmetic: formats, gain, level, echo likeness, framing and the pre-roll ring. Pure
computation.

All audio inside coze_edge is signed little-endian integer PCM ("s16le" unless a format
says otherwise); a *sample frame* is one sample for every channel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # numpy is imported where it is used: a device that only listens never
    import numpy as np  # loads it (about 18 MB of resident memory)
    import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """Rate, channel count and bytes per sample of a PCM stream."""

    rate: int
    """Sample frames per second."""

    channels: int = 1

    sample_width: int = 2
    """Bytes per sample: 2 is 16-bit."""

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.channels < 1:
            raise ValueError(f"channels must be at least 1, got {self.channels}")
        if self.sample_width not in (1, 2, 3, 4):
            raise ValueError(f"sample_width must be 1 to 4 bytes, got {self.sample_width}")

    @property
    def frame_size(self) -> int:
        """Bytes per sample frame (all channels)."""
        return self.channels * self.sample_width

    def bytes_per_ms(self) -> float:
        """Bytes of audio per millisecond (32.0 for 16 kHz mono s16le)."""
        return self.rate * self.frame_size / 1000

    def frame_bytes(self, ms: int) -> int:
        """Bytes of ``ms`` milliseconds, rounded down to whole sample frames."""
        return self.rate * ms // 1000 * self.frame_size

    def duration_ms(self, nbytes: int) -> float:
        """Milliseconds that ``nbytes`` of audio last."""
        return nbytes * 1000 / (self.rate * self.frame_size)


CAPTURE: Final = AudioFormat(16000)
"""What microphones deliver and Coze receives: 16 kHz mono s16le."""


def gain_factor(percent: int) -> float:
    """
    The amplitude factor for a volume in percent (clamped to 0..100).

    Loudness is perceived roughly logarithmically, so a linear amplitude scale crowds all
    the audible change into the bottom of the range; squaring the fraction spreads it out
    (50 % is -12 dB, 25 % is -24 dB) while keeping 0 silent and 100 untouched.
    """
    fraction = min(max(percent, 0), 100) / 100
    return fraction * fraction


def apply_gain(pcm: bytes, percent: int) -> bytes:
    """
    Scale s16le audio for a volume in percent.

    100 returns ``pcm`` itself (byte for byte), 0 returns silence of the same length;
    results are rounded and clipped to the 16-bit range, never wrapped. A trailing odd
    byte (half a sample) is kept as it is.
    """
    if percent >= 100:
        return pcm
    whole = len(pcm) - len(pcm) % 2
    if percent <= 0:
        return bytes(whole) + pcm[whole:]
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2", count=whole // 2).astype(np.float64)
    scaled = np.clip(np.rint(samples * gain_factor(percent)), -32768, 32767)
    return scaled.astype("<i2").tobytes() + pcm[whole:]


DUCK_RAMP_MS: Final = 5
"""How long a change of the speaker's ducking takes (a step would click)."""


class Ducking:
    """
    A gain in dB below the volume (barge-in's ``DuckPlayback``), applied block by block to
    s16le audio on its way to the device. A change of gain ramps over the first
    ``ramp_samples`` of the next block (a step would click), then holds. 0 dB returns the
    audio itself.
    """

    def __init__(self, ramp_samples: int) -> None:
        if ramp_samples < 1:
            raise ValueError(f"ramp_samples must be positive, got {ramp_samples}")
        self._ramp = ramp_samples
        self._gain = 1.0  # where the last block ended
        self._target = 1.0

    @property
    def gain(self) -> float:
        """The factor the last block ended at (1.0: not ducked)."""
        return self._gain

    def set_db(self, db: float) -> None:
        """From the next block on, play ``db`` dB (0 or less) below the volume."""
        self._target = 10 ** (min(db, 0.0) / 20)

    def apply(self, pcm: bytes) -> bytes:
        gain, target = self._gain, self._target
        if gain == target == 1.0:
            return pcm
        import numpy as np

        whole = len(pcm) - len(pcm) % 2
        samples = np.frombuffer(pcm, dtype="<i2", count=whole // 2).astype(np.float64)
        gains: npt.NDArray[np.float64] = np.full(len(samples), target)
        steps = min(self._ramp, len(samples))
        if gain != target and steps:
            gains[:steps] = gain + (target - gain) * np.arange(1, steps + 1) / steps
        self._gain = target if steps else gain
        scaled = np.clip(np.rint(samples * gains), -32768, 32767).astype("<i2")
        return scaled.tobytes() + pcm[whole:]


def amplify(pcm: bytes, db: float) -> bytes:
    """
    s16le audio made ``db`` decibels louder (softer below 0), rounded and clipped to the
    16-bit range, never wrapped; 0 dB returns ``pcm`` itself. A trailing odd byte is kept.
    """
    if db == 0:
        return pcm
    import numpy as np

    whole = len(pcm) - len(pcm) % 2
    samples = np.frombuffer(pcm, dtype="<i2", count=whole // 2).astype(np.float64)
    scaled = np.clip(np.rint(samples * 10 ** (db / 20)), -32768, 32767)
    return scaled.astype("<i2").tobytes() + pcm[whole:]


def rms(pcm: bytes) -> float:
    """Root mean square of s16le samples (0.0 for no samples); full scale is 32768."""
    count = len(pcm) // 2
    if count == 0:
        return 0.0
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2", count=count).astype(np.float64)
    return math.sqrt(float(np.mean(samples * samples)))


def alignment_scores(
    block: bytes, history: bytes, *, floor_rms: float = 100.0
) -> npt.NDArray[np.float64]:
    """
    How closely ``block`` follows each stretch of ``history`` (s16le both, same rate): the
    normalized cross-correlation, 0.0 to 1.0, of the block with the window of the history
    that starts at each sample (index 0: the oldest). An echo of what the speaker played
    scores high at its delay whatever its level. Stretches of the history quieter than
    ``floor_rms`` count as that loud, so silence in it matches nothing. Empty when the
    block is empty or longer than the history; zeros when the block is silent.
    """
    import numpy as np

    y = np.frombuffer(block[: len(block) // 2 * 2], dtype="<i2").astype(np.float64)
    x = np.frombuffer(history[: len(history) // 2 * 2], dtype="<i2").astype(np.float64)
    n = len(y)
    if n == 0 or len(x) < n:
        return np.zeros(0)
    y_energy = float(np.dot(y, y))
    if y_energy == 0.0:
        return np.zeros(len(x) - n + 1)
    size = 1 << (len(x) + n - 1).bit_length()
    # The dot product of the block with every window of the history, by FFT.
    dots = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)
    dots = dots[: len(x) - n + 1]
    cumulative = np.concatenate(([0.0], np.cumsum(x * x)))
    window_energy = np.maximum(cumulative[n:] - cumulative[:-n], n * floor_rms * floor_rms)
    scores: npt.NDArray[np.float64] = np.abs(dots) / np.sqrt(window_energy * y_energy)
    return np.minimum(scores, 1.0)


class FrameSplitter:
    """Accumulates arbitrary byte chunks and yields whole frames of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"frame size must be positive, got {size}")
        self.size = size
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every whole frame now available, oldest first."""
        self._pending += data
        size = self.size
        whole = len(self._pending) - len(self._pending) % size
        frames = [bytes(self._pending[i : i + size]) for i in range(0, whole, size)]
        del self._pending[:whole]
        return frames

    @property
    def pending(self) -> int:
        """Bytes kept back, waiting to complete a frame."""
        return len(self._pending)

    def clear(self) -> None:
        self._pending.clear()


class WholeSamples:
    """
    Cuts s16le audio that arrives as a byte stream, in pieces of any length (Coze's reply
    deltas), at sample boundaries: a piece that ends mid-sample leaves its last byte for
    the next piece of the same stream. A piece of another stream, or :meth:`clear` (the
    stream ended or was flushed), drops it.
    """

    def __init__(self) -> None:
        self._stream: str | None = None
        self._odd = b""

    def take(self, stream: str, piece: bytes) -> bytes:
        """What ``stream`` left over, then ``piece``, up to its last whole sample."""
        if stream != self._stream:
            self._stream, self._odd = stream, b""
        if self._odd:
            piece = self._odd + piece
        whole = len(piece) - len(piece) % 2
        self._odd = piece[whole:]
        return piece if whole == len(piece) else piece[:whole]

    @property
    def pending(self) -> int:
        """Bytes kept back (0 or 1)."""
        return len(self._odd)

    def clear(self) -> None:
        self._stream, self._odd = None, b""


class PreRoll:
    """Keeps the newest ``capacity`` bytes of the audio pushed into it."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must not be negative, got {capacity}")
        self.capacity = capacity
        self._buffer = bytearray()

    def push(self, frame: bytes) -> None:
        if self.capacity == 0:
            return
        self._buffer += frame
        excess = len(self._buffer) - self.capacity
        if excess > 0:
            del self._buffer[:excess]

    def take(self) -> bytes:
        """Everything kept, oldest first; the ring is empty afterwards."""
        audio = bytes(self._buffer)
        self._buffer.clear()
        return audio

    def __len__(self) -> int:
        return len(self._buffer)

    def clear(self) -> None:
        self._buffer.clear()
