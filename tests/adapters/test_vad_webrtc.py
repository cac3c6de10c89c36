"""webrtcvad on real (espeak-ng) speech, alone and behind the endpointer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coze_edge.adapters.vad_webrtc import WebrtcVad
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.core.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechContinues,
    SpeechEnded,
    SpeechStarted,
)
from tests.support.data import DATA

DEMO = Path(__file__).parents[2] / "coze_edge" / "data" / "demo-utterance.wav"
FRAME = CAPTURE.frame_bytes(20)
BLOCK = CAPTURE.frame_bytes(60)  # what a microphone delivers


def split(pcm: bytes, size: int = FRAME) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


def loud_spans(pcm: bytes, *, gap_frames: int = 25) -> list[tuple[int, int]]:
    """
    Byte spans of the 20 ms frames well above the noise floor (energy, not VAD), merging
    loud runs separated by less than ``gap_frames``.
    """
    energy = [
        float(np.sqrt(np.mean(np.frombuffer(f, dtype="<i2").astype(np.float64) ** 2)))
        for f in split(pcm)
    ]
    loud = [i for i, e in enumerate(energy) if e > 0.1 * max(energy)]
    spans: list[list[int]] = []
    for i in loud:
        if spans and i - spans[-1][1] < gap_frames:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return [(first * FRAME, (last + 1) * FRAME) for first, last in spans]


def utterances(pcm: bytes, endpointer: Endpointer) -> list[tuple[int, bytes, bool]]:
    """(offset in the input, audio, ended) for each utterance, feeding microphone blocks."""
    found: list[tuple[int, bytearray, bool]] = []
    events: list[EndpointEvent] = []
    for block in split(pcm, BLOCK):
        events += endpointer.feed(block)
    for event in events:
        match event:
            case SpeechStarted(audio):
                found.append((0, bytearray(audio), False))
            case SpeechContinues(audio):
                found[-1][1].extend(audio)
            case SpeechEnded():
                found[-1] = (0, found[-1][1], True)
    return [(pcm.find(audio), bytes(audio), ended) for _, audio, ended in found]


def test_speech_is_found_in_the_spoken_part_only() -> None:
    """Most frames of the spoken question are speech; no frame of digital silence is."""
    pcm = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
    [(start, end)] = loud_spans(pcm)
    vad = WebrtcVad(2)
    decisions = [vad.is_speech(frame) for frame in split(pcm)]
    spoken = decisions[start // FRAME : end // FRAME]
    before = decisions[: start // FRAME - 2]
    after = decisions[end // FRAME + 5 :]

    assert sum(spoken) >= 0.9 * len(spoken)
    assert len(before) >= 20
    assert len(after) >= 40
    assert not any(before)
    assert not any(after)


def test_silence_is_never_speech_at_any_aggressiveness() -> None:
    """All-zero frames are silence in every mode, at every rate webrtcvad accepts."""
    for mode in range(4):
        for rate in (8000, 16000, 32000, 48000):
            vad = WebrtcVad(mode, rate)
            assert not vad.is_speech(bytes(rate // 50 * 2))


def test_bad_settings_and_frames_are_clear_errors() -> None:
    """Out-of-range aggressiveness, an unsupported rate or frame length raise ValueError."""
    with pytest.raises(ValueError, match="between 0 and 3"):
        WebrtcVad(4)
    with pytest.raises(ValueError, match="24000"):
        WebrtcVad(2, 24000)
    with pytest.raises(ValueError, match="got 100 bytes"):
        WebrtcVad(2).is_speech(bytes(100))


def test_the_demo_question_is_exactly_one_utterance_covering_the_speech() -> None:
    """Endpointer and webrtcvad find one utterance in the demo WAV, spanning all its words."""
    pcm = read_wav_as(DEMO, CAPTURE)
    [(start, end)] = loud_spans(pcm)
    endpointer = Endpointer(WebrtcVad(2), pre_roll_ms=300, start_ms=60, end_silence_ms=700)

    [(offset, audio, ended)] = utterances(pcm, endpointer)

    assert ended
    assert offset >= 0, "the utterance is a contiguous piece of the input"
    assert start - CAPTURE.frame_bytes(300) <= offset <= start - CAPTURE.frame_bytes(200)
    assert offset + len(audio) >= end + CAPTURE.frame_bytes(700)
    assert offset + len(audio) <= end + CAPTURE.frame_bytes(900)
    assert not endpointer.in_speech


def test_two_questions_are_two_utterances() -> None:
    """Questions 2.5 s apart end and start separately, each covering its own words."""
    pcm = read_wav_as(DATA / "two-utterances.wav", CAPTURE)
    spans = loud_spans(pcm)
    found = utterances(pcm, Endpointer(WebrtcVad(2)))

    assert len(spans) == 2
    assert [ended for _, _, ended in found] == [True, True]
    for (start, end), (offset, audio, _) in zip(spans, found, strict=True):
        assert offset <= start
        assert offset + len(audio) >= end
    assert found[0][0] + len(found[0][1]) <= found[1][0]
