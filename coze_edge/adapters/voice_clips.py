"""
The device's own voice: short recorded clips shipped with the package
(``coze_edge/data/voice/<language>/<name>.wav``, one per name in
``coze_edge.core.spoken_code.CLIP_NAMES``), joined with silences into one PCM buffer.
It reads out the login code when there is no token yet for Coze's text-to-speech.

A language's clips are all read and checked at once, on first use, and kept; each clip is
resampled once per output rate. A missing or unusable clip is a VoiceClipError naming the
file.

    voice = load_voice("en")
    pcm = voice.render(spoken_code("BCDF-GHJK"), rate=48000, volume=80)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Final

from coze_edge.adapters.resample import StreamResampler
from coze_edge.adapters.wav import WAVE_FORMAT_PCM, WavFormatError, parse_wav
from coze_edge.core.audio import apply_gain
from coze_edge.core.spoken_code import CLIP_NAMES, Clip, Pause

__all__ = [
    "MAX_CLIP_MS",
    "MIN_CLIP_MS",
    "MIN_PEAK",
    "Voice",
    "VoiceClipError",
    "languages",
    "load_voice",
    "read_voice",
    "voice_folder",
]

MIN_CLIP_MS: Final = 50
MAX_CLIP_MS: Final = 20_000
MIN_PEAK: Final = 328
"""A clip whose loudest sample is below this (-40 dBFS) is taken for silence: unusable."""

_MIN_RATE: Final = 8000
_LANGUAGE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class VoiceClipError(ValueError):
    """A language's voice clips are missing or unusable; the message names the file."""


@dataclass(frozen=True, slots=True)
class _Recording:
    rate: int
    pcm: bytes
    """Mono s16le."""


class Voice:
    """The checked clips of one language, and their copies at each output rate asked for."""

    def __init__(self, language: str, recordings: dict[str, _Recording]) -> None:
        missing = [name for name in CLIP_NAMES if name not in recordings]
        if missing:
            raise VoiceClipError(f"voice {language!r} lacks clips: {', '.join(missing)}")
        self.language = language
        self._recordings = recordings
        self._resampled: dict[tuple[str, int], bytes] = {}

    def clip(self, name: str, rate: int) -> bytes:
        """
        The clip ``name`` as mono s16le at ``rate``: a clip of n samples recorded at r Hz
        gives round(n * rate / r) samples.
        """
        _check_rate(rate)
        key = (name, rate)
        pcm = self._resampled.get(key)
        if pcm is None:
            recording = self._recordings.get(name)
            if recording is None:
                raise KeyError(f"voice {self.language!r} has no clip {name!r}")
            pcm = _resample(recording, rate)
            self._resampled[key] = pcm
        return pcm

    def render(self, speech: Sequence[Clip | Pause], rate: int, *, volume: int = 100) -> bytes:
        """
        ``speech`` as one buffer of mono s16le at ``rate``: each clip, and digital silence
        for each pause, at ``volume`` percent (0..100, the speaker's curve:
        ``core.audio.gain_factor``). Pass 100 if the speaker applies its own volume.
        """
        _check_rate(rate)
        if not 0 <= volume <= 100:
            raise ValueError(f"volume must be 0..100 percent, got {volume}")
        parts = [
            self.clip(part.name, rate)
            if isinstance(part, Clip)
            else bytes(2 * _samples(part, rate))
            for part in speech
        ]
        return apply_gain(b"".join(parts), volume)


def voice_folder(language: str) -> Traversable:
    """Where the package keeps the clips of ``language`` (which may not exist)."""
    if not _LANGUAGE.fullmatch(language):
        raise VoiceClipError(f"{language!r} is not a voice language (a folder name like 'en')")
    return files("coze_edge") / "data" / "voice" / language


def languages() -> list[str]:
    """The languages the package has clips for, by folder name."""
    root = files("coze_edge") / "data" / "voice"
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir())


@functools.cache
def load_voice(language: str = "en") -> Voice:
    """The package's clips of ``language``, read and checked once; VoiceClipError if unusable."""
    folder = voice_folder(language)
    if not folder.is_dir():
        raise VoiceClipError(
            f"no voice clips for language {language!r} in {folder} "
            f"(there are: {', '.join(languages()) or 'none'})"
        )
    return read_voice(folder, language=language)


def read_voice(folder: Traversable, *, language: str | None = None) -> Voice:
    """
    The clips in ``folder``, one ``<name>.wav`` for each of ``CLIP_NAMES``: 16-bit PCM, mono,
    at least 8 kHz, 50 ms to 20 s long and not silent. Other files are ignored.
    """
    recordings = {name: _read_clip(folder / f"{name}.wav") for name in CLIP_NAMES}
    return Voice(language or folder.name, recordings)


def _read_clip(path: Traversable) -> _Recording:
    import numpy as np

    if not path.is_file():
        raise VoiceClipError(f"{path}: voice clip missing")
    try:
        info = parse_wav(path.read_bytes(), name=str(path))
    except OSError as exc:
        raise VoiceClipError(f"{path}: cannot read voice clip: {exc}") from exc
    except WavFormatError as exc:
        raise VoiceClipError(str(exc)) from exc
    if info.encoding != WAVE_FORMAT_PCM or info.bits != 16 or info.channels != 1:
        kind = "integer" if info.encoding == WAVE_FORMAT_PCM else "float"
        raise VoiceClipError(
            f"{path}: voice clips are 16-bit integer PCM, mono; "
            f"this one is {info.bits}-bit {kind} with {info.channels} channel(s)"
        )
    if info.rate < _MIN_RATE:
        raise VoiceClipError(f"{path}: {info.rate} Hz is too low for speech (8000 at least)")
    ms = len(info.data) // 2 * 1000 / info.rate
    if not MIN_CLIP_MS <= ms <= MAX_CLIP_MS:
        raise VoiceClipError(
            f"{path}: {ms:.0f} ms long; a voice clip lasts {MIN_CLIP_MS} ms to {MAX_CLIP_MS} ms"
        )
    samples = np.frombuffer(info.data, dtype="<i2")
    if int(np.abs(samples.astype(np.int32)).max()) < MIN_PEAK:
        raise VoiceClipError(f"{path}: voice clip is silent")
    return _Recording(info.rate, bytes(info.data))


def _resample(recording: _Recording, rate: int) -> bytes:
    if rate == recording.rate:
        return recording.pcm
    want = 2 * _scaled(len(recording.pcm) // 2, rate, recording.rate)
    pcm = StreamResampler(recording.rate, rate).process(recording.pcm, last=True)
    # libsoxr 0.1.3 gives exactly that many samples; should another version give one more
    # or less, the length stays predictable: the clip's ends are silent, so trimming or
    # padding a sample there is inaudible.
    return pcm[:want] + bytes(max(0, want - len(pcm)))


def _samples(pause: Pause, rate: int) -> int:
    return _scaled(pause.ms, rate, 1000)


def _scaled(count: int, rate: int, per: int) -> int:
    """``count * rate / per``, rounded half up, in integers."""
    return (2 * count * rate + per) // (2 * per)


def _check_rate(rate: int) -> None:
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
