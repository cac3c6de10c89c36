"""How the daemon turns the configuration into the session's barge-in rules."""

from __future__ import annotations

import math
from typing import Any

from coze_edge.config import Config, config_from_mapping
from coze_edge.daemon import BARGE_IN_DUCK_MS_AEC, session_settings


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
