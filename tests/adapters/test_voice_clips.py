"""The shipped voice clips, checked and rendered into one PCM buffer at the speaker's rate."""

from __future__ import annotations

import math
import shutil
import struct
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import coze_edge
from coze_edge.adapters.voice_clips import (
    Voice,
    VoiceClipError,
    languages,
    load_voice,
    read_voice,
    voice_folder,
)
from coze_edge.core.audio import gain_factor, rms
from coze_edge.core.spoken_code import CLIP_NAMES, SENTENCES, Clip, Pause, spoken_code

ENGLISH = Path(coze_edge.__file__).parent / "data" / "voice" / "en"
RATES = (16000, 22050, 24000, 44100, 48000)


def recorded(name: str) -> np.ndarray:
    """A shipped clip's samples, read with the standard library (not the code under test)."""
    with wave.open(str(ENGLISH / f"{name}.wav")) as clip:
        assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2").astype(np.float64)


def dbfs(value: float) -> float:
    return 20 * math.log10(value / 32768)


def speech_level(samples: np.ndarray) -> float:
    """RMS of the 5 ms frames within 25 dB of the loudest, in dBFS."""
    frames = samples[: len(samples) // 80 * 80].reshape(-1, 80)
    levels = np.sqrt(np.mean(frames * frames, axis=1))
    loud = levels[levels >= levels.max() * 10 ** (-25 / 20)]
    return dbfs(math.sqrt(float(np.mean(loud * loud))))


def english_copy(tmp_path: Path) -> Path:
    """A copy of the English clips in a folder named xx."""
    folder = tmp_path / "xx"
    shutil.copytree(ENGLISH, folder)
    return folder


@pytest.mark.parametrize("rate", RATES)
def test_a_rendered_code_lasts_its_clips_and_pauses_at_the_output_rate(rate: int) -> None:
    """Each clip lasts as long as recorded and each pause as long as asked, at any rate."""
    speech = spoken_code("BCDF-GHJK", minutes_left=1, renewed=True)
    expected = 0
    for part in speech:
        if isinstance(part, Clip):
            expected += math.floor(len(recorded(part.name)) * rate / 16000 + 0.5)
        else:
            expected += math.floor(part.ms * rate / 1000 + 0.5)

    pcm = load_voice("en").render(speech, rate)

    assert len(pcm) == 2 * expected
    assert 20 < len(pcm) / 2 / rate < 30  # seconds: intro, eight letters twice, and the rest


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_every_clip_is_speech_that_starts_and_ends_in_silence(name: str) -> None:
    """Each clip is 16 kHz mono, loud enough, and fades in and out over its first and last ms."""
    samples = recorded(name)
    peak = float(np.abs(samples).max())
    edge = 32  # 2 ms
    seconds = len(samples) / 16000
    assert (0.2 < seconds < 0.7) if name not in SENTENCES else (0.4 < seconds < 6)
    assert dbfs(peak) > -10
    assert np.abs(samples[:edge]).max() < 0.02 * peak
    assert np.abs(samples[-edge:]).max() < 0.02 * peak
    assert samples[0] == samples[-1] == 0


def test_every_clip_speaks_at_the_same_level() -> None:
    """Speech levels (RMS over the loud frames) differ by less than 1 dB from -20 dBFS."""
    levels = {name: round(speech_level(recorded(name)), 1) for name in CLIP_NAMES}
    assert {name: level for name, level in levels.items() if abs(level + 20) >= 1} == {}


@pytest.mark.parametrize("rate", RATES)
def test_resampling_keeps_a_clip_as_loud(rate: int) -> None:
    """At any output rate a clip has the RMS it was recorded with, within a quarter dB."""
    voice = load_voice("en")
    for name in ("s", "w", "intro"):
        original = rms(recorded(name).astype("<i2").tobytes())
        assert abs(dbfs(rms(voice.clip(name, rate))) - dbfs(original)) < 0.25, name


def test_at_the_recorded_rate_a_clip_is_the_file_byte_for_byte() -> None:
    """Rendering one clip at 16 kHz and full volume gives exactly the samples in the file."""
    assert load_voice("en").render([Clip("k")], 16000) == recorded("k").astype("<i2").tobytes()


def test_pauses_are_digital_silence_between_the_clips() -> None:
    """A pause of 250 ms at 24 kHz is 6000 zero samples between two clips."""
    voice = load_voice("en")
    a, b = voice.clip("a", 24000), voice.clip("b", 24000)

    pcm = voice.render([Clip("a"), Pause(250), Clip("b")], 24000)

    assert pcm == a + bytes(2 * 6000) + b


@pytest.mark.parametrize("volume", [0, 25, 50, 99])
def test_volume_scales_the_speech_on_the_speakers_curve(volume: int) -> None:
    """Volume scales the amplitude by the speaker's gain factor; 0 is silence of the same length."""
    voice = load_voice("en")
    speech = spoken_code("A1")
    full = voice.render(speech, 48000)

    quieter = voice.render(speech, 48000, volume=volume)

    assert len(quieter) == len(full)
    assert rms(quieter) == pytest.approx(rms(full) * gain_factor(volume), abs=0.6)


@pytest.mark.parametrize(
    ("rate", "volume", "problem"),
    [(0, 100, "rate"), (-16000, 100, "rate"), (16000, -1, "volume"), (16000, 101, "volume")],
)
def test_impossible_rates_and_volumes_are_refused(rate: int, volume: int, problem: str) -> None:
    """A rate of zero or less, or a volume outside 0..100, is a ValueError saying which."""
    with pytest.raises(ValueError, match=problem):
        load_voice("en").render([Clip("a")], rate, volume=volume)


def test_clips_are_loaded_once_and_resampled_once_per_rate() -> None:
    """The same language gives the same Voice; the same clip and rate the same bytes."""
    voice = load_voice("en")
    assert load_voice("en") is voice
    assert voice.clip("q", 48000) is voice.clip("q", 48000)


def test_the_package_ships_english() -> None:
    """English is among the languages, and its folder is the package's own."""
    assert "en" in languages()
    assert Path(str(voice_folder("en"))) == ENGLISH


def test_an_unknown_language_is_a_clear_error() -> None:
    """Asking for a language with no folder names it and lists the ones there are."""
    with pytest.raises(VoiceClipError, match=r"no voice clips for language 'xx' .*there are: .*en"):
        load_voice("xx")


@pytest.mark.parametrize("language", ["../en", "en/", "", ".", "en us"])
def test_a_language_must_be_a_plain_folder_name(language: str) -> None:
    """Paths and empty names are refused before anything is read."""
    with pytest.raises(VoiceClipError, match="is not a voice language"):
        load_voice(language)


def test_a_folder_of_clips_elsewhere_is_a_voice_named_after_it(tmp_path: Path) -> None:
    """A vendor's folder with the same file names reads as a voice named after the folder."""
    voice = read_voice(english_copy(tmp_path))
    assert isinstance(voice, Voice)
    assert voice.language == "xx"
    assert voice.render([Clip("z")], 24000) == load_voice("en").render([Clip("z")], 24000)


def test_a_missing_clip_is_an_error_naming_the_file(tmp_path: Path) -> None:
    """Without q.wav the folder is refused, and the message says which file is missing."""
    folder = english_copy(tmp_path)
    (folder / "q.wav").unlink()
    with pytest.raises(VoiceClipError, match=r"xx/q\.wav: voice clip missing"):
        read_voice(folder)


def wav(rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1) -> Callable[..., bytes]:
    """A WAV file around the given samples (s16 values), in the format given."""

    def make(samples: np.ndarray) -> bytes:
        if tag == 3:
            data = (samples / 32768).astype("<f4").tobytes()
        elif bits == 8:
            data = (samples / 256 + 128).astype(np.uint8).tobytes()
        else:
            data = np.repeat(samples, channels).astype("<i2").tobytes()
        block = channels * bits // 8
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        body += b"data" + struct.pack("<I", len(data)) + data
        return b"RIFF" + struct.pack("<I", len(body)) + body

    return make


def tone(ms: int, rate: int = 16000, amplitude: float = 8000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * 440 * t))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (lambda: b"not a wav file at all", "not a WAV file"),
        (lambda: wav(channels=2)(tone(300)), "mono; this one is 16-bit integer with 2 channel"),
        (lambda: wav(bits=8)(tone(300)), "this one is 8-bit integer"),
        (lambda: wav(bits=32, tag=3)(tone(300)), "this one is 32-bit float"),
        (lambda: wav(rate=4000)(tone(300, rate=4000)), "4000 Hz is too low"),
        (lambda: wav()(tone(20)), "20 ms long"),
        (lambda: wav()(tone(25_000)), "25000 ms long"),
        (lambda: wav()(tone(300, amplitude=100)), "silent"),
    ],
)
def test_a_malformed_clip_is_an_error_naming_the_file_and_the_problem(
    tmp_path: Path, content: Callable[[], bytes], problem: str
) -> None:
    """A clip that is not 16-bit mono PCM speech of a sensible length is refused by name."""
    folder = english_copy(tmp_path)
    (folder / "7.wav").write_bytes(content())
    with pytest.raises(VoiceClipError, match=r"xx/7\.wav: ") as caught:
        read_voice(folder)
    assert problem in str(caught.value)


def test_a_clip_at_another_rate_is_resampled_to_the_output_rate(tmp_path: Path) -> None:
    """A vendor's 22.05 kHz clip renders at 48 kHz with the length the ratio gives."""
    folder = english_copy(tmp_path)
    (folder / "a.wav").write_bytes(wav(rate=22050)(tone(300, rate=22050)))
    samples = 22050 * 300 // 1000

    pcm = read_voice(folder).render([Clip("a")], 48000)

    assert len(pcm) == 2 * math.floor(samples * 48000 / 22050 + 0.5)
    assert dbfs(rms(pcm)) == pytest.approx(dbfs(8000 / math.sqrt(2)), abs=0.25)
