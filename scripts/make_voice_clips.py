"""
Regenerates the English voice clips in coze_edge/data/voice/en/ with espeak-ng: one WAV per
name in ``coze_edge.core.spoken_code.CLIP_NAMES`` (a letter name, a digit, a sentence),
16 kHz mono 16-bit, trimmed of leading and trailing silence, faded in and out over a few
milliseconds, and scaled so that every clip's speech has the same level. Writes the
folder's README.md too, with each clip's text, phonemes, length and peak.

Run through `scripts/make-voice-clips` (it installs espeak-ng when run as root). The clips
are committed; nothing runs espeak-ng at run time or test time.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.core.spoken_code import CLIP_NAMES, DIGITS, LETTERS, SENTENCES

ROOT = Path(__file__).resolve().parents[1]

FOLDER: Final = ROOT / "coze_edge" / "data" / "voice" / "en"
VOICE: Final = "en-us"
SPEED: Final = 165
"""Words per minute: a little slower than espeak-ng's 175, for letters heard once."""

RATE: Final = 16000
FRAME: Final = RATE // 200  # 5 ms frames for finding speech
GATE_DB: Final = -40.0
"""A frame is part of the clip while within this many dB of the clip's loudest frame."""
ACTIVE_DB: Final = -25.0
"""Frames within this many dB of the loudest count towards the clip's speech level."""
LEAD_MS: Final = 10
TAIL_MS: Final = 25
"""Kept before the first and after the last frame of speech (a final "s" fades slowly)."""
FADE_MS: Final = 10
LEVEL_DBFS: Final = -20.0
"""The speech level (RMS over the active frames) of every clip."""
PEAK_DBFS: Final = -2.0
"""A clip whose peak would pass this at ``LEVEL_DBFS`` is turned down until it does not."""

Wave = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Made:
    name: str
    text: str
    phonemes: str
    duration_ms: float
    peak_dbfs: float
    level_dbfs: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--folder", type=Path, default=FOLDER, help="where to write the clips")
    folder: Path = parser.parse_args().folder
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.wav"):
        stale.unlink()
    made: list[Made] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in CLIP_NAMES:
            text = _text(name)
            raw = Path(scratch) / f"{name}.wav"
            _espeak(["-w", str(raw)], text)
            wave_ = _process(read_wav_as(raw, AudioFormat(RATE)), name)
            _write(folder / f"{name}.wav", wave_)
            made.append(_describe(name, text, wave_))
    _check_letters(made)
    (folder / "README.md").write_text(_readme(made))
    total = sum(path.stat().st_size for path in folder.glob("*.wav"))
    for clip in made:
        print(
            f"{clip.name:>12}  {clip.duration_ms:5.0f} ms  peak {clip.peak_dbfs:5.1f} dBFS  "
            f"level {clip.level_dbfs:5.1f} dBFS  [{clip.phonemes}]"
        )
    print(f"{len(made)} clips, {total / 1024:.0f} KiB in {folder}")
    return 0


def _text(name: str) -> str:
    """What espeak-ng is given: SSML that spells a letter or digit out, or the sentence."""
    if name in LETTERS or name in DIGITS:
        # Spelled out as characters, a lone "A" is the letter "ay", never the article "a".
        return f'<speak><say-as interpret-as="characters">{name.upper()}</say-as></speak>'
    return f"<speak>{SENTENCES[name]}</speak>"


def _espeak(options: list[str], text: str) -> str:
    return _run(["espeak-ng", "-v", VOICE, "-s", str(SPEED), "-m", *options, text])


