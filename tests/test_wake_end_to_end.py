"""The wake word through the whole daemon: real model, committed speech, the simulator."""

from __future__ import annotations

import contextlib
from pathlib import Path

from coze_edge.adapters.wav import read_wav_as
from coze_edge.config import config_from_mapping
from coze_edge.core.audio import CAPTURE
from coze_edge.simulator import Simulator
from tests.support.daemon import daemon_config, running_daemon
from tests.support.data import DATA

QUESTION_STARTS_S = 1.43  # in wake-okay-nabu-then-question.wav (tests/data/README.md)


async def run_daemon_on(
    wav: Path, tmp_path: Path, *, seconds: float
) -> tuple[Simulator, list[str]]:
    """The daemon with the wake word on, ``wav`` as its microphone, until its first turn or
    for ``seconds``; the simulator and the types of the events."""
    async with Simulator(reply_speed=50.0) as sim:
        config = daemon_config(
            sim,
            tmp_path,
            audio={"backend": "file", "file_input": str(wav), "file_realtime": False},
            wake={"word": "okay_nabu"},
        )
        async with running_daemon(config) as run:
            with contextlib.suppress(TimeoutError):
                await run.wait(lambda: any(e["type"] == "turn" for e in run.events), seconds)
    return sim, [event["type"] for event in run.events]


async def test_the_wake_word_opens_a_turn_with_only_the_audio_after_it(tmp_path: Path) -> None:
    """'Okay Nabu, what is the weather like today?': one turn, without the wake word."""
    wav = DATA / "wake-okay-nabu-then-question.wav"
    sim, events = await run_daemon_on(wav, tmp_path, seconds=20)

    assert "turn" in events
    [conn] = sim.connections
    appended = conn.appended_audio()
    spoken = read_wav_as(wav, CAPTURE)
    offset = spoken.find(appended[: 16000 * 2 // 2])  # where the upstream audio begins
    assert offset >= 0
    begins_s = offset / (2 * 16000)
    assert 0.9 <= begins_s <= QUESTION_STARTS_S, (
        begins_s
    )  # after the wake word, before the question


async def test_speech_without_the_wake_word_sends_nothing(tmp_path: Path) -> None:
    """Other speech in the room opens no turn and never leaves the device."""
    sim, events = await run_daemon_on(DATA / "utterance-weather.wav", tmp_path, seconds=4)

    [conn] = sim.connections
    assert "input_audio_buffer.append" not in conn.event_types()
    assert "turn" not in events


async def test_cleaned_input_still_finds_the_question(tmp_path: Path) -> None:
    """With noise suppression, high-pass and AGC on, the VAD still hears the question."""
    from coze_edge.daemon import cleaned

    config = config_from_mapping(
        {
            "coze": {"bot_id": "7"},
            "auth": {"method": "pat"},
            "device": {"id": "42"},
            "state_dir": str(tmp_path),
            "audio": {
                "backend": "file",
                "file_input": str(DATA / "utterance-weather.wav"),
                "file_realtime": False,
                "noise_suppression": True,
                "high_pass": True,
                "auto_gain": True,
            },
        },
        env={},
    )
    from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker

    speaker = FileSpeaker(tmp_path / "out.wav", realtime=False)
    mic = FileMicrophone(DATA / "utterance-weather.wav", realtime=False)
    assert cleaned(mic, speaker, config) is not None
    assert speaker.on_render is None  # no echo cancellation for a file: it hears no speaker
    assert mic.on_capture is not None
    heard = bytearray()
    async with mic:
        async for block in mic.frames():
            heard += block
            if len(heard) >= 4 * 32000:
                break
    source = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
    assert len(heard) >= len(source)
    from coze_edge.adapters.vad_webrtc import WebrtcVad

    vad = WebrtcVad(2)
    speech = sum(vad.is_speech(bytes(heard[i : i + 640])) for i in range(0, len(source) - 640, 640))
    assert speech > 40  # about a second and a half of speech survives the cleaning
