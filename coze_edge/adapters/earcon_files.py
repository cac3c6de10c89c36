"""
Custom earcons: WAV files (``audio.earcon_files``) played instead of the built-in tones,
read once at start and converted to the speaker's rate (any WAV ``coze_edge.adapters.wav``
reads: integer or float samples, any rate, mono or more channels, mixed down).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from coze_edge.adapters.wav import WavFormatError, parse_wav, read_wav_as
from coze_edge.config.files import UnusableFile, read_regular_file
from coze_edge.core.audio import AudioFormat
from coze_edge.core.earcons import KINDS, EarconKind

EARCON_LIMIT: Final = 4 * 1024 * 1024
MAX_EARCON_S: Final = 3.0
"""An earcon longer than this would hold up the turn it announces."""


class EarconFileError(ValueError):
    """A custom earcon cannot be used; the message names the file and why."""


def check_earcon(path: Path) -> float:
    """``path`` is a WAV coze-edge can play as an earcon: its length in seconds, or
    EarconFileError saying why not."""
    try:
        raw = read_regular_file(path, limit=EARCON_LIMIT)
        info = parse_wav(raw, name=str(path))
    except UnusableFile as exc:
        raise EarconFileError(exc.about(str(path))) from exc
    except WavFormatError as exc:
        raise EarconFileError(str(exc)) from exc
    seconds = len(info.data) / (info.channels * info.bits // 8) / info.rate
    if seconds > MAX_EARCON_S:
        raise EarconFileError(f"{path} lasts {seconds:.1f} s: an earcon may last {MAX_EARCON_S:g}")
    if seconds == 0:
        raise EarconFileError(f"{path} holds no audio")
    return seconds


def load_earcons(files: Mapping[str, str], rate: int) -> dict[EarconKind, bytes]:
    """The custom earcons as mono s16le at ``rate``, by kind; EarconFileError if one
    cannot be used (unknown kinds are the config check's to report)."""
    sounds: dict[EarconKind, bytes] = {}
    for kind, name in files.items():
        if kind not in KINDS:
            continue
        path = Path(name)
        check_earcon(path)
        try:
            sounds[kind] = read_wav_as(path, AudioFormat(rate))
        except (OSError, WavFormatError) as exc:  # changed since the check
            raise EarconFileError(f"{path}: {exc}") from exc
    return sounds
