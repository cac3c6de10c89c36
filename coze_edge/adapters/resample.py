"""
Sample-rate and channel conversion (libsoxr through ``soxr``).

``StreamResampler`` converts a live stream chunk by chunk (device rate to the capture rate,
Coze's reply rate to the device rate); ``resample`` converts a whole signal at once (a WAV
file read by ``coze_edge.adapters.wav``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # soxr and numpy are imported where they are used: a device whose
    # microphone and speaker take the wanted rates never loads them (core/audio.py)
    import numpy as np
    import numpy.typing as npt

    Samples = npt.NDArray[np.float64]

QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")


class StreamResampler:
    """
    Converts a stream of interleaved s16le chunks from ``in_rate`` to ``out_rate``.

    With ``channels`` > 1 the input is averaged down to mono first, unless ``mono`` is
    False (then every channel is resampled and the output keeps them). Chunks may have any
    length; a partial sample frame is kept for the next call. ``last=True`` flushes the
    filter's tail and readies the resampler for a new stream.
    """

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        *,
        channels: int = 1,
        quality: str = "HQ",
        mono: bool = True,
    ) -> None:
        import soxr

        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"rates must be positive, got {in_rate} -> {out_rate}")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        if quality not in QUALITIES:
            raise ValueError(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self.out_channels = 1 if mono else channels
        self._frame_size = 2 * channels
        self._pending = b""
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
            self._stream = soxr.ResampleStream(
                in_rate, out_rate, self.out_channels, dtype="int16", quality=quality
            )

    def process(self, pcm: bytes, *, last: bool = False) -> bytes:
        import numpy as np

        data = self._pending + pcm if self._pending else pcm
        whole = len(data) - len(data) % self._frame_size
        self._pending = b"" if last else data[whole:]  # a torn last frame is dropped
        if whole != len(data):
            data = data[:whole]
        if self.channels > 1 and self.out_channels == 1:
            data = to_mono(data, self.channels)
        if self._stream is None:
            return data
        samples = np.frombuffer(data, dtype="<i2").reshape(-1, self.out_channels)
        if self.out_channels == 1:
            samples = samples[:, 0]
        out = self._stream.resample_chunk(samples, last=last)
        if last:
            self._stream.clear()
        return bytes(np.ascontiguousarray(out, dtype="<i2").tobytes())


def to_mono(pcm: bytes, channels: int, *, pick: int | None = None) -> bytes:
    """
    Interleaved s16le with ``channels`` channels as mono: the rounded average of the
    channels, or only channel ``pick`` (0-based).
    """
    import numpy as np

    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if pick is not None and not 0 <= pick < channels:
        raise ValueError(f"cannot pick channel {pick} of {channels}")
    if len(pcm) % (2 * channels):
        raise ValueError(f"{len(pcm)} bytes is not a whole number of {channels}-channel frames")
    if channels == 1:
        return pcm
    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
    if pick is not None:
        return bytes(frames[:, pick].tobytes())
    mean = np.rint(frames.astype(np.float64).mean(axis=1))
    return bytes(mean.astype("<i2").tobytes())


def resample(samples: Samples, in_rate: int, out_rate: int) -> Samples:
    """A whole signal (floats, shape (frames, channels)) from ``in_rate`` to ``out_rate``."""
    import numpy as np
    import soxr

    return np.asarray(soxr.resample(samples, in_rate, out_rate, quality="HQ"), dtype=np.float64)
