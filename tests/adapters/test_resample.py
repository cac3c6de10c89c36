"""Rate and channel conversion."""

from __future__ import annotations

import numpy as np
import pytest

from coze_edge.adapters.resample import StreamResampler, to_mono
from coze_edge.core.audio import rms
from tests.support.signals import dominant_hz, sine, values


def s16(wave_: np.ndarray) -> bytes:
    return bytes(np.rint(wave_ * 32767).astype("<i2").tobytes())


def test_a_round_trip_through_another_rate_preserves_a_sine() -> None:
    """16 kHz -> 24 kHz -> 16 kHz keeps a 440 Hz tone's pitch, level and length."""
    tone = s16(sine(440, 16000, 1.0))
    up = StreamResampler(16000, 24000)
    down = StreamResampler(24000, 16000)

    mid = up.process(tone, last=True)
    back = down.process(mid, last=True)

    assert len(mid) == len(tone) * 3 // 2
    assert len(back) == len(tone)
    assert dominant_hz(mid, 24000) == pytest.approx(440, abs=0.5)
    assert dominant_hz(back, 16000) == pytest.approx(440, abs=0.5)
    assert rms(back) == pytest.approx(rms(tone), rel=0.01)
    core = slice(800, -800)  # away from the filter's run-in and run-out
    assert np.abs(values(back)[core] - values(tone)[core]).max() < 40


def test_streaming_in_odd_chunks_matches_one_call() -> None:
    """Chunks of any byte length (half samples included) give the same audio as one call."""
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16000) * 3000).astype("<i2").tobytes()
    whole = StreamResampler(16000, 24000).process(noise, last=True)
    stream = StreamResampler(16000, 24000)
    pieces: list[bytes] = []
    position = 0
    for size in [1, 333, 2000, 7, 4096, 1]:
        pieces.append(stream.process(noise[position : position + size]))
        position += size
    pieces.append(stream.process(noise[position:], last=True))
    chunked = b"".join(pieces)

    assert len(chunked) == len(whole)
    assert np.abs(values(chunked) - values(whole)).max() <= 2  # rounding inside soxr


def test_equal_rates_pass_mono_audio_through_untouched() -> None:
    """Same rate, one channel: the bytes come back as they are."""
    audio = s16(sine(300, 16000, 0.1))
    resampler = StreamResampler(16000, 16000)
    assert resampler.process(audio[:101]) + resampler.process(audio[101:]) == audio


def test_stereo_input_is_resampled_to_mono_or_kept_stereo() -> None:
    """Two channels average to one by default; mono=False keeps both."""
    left, right = sine(440, 48000, 0.5, 0.6), sine(440, 48000, 0.5, 0.2)
    stereo = np.rint(np.stack([left, right], axis=1) * 32767).astype("<i2").tobytes()

    mono = StreamResampler(48000, 16000, channels=2).process(stereo, last=True)
    kept = StreamResampler(48000, 16000, channels=2, mono=False).process(stereo, last=True)

    assert len(mono) == 8000 * 2
    assert rms(mono) == pytest.approx(0.4 * 32767 / np.sqrt(2), rel=0.01)
    assert len(kept) == 2 * len(mono)
    channels = values(kept).reshape(-1, 2)
    assert rms(channels[:, 1].astype("<i2").tobytes()) == pytest.approx(
        0.2 * 32767 / np.sqrt(2), rel=0.01
    )


def test_to_mono_averages_or_picks_a_channel() -> None:
    """Downmixing rounds the mean of each frame; pick takes one channel."""
    stereo = np.array([100, 201, -50, -51, 32767, 32767], dtype="<i2").tobytes()
    assert values(to_mono(stereo, 2)).tolist() == [150, -50, 32767]  # -50.5 rounds to even
    assert values(to_mono(stereo, 2, pick=1)).tolist() == [201, -51, 32767]
    assert to_mono(stereo, 1) is stereo
    with pytest.raises(ValueError, match="whole number"):
        to_mono(stereo[:-2], 2)
    with pytest.raises(ValueError, match="pick channel 2"):
        to_mono(stereo, 2, pick=2)


def test_bad_resampler_settings_are_rejected() -> None:
    """A zero rate or an unknown quality name is a ValueError."""
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(16000, 24000, quality="best")
