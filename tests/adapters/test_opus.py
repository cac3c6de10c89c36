"""The Opus uplink codec: libopus through ctypes, on real speech."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from coze_edge.adapters import opus
from coze_edge.adapters.opus import (
    OpusDecoder,
    OpusEncoder,
    OpusError,
    OpusSettings,
    OpusStream,
    OpusUnavailable,
)
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from tests.support.data import DATA

SPEECH = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
LOOKAHEAD = 104  # samples: the encoder's delay at 16 kHz (measured; 6.5 ms)


def similarity(original: bytes, decoded: bytes, delay: int) -> float:
    a = np.frombuffer(original, dtype="<i2").astype(np.float64)
    b = np.frombuffer(decoded, dtype="<i2").astype(np.float64)[delay : delay + len(a)]
    a = a[: len(b)]
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


@pytest.mark.parametrize("frame_ms", [20, 60])
def test_speech_survives_the_round_trip(frame_ms: int) -> None:
    """One packet per frame; decoded, the speech matches the input (after the lookahead)."""
    stream = OpusStream(OpusEncoder(frame_ms=frame_ms, bitrate=24000))
    packets = stream.packets(SPEECH) + stream.end()
    decoder = OpusDecoder()
    frames = [decoder.decode(packet) for packet in packets]

    frame_bytes = CAPTURE.frame_bytes(frame_ms)
    assert len(packets) == -(-len(SPEECH) // frame_bytes)
    assert {len(frame) for frame in frames} == {frame_bytes}
    assert similarity(SPEECH, b"".join(frames), LOOKAHEAD) > 0.95
    seconds = len(SPEECH) / CAPTURE.frame_bytes(1000)
    bitrate = sum(map(len, packets)) * 8 / seconds
    print(f"{frame_ms} ms packets: {bitrate / 1000:.1f} kbit/s for 24 kbit/s asked")
    assert 6000 < bitrate < 30000  # variable rate: pauses cost next to nothing


def test_the_bitrate_setting_reaches_the_encoder() -> None:
    sizes = {}
    for bitrate in (12000, 32000):
        stream = OpusStream(OpusEncoder(bitrate=bitrate))
        sizes[bitrate] = sum(map(len, stream.packets(SPEECH)))
    assert sizes[32000] > 1.5 * sizes[12000]


def test_a_stream_carries_remainders_and_pads_the_end() -> None:
    """Chunks of any size give the same packets as one piece; the end is padded with silence."""
    encoder_bytes = OpusEncoder().frame_bytes
    whole = OpusStream(OpusEncoder())
    reference = whole.packets(SPEECH[: 10 * encoder_bytes + 100]) + whole.end()

    stream = OpusStream(OpusEncoder())
    packets: list[bytes] = []
    piece = SPEECH[: 10 * encoder_bytes + 100]
    for start in range(0, len(piece), 333):
        packets += stream.packets(piece[start : start + 333])
    assert len(packets) == 10
    packets += stream.end()
    assert packets == reference
    assert stream.end() == []

    stream.packets(b"\x01\x00" * 10)
    stream.clear()
    assert stream.end() == []


def test_bad_input_is_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="Opus frames are 10, 20, 40, 60 ms, not 30"):
        OpusEncoder(frame_ms=30)
    with pytest.raises(ValueError, match="not 22050"):
        OpusDecoder(22050)
    with pytest.raises(ValueError, match="an Opus frame is 640 bytes, got 10"):
        OpusEncoder().encode(bytes(10))
    with pytest.raises(OpusError, match="opus_decode: corrupted stream"):
        OpusDecoder().decode(b"\xff\xff\xff")
    with pytest.raises(OpusError, match="empty packet"):
        OpusDecoder().decode(b"")
    with pytest.raises(OpusError, match="bitrate"):
        OpusEncoder(bitrate=-5)


def test_settings_make_an_encoder() -> None:
    encoder = OpusSettings(rate=16000, bitrate=16000, frame_ms=40).encoder()
    assert encoder.frame_bytes == CAPTURE.frame_bytes(40)


def test_a_missing_libopus_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_library(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    opus._lib.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    try:
        assert not opus.available()
        with pytest.raises(OpusUnavailable, match="apt install libopus0"):
            OpusEncoder()
    finally:
        monkeypatch.undo()
        opus._lib.cache_clear()
    assert opus.available()
    assert opus.version().startswith("libopus")
