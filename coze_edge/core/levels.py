"""
What ``coze-edge devices --test`` measures in a recording, and what it suggests: levels
(peak, speech, noise floor), clipping, whether the speaker's sound reaches the microphone
(the echo path), and from those ``vad.aggressiveness`` and ``audio.input_gain_db``. Pure.

Levels are in dBFS: 0 is a full-scale square wave, digital silence is ``SILENCE_DBFS``.
The speech and noise levels come from 20 ms frames: the speech level is the loudest tenth
of them (a person talking fills more than a tenth of a test recording), the noise floor the
quietest tenth (the pauses between words).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # imported where it is used (core/audio.py says why)
    import numpy as np

from coze_edge.core.audio import alignment_scores

SILENCE_DBFS: Final = -96.0
"""What digital silence counts as (16-bit audio's own floor)."""
FRAME_MS: Final = 20
CLIP_LEVEL: Final = 32767
"""A sample at full scale, either way, is clipped (or about to be)."""

TARGET_SPEECH_DBFS: Final = -20.0
"""Where ``input_gain_db`` puts the speech level: loud enough for the wake word and VAD
with room to spare, 17 dB below the top for shouting and peaks."""
PEAK_HEADROOM_DBFS: Final = -3.0
"""No suggested gain lifts the recording's peak above this."""
MIN_SPEECH_ABOVE_NOISE_DB: Final = 10.0
"""Closer than this, the recording held no clear speech: nothing to set a gain from."""
GAIN_STEP_DB: Final = 3.0
MAX_GAIN_DB: Final = 30.0
"""``audio.input_gain_db``'s top (the config's range); more means the wrong mixer level."""

QUIET_ROOM_DBFS: Final = -60.0
NOISY_ROOM_DBFS: Final = -45.0
MAX_NOISE_AS_SPEECH: Final = 0.05
"""The VAD may take this share of the pauses for speech at the suggested aggressiveness."""

ECHO_LIKENESS_AUDIBLE: Final = 0.4
"""A recording that follows the test tone this closely at one delay hears the speaker
(normalized cross-correlation; about 8 dB below the room's noise, the tone still scores so)."""
MAX_ECHO_DELAY_MS: Final = 800


TONE_LEVEL: Final = 0.25
"""The test tone's amplitude (-12 dBFS): clearly audible, far from clipping anything."""


def rising_tone(rate: int, seconds: float = 1.0) -> bytes:
    """
    A rising tone (300 Hz to 3 kHz, exponentially) as mono s16le at ``rate``, faded in and
    out: a sweep, not a steady note, so its echo matches it at one delay only.
    """
    import numpy as np

    count = round(rate * seconds)
    t = np.arange(count) / rate
    k = math.log(3000 / 300) / seconds
    wave = np.sin(2 * np.pi * 300 * (np.exp(k * t) - 1) / k)
    fade = min(count // 2, rate // 50)
    envelope = np.ones(count)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        envelope[:fade], envelope[count - fade :] = ramp, ramp[::-1]
    return bytes(np.rint(wave * envelope * TONE_LEVEL * 32767).astype("<i2").tobytes())


def dbfs(amplitude: float) -> float:
    """An RMS or peak amplitude (full scale 32768) in dBFS, ``SILENCE_DBFS`` at the least."""
    if amplitude <= 0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20 * math.log10(amplitude / 32768))


def _samples(pcm: bytes) -> np.ndarray:
    import numpy as np

    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)


def frame_levels(pcm: bytes, rate: int) -> list[float]:
    """The RMS level (dBFS) of each whole 20 ms frame of mono s16le ``pcm``."""
    import numpy as np

    x = _samples(pcm)
    size = rate * FRAME_MS // 1000
    count = len(x) // size
    if count == 0:
        return []
    frames = x[: count * size].reshape(count, size)
    return [dbfs(float(v)) for v in np.sqrt(np.mean(frames * frames, axis=1))]


@dataclass(frozen=True, slots=True)
class Levels:
    """A recording's levels."""

    peak_dbfs: float
    speech_dbfs: float
    """The loudest tenth of its 20 ms frames (their 90th percentile)."""
    noise_dbfs: float
    """The quietest tenth (the 10th percentile): the room and the microphone's own hiss."""
    clipped_samples: int
    clipped_ms: float
    """How long the clipped 20 ms frames last in all."""
    duration_s: float

    @property
    def speech_heard(self) -> bool:
        return self.speech_dbfs - self.noise_dbfs >= MIN_SPEECH_ABOVE_NOISE_DB


def measure(pcm: bytes, rate: int) -> Levels:
    """The levels of mono s16le ``pcm`` at ``rate``."""
    import numpy as np

    x = _samples(pcm)
    frames = frame_levels(pcm, rate)
    size = rate * FRAME_MS // 1000
    clipped = np.abs(x) >= CLIP_LEVEL
    clipped_frames = 0
    if len(frames):
        clipped_frames = int(
            np.count_nonzero(clipped[: len(frames) * size].reshape(-1, size).any(1))
        )
    return Levels(
        peak_dbfs=dbfs(float(np.max(np.abs(x)))) if len(x) else SILENCE_DBFS,
        speech_dbfs=float(np.percentile(frames, 90)) if frames else SILENCE_DBFS,
        noise_dbfs=float(np.percentile(frames, 10)) if frames else SILENCE_DBFS,
        clipped_samples=int(np.count_nonzero(clipped)),
        clipped_ms=clipped_frames * FRAME_MS,
        duration_s=len(x) / rate,
    )


