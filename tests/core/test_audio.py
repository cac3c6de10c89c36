"""PCM arithmetic: formats, gain, level, echo likeness, framing, whole samples, pre-roll."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coze_edge.core.audio import (
    CAPTURE,
    AudioFormat,
    FrameSplitter,
    PreRoll,
    WholeSamples,
    alignment_scores,
    amplify,
    apply_gain,
    gain_factor,
    rms,
)


def pcm(*samples: int) -> bytes:
    return np.array(samples, dtype="<i2").tobytes()


def samples(data: bytes) -> list[int]:
    return [int(s) for s in np.frombuffer(data, dtype="<i2")]


def test_capture_format_arithmetic() -> None:
    """16 kHz mono s16le is 32 bytes per ms and 640 bytes per 20 ms frame."""
    assert AudioFormat(16000, 1, 2) == CAPTURE
    assert CAPTURE.bytes_per_ms() == 32.0
    assert CAPTURE.frame_bytes(20) == 640
    assert CAPTURE.duration_ms(640) == 20.0


def test_frame_bytes_rounds_down_to_whole_sample_frames() -> None:
    """A duration that is not a whole number of samples gives whole stereo frames."""
    cd = AudioFormat(44100, channels=2)
    assert cd.frame_bytes(10) == 441 * 4
    assert cd.frame_bytes(1) == 44 * 4  # 44.1 samples -> 44
    assert cd.bytes_per_ms() == pytest.approx(176.4)
    assert cd.duration_ms(176400) == 1000.0


@pytest.mark.parametrize(("rate", "channels", "width"), [(0, 1, 2), (16000, 0, 2), (16000, 1, 5)])
def test_impossible_formats_are_rejected(rate: int, channels: int, width: int) -> None:
    """A format with no rate, no channels or an odd sample size is an error."""
    with pytest.raises(ValueError, match="must"):
        AudioFormat(rate, channels, width)


def test_full_volume_leaves_audio_untouched() -> None:
    """At 100 % the very same bytes come back."""
    audio = pcm(-32768, -1, 0, 1, 32767)
    assert apply_gain(audio, 100) is audio


def test_zero_volume_is_silence_of_the_same_length() -> None:
    """At 0 % every sample is zero."""
    assert apply_gain(pcm(-32768, 5, 32767), 0) == bytes(6)


def test_half_volume_is_a_quarter_of_the_amplitude() -> None:
    """50 % scales amplitude by 0.25 (-12 dB), rounding to the nearest sample value."""
    assert gain_factor(50) == 0.25
    assert samples(apply_gain(pcm(1000, -1000, 6, 32767, -32768), 50)) == [
        250,
        -250,
        2,
        8192,
        -8192,
    ]


def test_volume_outside_the_range_is_clamped() -> None:
    """Above 100 changes nothing, below 0 is silence."""
    audio = pcm(1200, -1200)
    assert apply_gain(audio, 150) == audio
    assert apply_gain(audio, -5) == bytes(4)


@given(st.binary(max_size=200), st.integers(0, 100))
def test_gain_never_grows_flips_or_resizes_a_sample(audio: bytes, percent: int) -> None:
    """Every scaled sample keeps its sign and is no louder; the length is unchanged."""
    out = apply_gain(audio, percent)
    assert len(out) == len(audio)
    whole = len(audio) - len(audio) % 2
    assert out[whole:] == audio[whole:]
    for before, after in zip(samples(audio[:whole]), samples(out[:whole]), strict=True):
        assert abs(after) <= abs(before)
        assert after == 0 or (after > 0) == (before > 0)


def test_amplify_scales_by_decibels_and_clips() -> None:
    """+6.02 dB doubles, -6.02 dB halves, 0 dB is the same bytes, overflow is clipped."""
    audio = pcm(1000, -1000, 20000, -20000) + b"\x01"

    assert samples(amplify(audio, 20 * math.log10(2))[:-1]) == [2000, -2000, 32767, -32768]
    assert samples(amplify(audio, -20 * math.log10(2))[:-1]) == [500, -500, 10000, -10000]
    assert amplify(audio, 6)[-1:] == b"\x01"
    assert amplify(audio, 0) is audio


def noise(seed: int, count: int, scale: float = 3000.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, count)


def s16(signal: np.ndarray) -> bytes:
    return bytes(np.clip(np.rint(signal), -32768, 32767).astype("<i2").tobytes())


def test_an_echo_scores_one_where_it_sits_in_the_history() -> None:
    """A quiet copy of part of the history scores (nearly) 1.0 there, little elsewhere."""
    history = noise(1, 8000)
    block = 0.05 * history[5000:5960] + noise(2, 960, 10.0)

    scores = alignment_scores(s16(block), s16(history))

    assert len(scores) == 8000 - 960 + 1
    assert int(np.argmax(scores)) == 5000
    assert scores[5000] > 0.95
    assert np.delete(scores, range(4990, 5011)).max() < 0.2


def test_a_voice_not_in_the_history_scores_low() -> None:
    scores = alignment_scores(s16(noise(3, 960)), s16(noise(4, 8000)))
    assert scores.max() < 0.2


def test_silence_in_the_history_matches_nothing() -> None:
    """A faint block against silent stretches does not score high by normalizing."""
    history = np.concatenate([np.zeros(4000), noise(5, 4000)])
    block = noise(6, 960, 5.0)
    scores = alignment_scores(s16(block), s16(history))
    assert scores[:3000].max() < 0.05


@pytest.mark.parametrize(
    ("block", "history", "size"),
    [(b"", pcm(1, 2, 3), 0), (pcm(1, 2, 3), pcm(1, 2), 0), (bytes(4), pcm(1, 2, 3), 2)],
    ids=["empty-block", "block-longer", "silent-block"],
)
def test_alignment_scores_edge_cases(block: bytes, history: bytes, size: int) -> None:
    scores = alignment_scores(block, history)
    assert len(scores) == size
    assert not scores.any()


def test_rms_of_a_sine_is_its_amplitude_over_root_two() -> None:
    """A full-cycle sine of amplitude A measures A / sqrt(2)."""
    t = np.arange(1600) / 16000
    sine = np.rint(10000 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes()
    assert rms(sine) == pytest.approx(10000 / math.sqrt(2), rel=1e-3)
    assert rms(bytes(640)) == 0.0
    assert rms(b"") == 0.0


def test_splitter_yields_whole_frames_and_keeps_the_rest() -> None:
    """Chunks of any size come out as whole frames; the remainder waits."""
    splitter = FrameSplitter(4)
    assert splitter.push(b"abc") == []
    assert splitter.pending == 3
    assert splitter.push(b"defghij") == [b"abcd", b"efgh"]
    assert splitter.pending == 2
    assert splitter.push(b"kl") == [b"ijkl"]
    splitter.push(b"xy")
    splitter.clear()
    assert splitter.push(b"1234") == [b"1234"]


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(1, 16))
def test_splitter_output_is_the_input_in_order(chunks: list[bytes], size: int) -> None:
    """Joined frames plus what is pending are exactly the input."""
    splitter = FrameSplitter(size)
    frames = [frame for chunk in chunks for frame in splitter.push(chunk)]
    assert all(len(frame) == size for frame in frames)
    joined = b"".join(frames)
    data = b"".join(chunks)
    assert joined == data[: len(joined)]
    assert splitter.pending == len(data) - len(joined) < size


def test_whole_samples_carry_an_odd_byte_to_the_next_piece() -> None:
    """A piece ending mid-sample leaves its last byte for the next piece of its stream."""
    samples = WholeSamples()
    assert samples.take("a", b"\x01\x02\x03") == b"\x01\x02"
    assert samples.pending == 1
    assert samples.take("a", b"\x04") == b"\x03\x04"
    assert samples.take("a", b"\x05") == b""
    assert samples.take("a", b"\x06\x07\x08") == b"\x05\x06\x07\x08"
    assert samples.pending == 0


def test_whole_samples_drop_the_odd_byte_of_an_ended_stream() -> None:
    """Another stream, or clear(), drops the byte left over: it never joins other audio."""
    samples = WholeSamples()
    samples.take("a", b"\x01\x02\x03")
    assert samples.take("b", b"\x04\x05") == b"\x04\x05"
    samples.take("b", b"\x06")
    samples.clear()
    assert samples.pending == 0
    assert samples.take("b", b"\x07\x08") == b"\x07\x08"


@given(st.lists(st.binary(max_size=9), max_size=30))
def test_whole_samples_of_any_split_are_the_stream(pieces: list[bytes]) -> None:
    """However a stream is split, the pieces come out as whole samples and together are
    the stream, less a last odd byte."""
    samples = WholeSamples()
    out = [samples.take("reply", piece) for piece in pieces]
    stream = b"".join(pieces)
    assert all(len(piece) % 2 == 0 for piece in out)
    assert b"".join(out) == stream[: len(stream) // 2 * 2]


def test_pre_roll_keeps_only_the_newest_bytes() -> None:
    """Pushes beyond the capacity drop the oldest bytes; take() empties the ring."""
    ring = PreRoll(6)
    for frame in (b"aa", b"bb", b"cc", b"dd"):
        ring.push(frame)
    assert len(ring) == 6
    assert ring.take() == b"bbccdd"
    assert ring.take() == b""
    ring.push(b"0123456789")
    assert ring.take() == b"456789"


def test_pre_roll_of_zero_keeps_nothing() -> None:
    """A ring without capacity stays empty."""
    ring = PreRoll(0)
    ring.push(b"abcd")
    assert ring.take() == b""
