"""Reading WAV files of every common kind as PCM in the format asked for."""

from __future__ import annotations

import struct
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from coze_edge.adapters.wav import WavFormatError, read_wav_as
from coze_edge.core.audio import CAPTURE, AudioFormat, rms
from tests.support.data import DATA
from tests.support.signals import dominant_hz, sine, values


def write_wav(
    path: Path,
    data: bytes,
    *,
    rate: int,
    channels: int,
    bits: int,
    tag: int = 1,
    extensible: bool = False,
    extra_chunk: bool = False,
) -> Path:
    """A WAV file written by hand, so that any header this module claims to read can be made."""
    block = channels * bits // 8
    if extensible:
        sub_format = struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
        fmt = struct.pack(
            "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0
        )
        fmt += sub_format
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:  # an odd-sized LIST chunk before the data, padded to even
        chunks += b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"
    chunks += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


def test_a_wav_in_the_capture_format_is_read_byte_for_byte() -> None:
    """16 kHz mono 16-bit is returned exactly as stored."""
    path = DATA / "utterance-weather.wav"
    with wave.open(str(path), "rb") as wav:
        stored = wav.readframes(wav.getnframes())
    assert read_wav_as(path, CAPTURE) == stored


def test_the_stereo_44k_fixture_converts_to_the_mono_one() -> None:
    """The same speech as 8-bit stereo at 44.1 kHz reads as (nearly) the 16 kHz mono file."""
    mono = values(read_wav_as(DATA / "utterance-weather.wav", CAPTURE))
    converted = values(read_wav_as(DATA / "utterance-stereo-44k.wav", CAPTURE))
    lead = 16000 * 2 // 10  # the mono file has 0.5 s before the words, the stereo 0.3 s
    reference = mono[lead : lead + len(converted)]

    assert abs(len(converted) / 16000 - 2.725) < 0.01
    assert np.corrcoef(reference, converted)[0, 1] > 0.999
    # left at full level, right at half: the average is 3/4 of the original
    assert np.sqrt(np.mean(converted**2)) / np.sqrt(np.mean(reference**2)) == pytest.approx(
        0.75, rel=0.02
    )


@pytest.mark.parametrize(
    ("bits", "tag", "extensible", "encode"),
    [
        (8, 1, False, lambda x: (np.rint(x * 127) + 128).astype(np.uint8).tobytes()),
        (16, 1, True, lambda x: np.rint(x * 32767).astype("<i2").tobytes()),
        (
            24,
            1,
            False,
            lambda x: (
                np.rint(x * 8388607).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
            ),
        ),
        (32, 1, True, lambda x: np.rint(x * 2147483647).astype("<i4").tobytes()),
        (32, 3, False, lambda x: x.astype("<f4").tobytes()),
        (64, 3, True, lambda x: x.astype("<f8").tobytes()),
    ],
)
def test_odd_wav_formats_become_capture_audio(
    tmp_path: Path, bits: int, tag: int, extensible: bool, encode: Callable[[np.ndarray], bytes]
) -> None:
    """8/16/24/32-bit integer and float WAVs, stereo at 48 kHz, read as the same 16 kHz tone."""
    tone = sine(1000, 48000, 0.5, 0.5)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    path = write_wav(
        tmp_path / f"tone-{bits}.wav",
        encode(stereo),
        rate=48000,
        channels=2,
        bits=bits,
        tag=tag,
        extensible=extensible,
        extra_chunk=True,
    )

    pcm = read_wav_as(path, CAPTURE)

    assert len(pcm) == 8000 * 2
    assert dominant_hz(pcm, 16000) == pytest.approx(1000, abs=1)
    assert rms(pcm) == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.02)
    expected = sine(1000, 16000, 0.5, 0.5) * 32767
    assert np.abs(values(pcm)[400:-400] - expected[400:-400]).max() < 0.02 * 32767


def test_mono_can_be_read_as_stereo(tmp_path: Path) -> None:
    """A mono file read into a two-channel format has the samples in both channels."""
    data = np.array([1, -2, 3], dtype="<i2").tobytes()
    path = write_wav(tmp_path / "m.wav", data, rate=16000, channels=1, bits=16)
    stereo = read_wav_as(path, AudioFormat(16000, channels=2))
    assert values(stereo).tolist() == [1, 1, -2, -2, 3, 3]


def test_a_file_that_is_not_a_wav_is_a_clear_error(tmp_path: Path) -> None:
    """Reading a text file names the file and says it is not a WAV file."""
    path = tmp_path / "notes.wav"
    path.write_text("these are not the samples you are looking for\n")
    with pytest.raises(WavFormatError, match=r"notes\.wav: not a WAV file") as caught:
        read_wav_as(path, CAPTURE)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("bits", "tag", "message"),
    [
        (8, 6, r"A-law \(format tag 0x0006\) is not supported"),
        (12, 1, "12-bit integer samples are not supported"),
        (16, 3, "16-bit float samples are not supported"),
    ],
)
def test_unsupported_encodings_are_named(tmp_path: Path, bits: int, tag: int, message: str) -> None:
    """Compressed or unusual sample formats are refused with what they are."""
    path = write_wav(tmp_path / "odd.wav", bytes(64), rate=8000, channels=1, bits=bits, tag=tag)
    with pytest.raises(WavFormatError, match=message):
        read_wav_as(path, CAPTURE)


def test_a_wav_without_data_or_format_is_refused(tmp_path: Path) -> None:
    """A RIFF/WAVE file missing its chunks says which one is missing."""
    no_data = tmp_path / "no-data.wav"
    no_data.write_bytes(
        b"RIFF"
        + struct.pack("<I", 28)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    )
    with pytest.raises(WavFormatError, match=r"no-data\.wav: WAV file without a 'data' chunk"):
        read_wav_as(no_data, CAPTURE)
    no_fmt = tmp_path / "no-fmt.wav"
    no_fmt.write_bytes(b"RIFF" + struct.pack("<I", 12) + b"WAVEdata" + struct.pack("<I", 0))
    with pytest.raises(WavFormatError, match="'fmt ' chunk"):
        read_wav_as(no_fmt, CAPTURE)


def test_a_truncated_wav_is_read_up_to_its_last_whole_frame(tmp_path: Path) -> None:
    """A header claiming more data than the file holds (a crashed writer) still reads."""
    data = np.arange(10, dtype="<i2").tobytes()
    path = write_wav(tmp_path / "cut.wav", data, rate=16000, channels=1, bits=16)
    path.write_bytes(path.read_bytes()[:-3])  # 8.5 samples left
    assert values(read_wav_as(path, CAPTURE)).tolist() == list(range(8))


def test_a_missing_file_is_an_os_error_naming_it(tmp_path: Path) -> None:
    """A path that does not exist raises FileNotFoundError with the path."""
    with pytest.raises(FileNotFoundError, match=r"nothing-here\.wav"):
        read_wav_as(tmp_path / "nothing-here.wav", CAPTURE)