def _run(command: list[str]) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def _process(pcm: bytes, name: str) -> Wave:
    wave_ = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    levels = _frame_levels(wave_)
    loudest = float(levels.max())
    if loudest == 0:
        raise SystemExit(f"espeak-ng said nothing for {name!r}")
    speech = np.flatnonzero(levels >= loudest * _gain(GATE_DB))
    start = max(0, int(speech[0]) * FRAME - RATE * LEAD_MS // 1000)
    end = min(len(wave_), (int(speech[-1]) + 1) * FRAME + RATE * TAIL_MS // 1000)
    trimmed = wave_[start:end] * _fades(end - start)
    active = levels[levels >= loudest * _gain(ACTIVE_DB)]
    level = math.sqrt(float(np.mean(active * active)))
    scale = _gain(LEVEL_DBFS) / level
    peak = float(np.abs(trimmed).max())
    scale = min(scale, _gain(PEAK_DBFS) / peak)
    scaled: Wave = trimmed * scale
    return scaled


def _frame_levels(wave_: Wave) -> Wave:
    """RMS of each whole 5 ms frame."""
    frames = wave_[: len(wave_) - len(wave_) % FRAME].reshape(-1, FRAME)
    levels: Wave = np.sqrt(np.mean(frames * frames, axis=1))
    return levels


def _fades(count: int) -> Wave:
    """Raised-cosine ramps at both ends, so a clip starts and ends at zero: no clicks."""
    fade = min(count // 2, RATE * FADE_MS // 1000)
    envelope = np.ones(count)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    envelope[:fade] = ramp
    envelope[count - fade :] = ramp[::-1]
    return envelope


def _gain(db: float) -> float:
    return float(10 ** (db / 20))


def _db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -math.inf


def _write(path: Path, wave_: Wave) -> None:
    samples = np.clip(np.rint(wave_ * 32768), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())


def _describe(name: str, text: str, wave_: Wave) -> Made:
    levels = _frame_levels(wave_)
    active = levels[levels >= levels.max() * _gain(ACTIVE_DB)]
    return Made(
        name=name,
        text=SENTENCES.get(name, name.upper()),
        phonemes=" ".join(_espeak(["-q", "-x"], text).split()),
        duration_ms=len(wave_) * 1000 / RATE,
        peak_dbfs=_db(float(np.abs(wave_).max())),
        level_dbfs=_db(math.sqrt(float(np.mean(active * active)))),
    )


def _check_letters(made: list[Made]) -> None:
    """Every letter and digit sounds different from the others, and "A" is the letter."""
    spelled = {clip.name: clip.phonemes for clip in made if clip.name not in SENTENCES}
    if len(set(spelled.values())) != len(spelled):
        raise SystemExit(f"two letters or digits sound the same: {spelled}")
    if "eI" not in spelled["a"]:
        raise SystemExit(f"'A' is not read as the letter: [{spelled['a']}]")


def _readme(made: list[Made]) -> str:
    version = _run(["espeak-ng", "--version"]).split("Data at")[0].split(":")[-1].strip()
    rows = "\n".join(
        f"| `{clip.name}.wav` | {clip.text} | `{clip.phonemes}` | {clip.duration_ms:.0f} | "
        f"{clip.peak_dbfs:.1f} |"
        for clip in made
    )
    total_kib = sum(clip.duration_ms for clip in made) * RATE * 2 / 1000 / 1024
    return f"""\
# English voice clips

What the device plays to read out its login code when it has no screen and no token yet
(`coze_edge/core/spoken_code.py` says what is played when): {len(made)} clips, about
{total_kib:.0f} KiB of 16 kHz mono 16-bit PCM.

Generated by espeak-ng {version}, voice `{VOICE}`, {SPEED} words per minute, with
`scripts/make-voice-clips` (from the repository root; as root it installs espeak-ng).
Each letter and digit is spelled out with SSML, so that a lone "A" is the letter and
not the article; each sentence is plain text:

```bash
espeak-ng -v {VOICE} -s {SPEED} -m -w raw-a.wav \\
    '<speak><say-as interpret-as="characters">A</say-as></speak>'
espeak-ng -v {VOICE} -s {SPEED} -m -w raw-repeat.wav '<speak>I repeat.</speak>'
```

The script then resamples espeak-ng's 22.05 kHz to 16 kHz, trims the silence before and
after the speech (keeping {LEAD_MS} ms before, {TAIL_MS} ms after), fades {FADE_MS} ms in
and out, and scales each clip to a speech level of {LEVEL_DBFS:.0f} dBFS (RMS over its
5 ms frames within {-ACTIVE_DB:.0f} dB of the loudest), peaks at most {PEAK_DBFS:.0f} dBFS.

**Licence.** espeak-ng is GPL-3.0-or-later; it is not part of coze-edge and is not needed
at run time or test time. These files are its output, distributed with coze-edge under
coze-edge's licence (Apache-2.0).

**Another language** is a folder beside this one (`../de/`, ...) with a WAV file for every
name below: 16-bit PCM, mono, any rate (16 kHz is plenty). The sentences say the same in
that language, and letters are read as that language names them.

| file | says | phonemes (espeak-ng) | ms | peak dBFS |
| --- | --- | --- | ---: | ---: |
{rows}
"""


if __name__ == "__main__":
    sys.exit(main())
