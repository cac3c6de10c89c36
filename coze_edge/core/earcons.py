"""
Short tones that tell the user what the device is doing, synthesised once per rate.

Each is a few sine notes (with a quieter octave above, for a softer timbre) under a
raised-cosine envelope, so every note starts and ends at zero: no clicks. Rising means
"your turn", falling means "over" or "wrong".
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:  # imported when an earcon is first rendered (core/audio.py says why)
    import numpy as np
    import numpy.typing as npt

EarconKind = Literal["listening", "wake", "error", "unauthorized", "done"]
KINDS: Final[tuple[EarconKind, ...]] = get_args(EarconKind)

LEVEL: Final = 0.3
"""Peak amplitude as a fraction of full scale (about -10 dBFS): audible, never startling."""

FADE_MS: Final = 8.0

if TYPE_CHECKING:
    Wave = npt.NDArray[np.float64]

# A note: (start Hz, end Hz, duration ms); a pitch of 0 is a rest. A gliding note sweeps
# its pitch exponentially from start to end.
_Note = tuple[float, float, float]

_SCORES: Final[dict[EarconKind, tuple[_Note, ...]]] = {
    # two notes going up a fourth: the device is listening now
    "listening": ((660.0, 660.0, 80.0), (880.0, 880.0, 110.0)),
    # one bright upward glide: the wake word was heard
    "wake": ((700.0, 1400.0, 150.0),),
    # two low notes going down: something failed
    "error": ((440.0, 440.0, 110.0), (0.0, 0.0, 20.0), (330.0, 330.0, 150.0)),
    # three short low beeps: the device needs to be logged in
    "unauthorized": (
        (392.0, 392.0, 60.0),
        (0.0, 0.0, 40.0),
        (392.0, 392.0, 60.0),
        (0.0, 0.0, 40.0),
        (392.0, 392.0, 60.0),
    ),
    # two soft notes going down a fifth: the turn is over
    "done": ((784.0, 784.0, 70.0), (523.0, 523.0, 120.0)),
}


def earcon(kind: EarconKind, rate: int) -> bytes:
    """The earcon ``kind`` as mono s16le at ``rate`` (at most 300 ms long)."""
    if kind not in _SCORES:
        raise ValueError(f"unknown earcon {kind!r}; expected one of {', '.join(_SCORES)}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return _render(kind, rate)


@functools.cache
def _render(kind: EarconKind, rate: int) -> bytes:
    import numpy as np

    parts = [_note(start, end, ms, rate) for start, end, ms in _SCORES[kind]]
    samples = np.concatenate(parts) * (LEVEL * 32767)
    return np.rint(samples).astype("<i2").tobytes()


def _note(start_hz: float, end_hz: float, ms: float, rate: int) -> Wave:
    import numpy as np

    count = round(rate * ms / 1000)
    if start_hz == 0 or count == 0:
        return np.zeros(count)
    t = np.arange(count) / rate
    duration = count / rate
    # Instantaneous frequency f(t) = start * (end/start) ** (t/duration); phase is its integral.
    ratio = end_hz / start_hz
    if ratio == 1:
        phase = 2 * np.pi * start_hz * t
    else:
        k = np.log(ratio) / duration
        phase = 2 * np.pi * start_hz * (np.exp(k * t) - 1) / k
    tone: Wave = 0.8 * np.sin(phase) + 0.2 * np.sin(2 * phase)
    return tone * _envelope(count, rate)


def _envelope(count: int, rate: int) -> Wave:
    import numpy as np

    fade = min(count // 2, round(rate * FADE_MS / 1000))
    envelope = np.ones(count)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        envelope[:fade] = ramp
        envelope[count - fade :] = ramp[::-1]
    return envelope
