"""Test signals: sine tones, s16le samples as floats, the dominant frequency."""

from __future__ import annotations

import numpy as np


def sine(hz: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * hz * t)


def values(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = values(pcm)
    magnitude = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 18))
    return float(np.argmax(magnitude)) * rate / (1 << 18)
