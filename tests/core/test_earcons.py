"""Earcons: short, soft-edged, distinct tones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from coze_edge.core.earcons import KINDS, EarconKind, earcon

RATES = (16000, 24000, 48000)


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rate", RATES)
def test_every_earcon_is_short_mono_pcm(kind: EarconKind, rate: int) -> None:
    """Each earcon lasts 100-300 ms of whole s16le samples, peaking well below full scale."""
    pcm = earcon(kind, rate)
    duration_ms = len(pcm) / 2 / rate * 1000
    assert len(pcm) % 2 == 0
    assert 100 <= duration_ms <= 300
    peak = np.abs(samples(pcm)).max()
    assert 0.2 * 32767 < peak <= 0.35 * 32767


@pytest.mark.parametrize("kind", KINDS)
def test_earcons_fade_in_and_out_without_clicks(kind: EarconKind) -> None:
    """Each starts and ends at zero, rises gently, and never jumps between samples."""
    rate = 24000
    wave = samples(earcon(kind, rate))
    peak = np.abs(wave).max()
    edge = rate // 1000  # the first and last millisecond
    assert wave[0] == 0
    assert abs(wave[-1]) <= 1
    assert np.abs(wave[:edge]).max() < 0.1 * peak
    assert np.abs(wave[-edge:]).max() < 0.1 * peak
    assert np.abs(np.diff(wave)).max() < 0.5 * peak


def spectrum(pcm: bytes) -> np.ndarray:
    magnitude: np.ndarray = np.abs(np.fft.rfft(samples(pcm), n=8192))
    return magnitude / float(np.linalg.norm(magnitude))


def pitch(wave: np.ndarray, rate: int) -> float:
    """The strongest frequency in ``wave``."""
    magnitude = np.abs(np.fft.rfft(wave * np.hanning(len(wave)), n=1 << 15))
    return float(np.argmax(magnitude)) * rate / (1 << 15)


def test_earcons_differ_from_each_other() -> None:
    """No two kinds share much of their spectrum."""
    for a, b in itertools.combinations(KINDS, 2):
        similarity = float(spectrum(earcon(a, 16000)) @ spectrum(earcon(b, 16000)))
        assert similarity < 0.5, (a, b, similarity)


@pytest.mark.parametrize(
    ("kind", "direction"),
    [("listening", 1), ("wake", 1), ("error", -1), ("unauthorized", 0), ("done", -1)],
)
def test_rising_means_your_turn_and_falling_means_over(kind: EarconKind, direction: int) -> None:
    """Listening and wake go up in pitch, error and done go down, unauthorized stays."""
    rate = 16000
    wave = samples(earcon(kind, rate))
    part = int(len(wave) * 0.4)
    first, last = pitch(wave[:part], rate), pitch(wave[-part:], rate)
    change = 0 if abs(last - first) < 10 else (1 if last > first else -1)
    assert change == direction, (first, last)


def test_earcons_are_rendered_once_per_kind_and_rate() -> None:
    """A second request returns the cached bytes; another rate has proportionally more."""
    assert earcon("listening", 24000) is earcon("listening", 24000)
    assert len(earcon("listening", 48000)) == 2 * len(earcon("listening", 24000))


def test_unknown_earcons_and_rates_are_rejected() -> None:
    """A kind outside the list, or a rate of zero, is a ValueError."""
    with pytest.raises(ValueError, match="unknown earcon"):
        earcon("fanfare", 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        earcon("done", 0)
