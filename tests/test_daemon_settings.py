"""How the daemon turns the configuration into the session's barge-in rules."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.config import Config, config_from_mapping
from coze_edge.daemon import BARGE_IN_DUCK_MS_AEC, cleaned, session_settings
from tests.support.data import DATA


def config(**vad: Any) -> Config:
    return config_from_mapping(
        {
            "coze": {"bot_id": "7"},
            "auth": {"method": "pat"},
            "device": {"id": "42"},
            "state_dir": "/tmp",
            "vad": vad,
        },
        env={},
    )


def test_with_echo_cancellation_speech_over_the_residue_interrupts() -> None:
    settings = session_settings(config(), None, echo_cancelled=True)
    assert settings.barge_in_start_ms == 240
    assert settings.barge_in_min_rms == 32768 * 10 ** (-45 / 20)


def test_without_it_the_device_is_half_duplex() -> None:
    settings = session_settings(config(), None, echo_cancelled=False)
    assert settings.barge_in_start_ms == 300
    assert settings.barge_in_min_rms == math.inf


def test_configured_values_win() -> None:
    settings = session_settings(
        config(barge_in_start_ms=150, barge_in_level_dbfs=-30), None, echo_cancelled=False
    )
    assert settings.barge_in_start_ms == 150
    assert settings.barge_in_min_rms == 32768 * 10 ** (-30 / 20)


def test_ducking_is_for_echo_cancelled_replies_only() -> None:
    """vad.barge_in_duck_ms applies with echo cancellation; half-duplex never ducks."""
    ducking = config(barge_in_duck_ms=60)
    assert session_settings(ducking, None, echo_cancelled=True).barge_in_duck_ms == 60
    assert session_settings(ducking, None, echo_cancelled=False).barge_in_duck_ms == 0
    default = session_settings(config(), None, echo_cancelled=True).barge_in_duck_ms
    assert default == BARGE_IN_DUCK_MS_AEC


def test_an_underrun_or_overrun_tells_the_echo_canceller_its_path_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hooks ``cleaned`` installs pass each speaker underrun and microphone overrun on
    to the canceller (``AudioProcessor.path_moved``), once each, at the next block."""
    from coze_edge.adapters.apm import AudioProcessor

    moved: list[str] = []
    monkeypatch.setattr(AudioProcessor, "path_moved", lambda self: moved.append("moved"))
    wav = DATA / "utterance-weather.wav"
    aec = config_from_mapping(
        {
            "coze": {"bot_id": "7"},
            "auth": {"method": "pat"},
            "device": {"id": "42"},
            "state_dir": str(tmp_path),
            "audio": {"backend": "file", "file_input": str(wav), "echo_cancellation": True},
        },
        env={},
    )
    mic, speaker = FileMicrophone(wav), FileSpeaker(tmp_path / "out.wav")
    assert cleaned(mic, speaker, aec) is not None
    assert mic.on_capture is not None
    assert speaker.on_render is not None
    block = bytes(960)
    speaker.on_render(block, 24000)
    mic.on_capture(block)
    assert moved == []
    speaker.underruns += 1
    speaker.on_render(block, 24000)
    mic.on_capture(block)
    mic.overruns += 1
    mic.on_capture(block)
    speaker.on_render(block, 24000)
    assert moved == ["moved", "moved"]
