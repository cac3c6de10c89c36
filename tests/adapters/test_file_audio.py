"""The file audio backend: a WAV file as microphone, a WAV file as speaker, in real time."""

from __future__ import annotations

import asyncio
import os
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE, AudioFormat, apply_gain
from coze_edge.errors import ConfigError
from tests.support.data import DATA
from tests.support.timing import MS

WEATHER = DATA / "utterance-weather.wav"
# Timing bounds: MS is slack, scaled up on slow machines; lower bounds are never scaled.

REPLY = AudioFormat(24000)


def tone(ms: int, rate: int = 24000, amplitude: float = 0.4) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()


def write_wav(path: Path, pcm: bytes, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


def read_back(path: Path) -> tuple[int, bytes]:
    """(rate, samples) of a WAV file, through the standard library's reader."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.getframerate(), wav.readframes(wav.getnframes())


async def take(blocks: AsyncIterator[bytes], count: int) -> list[bytes]:
    return [await anext(blocks) for _ in range(count)]


# ---------------------------------------------------------------------- microphone


async def test_microphone_delivers_the_file_in_real_time() -> None:
    """Six 60 ms blocks take 360 ms, and are the file's first 360 ms of audio."""
    loop = asyncio.get_running_loop()
    microphone: Microphone = FileMicrophone(WEATHER, block_ms=60)
    async with microphone:
        blocks = microphone.frames()
        started = loop.time()
        got = await take(blocks, 6)
        took = loop.time() - started

    assert [len(b) for b in got] == [1920] * 6
    assert b"".join(got) == read_wav_as(WEATHER, CAPTURE)[: 6 * 1920]
    assert 0.355 <= took < 0.36 + 100 * MS


async def test_microphone_pace_does_not_drift_after_a_stall() -> None:
    """Blocks are scheduled on an absolute clock: a stalled reader catches up at once."""
    loop = asyncio.get_running_loop()
    microphone = FileMicrophone(WEATHER, block_ms=40)
    blocks = microphone.frames()
    started = loop.time()
    await take(blocks, 2)
    await asyncio.sleep(0.15)  # the reader is busy for almost four blocks' time
    arrivals = []
    for _ in range(8):
        await anext(blocks)
        arrivals.append(loop.time() - started)

    assert arrivals[2] - arrivals[0] < 10 * MS  # blocks 3-5 were already due: no waiting
    assert 0.395 <= arrivals[-1] < 0.40 + 60 * MS  # block 10 at 10 x 40 ms, not later


async def test_after_the_file_the_microphone_hears_silence_in_real_time(tmp_path: Path) -> None:
    """The last partial block is padded; then come silent blocks, one per block_ms."""
    short = write_wav(tmp_path / "short.wav", b"\x01\x00" * 1600)  # 100 ms
    loop = asyncio.get_running_loop()
    microphone = FileMicrophone(short, block_ms=60, realtime=False)
    blocks = microphone.frames()

    first, second = await take(blocks, 2)
    assert microphone.exhausted
    started = loop.time()
    silence = await take(blocks, 4)
    took = loop.time() - started

    assert first == b"\x01\x00" * 960
    assert second == b"\x01\x00" * 640 + bytes(640)
    assert silence == [bytes(1920)] * 4
    assert 0.235 <= took < 0.24 + 100 * MS


async def test_without_realtime_the_file_comes_at_once() -> None:
    """realtime=False delivers the whole 3 s file in a small fraction of its length."""
    loop = asyncio.get_running_loop()
    expected = read_wav_as(WEATHER, CAPTURE)
    microphone = FileMicrophone(WEATHER, block_ms=60, realtime=False)
    count = -(-len(expected) // 1920)
    started = loop.time()
    got = b"".join(await take(microphone.frames(), count))
    took = loop.time() - started

    assert got[: len(expected)] == expected
    assert microphone.duration_ms == pytest.approx(3025, abs=1)
    assert took < 300 * MS


async def test_microphone_converts_any_wav_to_the_capture_format() -> None:
    """A stereo 44.1 kHz 8-bit file arrives as 16 kHz mono s16le."""
    microphone = FileMicrophone(DATA / "utterance-stereo-44k.wav", realtime=False)
    [block] = await take(microphone.frames(), 1)
    assert block == read_wav_as(DATA / "utterance-stereo-44k.wav", CAPTURE)[:1920]


async def test_a_second_reader_continues_where_the_first_stopped() -> None:
    """Iterating frames() again resumes the file rather than replaying it."""
    microphone = FileMicrophone(WEATHER, block_ms=20, realtime=False)
    first = await take(microphone.frames(), 3)
    second = await take(microphone.frames(), 3)
    assert b"".join(first + second) == read_wav_as(WEATHER, CAPTURE)[: 6 * 640]


def test_bad_microphone_files_are_clear_errors(tmp_path: Path) -> None:
    """A missing file or a non-WAV file is a config error naming the key and the file."""
    with pytest.raises(ConfigError, match=r"audio\.file_input: cannot read .*missing\.wav"):
        FileMicrophone(tmp_path / "missing.wav")
    text = tmp_path / "speech.txt"
    text.write_text("hello")
    with pytest.raises(ConfigError, match=r"audio\.file_input: .*speech\.txt: not a WAV file"):
        FileMicrophone(text)


# ---------------------------------------------------------------------- speaker


async def test_speaker_writes_the_queued_bytes_exactly_at_full_volume(tmp_path: Path) -> None:
    """At volume 100 the file holds exactly the bytes queued, in real time or not."""
    audio = [tone(130), tone(70, amplitude=0.9), tone(45)]
    for realtime in (True, False):
        out = tmp_path / f"out-{realtime}.wav"
        speaker: Speaker = FileSpeaker(out, rate=24000, realtime=realtime)
        async with speaker:
            for piece in audio:
                speaker.play_nowait(piece)
            await speaker.wait_drained()
            assert speaker.played_ms() == pytest.approx(245)
        assert read_back(out) == (24000, b"".join(audio))


async def test_the_file_grows_while_playing_and_is_valid_once_drained(tmp_path: Path) -> None:
    """Halfway through a 300 ms reply the file holds part of it; after the drain, all."""
    out = tmp_path / "out.wav"
    audio = tone(300)
    loop = asyncio.get_running_loop()
    async with FileSpeaker(out, rate=24000, block_ms=20) as speaker:
        assert out.stat().st_size == 44
        started = loop.time()
        speaker.play_nowait(audio)
        assert speaker.playing
        await asyncio.sleep(0.15)
        partway = out.stat().st_size - 44
        await speaker.wait_drained()
        took = loop.time() - started
        assert not speaker.playing
        assert read_back(out) == (24000, audio)  # while the speaker is still open

    assert REPLY.frame_bytes(100) <= partway <= REPLY.frame_bytes(200)
    assert 0.295 <= took < 0.30 + 100 * MS
    assert read_back(out) == (24000, audio)


async def test_flush_cuts_the_reply_short_within_one_block(tmp_path: Path) -> None:
    """A barge-in after 100 ms leaves about 100 ms in the file, and silence within 20 ms."""
    out = tmp_path / "out.wav"
    audio = tone(1000)
    loop = asyncio.get_running_loop()
    async with FileSpeaker(out, rate=24000, block_ms=20) as speaker:
        speaker.play_nowait(audio)
        await asyncio.sleep(0.1)
        speaker.flush()
        flushed = loop.time()
        await speaker.wait_drained()
        quiet_after = loop.time() - flushed
        played = speaker.played_ms()

    _, written = read_back(out)
    assert quiet_after <= 0.02 + 20 * MS
    assert 0.1 <= played / 1000 <= 0.12 + 40 * MS
    assert written == audio[: len(written)]
    assert len(written) == REPLY.frame_bytes(round(played))


async def test_idle_time_is_not_written(tmp_path: Path) -> None:
    """Two replies with a pause between them are written back to back, no silence between."""
    out = tmp_path / "out.wav"
    async with FileSpeaker(out, rate=16000, block_ms=20) as speaker:
        speaker.play_nowait(tone(60, 16000))
        await speaker.wait_drained()
        await asyncio.sleep(0.05)
        speaker.play_nowait(tone(40, 16000))
        await speaker.wait_drained()
    assert read_back(out) == (16000, tone(60, 16000) + tone(40, 16000))


async def test_closing_mid_reply_keeps_what_played_and_a_valid_header(tmp_path: Path) -> None:
    """Leaving the speaker while it plays stops at once, and the file is a valid WAV."""
    out = tmp_path / "out.wav"
    audio = tone(2000)
    loop = asyncio.get_running_loop()
    async with FileSpeaker(out, rate=24000) as speaker:
        speaker.play_nowait(audio)
        await asyncio.sleep(0.06)
        closing = loop.time()
    took = loop.time() - closing

    _, written = read_back(out)
    assert took < 20 * MS
    assert 0 < len(written) <= REPLY.frame_bytes(120)
    assert written == audio[: len(written)]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_half_volume_scales_what_is_written(tmp_path: Path) -> None:
    """set_volume(50) applies the gain curve to audio played after it, not before."""
    before, after = tone(40), tone(60)
    for realtime in (True, False):
        out = tmp_path / f"out-{realtime}.wav"
        async with FileSpeaker(out, rate=24000, realtime=realtime) as speaker:
            speaker.play_nowait(before)
            await speaker.wait_drained()
            speaker.set_volume(50)
            speaker.play_nowait(after)
            await speaker.wait_drained()
        assert read_back(out) == (24000, before + apply_gain(after, 50))


async def test_a_speaker_into_a_missing_directory_names_the_file(tmp_path: Path) -> None:
    """An output path that cannot be created raises OSError with the path at entry."""
    speaker = FileSpeaker(tmp_path / "no" / "such" / "out.wav")
    with pytest.raises(OSError, match=r"cannot write audio output .*out\.wav"):
        async with speaker:
            pass


async def test_the_speaker_can_write_to_dev_null() -> None:
    """os.devnull (no file_output configured) plays and drains like a file."""
    async with FileSpeaker(Path(os.devnull), rate=24000, block_ms=20) as speaker:
        speaker.play_nowait(tone(40))
        await speaker.wait_drained()
        assert speaker.played_ms() == pytest.approx(40)


def test_odd_length_audio_is_refused(tmp_path: Path) -> None:
    """Half a sample is a caller bug, reported at once."""
    with pytest.raises(ValueError, match="even length"):
        FileSpeaker(tmp_path / "out.wav").play_nowait(b"\x01\x02\x03")