def quiet_frames(pcm: bytes, rate: int, levels: Levels) -> list[bytes]:
    """The 20 ms frames no louder than the noise floor + 6 dB: the pauses, for the VAD."""
    size = rate * FRAME_MS // 1000 * 2
    limit = levels.noise_dbfs + 6
    return [
        pcm[i * size : (i + 1) * size]
        for i, level in enumerate(frame_levels(pcm, rate))
        if level <= limit
    ]


@dataclass(frozen=True, slots=True)
class EchoPath:
    """Whether the microphone hears what the speaker plays, and how."""

    audible: bool
    likeness: float
    """How closely the recording follows the played sound at ``delay_ms`` (0 to 1)."""
    delay_ms: float
    level_dbfs: float
    """The echo's level in the recording (the part of it that follows the played sound)."""


def find_echo(played: bytes, recorded: bytes, rate: int) -> EchoPath:
    """
    Looks for ``played`` (mono s16le, started when the recording did) in ``recorded``,
    up to ``MAX_ECHO_DELAY_MS`` later: the delay where the two are most alike.
    """
    import numpy as np

    span = len(played) + rate * MAX_ECHO_DELAY_MS // 1000 * 2
    scores = alignment_scores(played, recorded[:span], floor_rms=3.0)
    if len(scores) == 0:
        return EchoPath(False, 0.0, 0.0, SILENCE_DBFS)
    lag = int(np.argmax(scores))
    likeness = float(scores[lag])
    window = _samples(recorded[2 * lag : 2 * lag + len(played)])
    level = dbfs(likeness * float(np.sqrt(np.mean(window * window)))) if len(window) else 0.0
    return EchoPath(likeness >= ECHO_LIKENESS_AUDIBLE, likeness, lag * 1000 / rate, level)


@dataclass(frozen=True, slots=True)
class Advice:
    aggressiveness: int
    aggressiveness_why: str
    gain_db: float
    gain_why: str
    warnings: tuple[str, ...]


def advise(levels: Levels, noise_as_speech: Sequence[float]) -> Advice:
    """
    The settings a recording suggests. ``noise_as_speech[m]``: the share of the quiet
    frames (:func:`quiet_frames`) that the VAD at aggressiveness ``m`` took for speech
    (empty when there were too few to tell).
    """
    warnings: list[str] = []
    noise = levels.noise_dbfs
    if noise < QUIET_ROOM_DBFS:
        mode, room = 1, "a quiet room"
    elif noise < NOISY_ROOM_DBFS:
        mode, room = 2, "some noise"
    else:
        mode, room = 3, "a noisy room"
    why = f"noise floor {noise:.0f} dBFS: {room}"
    if noise_as_speech:
        while mode < 3 and noise_as_speech[mode] > MAX_NOISE_AS_SPEECH:
            mode += 1
        share = noise_as_speech[mode]
        why += f"; the VAD takes {share:.0%} of the pauses for speech at {mode}"
    if noise >= NOISY_ROOM_DBFS:
        warnings.append(
            "the room is noisy for a microphone: audio.noise_suppression: true (the aec extra) "
            "helps, and so does a microphone closer to where people talk"
        )

    gain, gain_why = 0.0, "the level is right"
    if levels.clipped_samples:
        warnings.append(
            f"the input clips ({levels.clipped_ms / 1000:.1f} s of {levels.duration_s:.0f} s): "
            "lower the card's capture level (alsamixer: F4, the Capture control, or "
            "amixer -c CARD sset Capture 70%) or speak farther away; no software gain can "
            "undo clipping"
        )
        gain_why = "no gain: the input already clips"
    elif not levels.speech_heard:
        warnings.append(
            "no clear speech in the recording: speak while it records; if you did, check the "
            "microphone (audio.input_device, audio.input_channel) and its mixer: alsamixer, "
            "F4, capture switched on and up"
        )
        gain_why = "no speech heard to set it from"
    else:
        wanted = min(TARGET_SPEECH_DBFS - levels.speech_dbfs, PEAK_HEADROOM_DBFS - levels.peak_dbfs)
        steps = (
            math.floor(wanted / GAIN_STEP_DB) if wanted > 0 else math.ceil(wanted / GAIN_STEP_DB)
        )
        gain = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, steps * GAIN_STEP_DB)) + 0.0
        after = levels.speech_dbfs + gain
        if gain > 0:
            gain_why = f"speech at {levels.speech_dbfs:.0f} dBFS, about {after:.0f} with it"
        elif gain < 0:
            gain_why = (
                f"speech at {levels.speech_dbfs:.0f} dBFS, about {after:.0f} with it; better: "
                "lower the card's capture level by as much (alsamixer), and keep 0"
            )
        else:
            gain_why = f"speech at {levels.speech_dbfs:.0f} dBFS: right as it is"
        if wanted > MAX_GAIN_DB:
            warnings.append(
                "the microphone is very quiet: raise the card's capture level first "
                "(alsamixer, F4), then run this again"
            )
    return Advice(mode, why, gain, gain_why, tuple(warnings))
