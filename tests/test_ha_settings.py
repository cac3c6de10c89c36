"""The Home Assistant settings of the ``mqtt`` section, and the status board's part of the
diagnostics (audio health, Coze reconnects) and of the controls (wake word, turn detection)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coze_edge.adapters.stores import ControlsStore
from coze_edge.config import MqttConfig
from coze_edge.core.status import Controls, State
from coze_edge.status_board import StatusBoard


def test_the_defaults_ask_pypi_and_place_the_device_nowhere() -> None:
    """Update checks on, against PyPI's JSON API; no link, no area."""
    mqtt = MqttConfig()

    assert mqtt.check_updates is True
    assert mqtt.updates_url == "https://pypi.org/pypi/coze-edge/json"
    assert (mqtt.configuration_url, mqtt.suggested_area) == (None, None)
    assert list(mqtt.problems()) == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"updates_url": "http://pypi.example/pypi/coze-edge/json"},
            ("updates_url", "http:// only to loopback (a test's fake PyPI): use https://"),
        ),
        (
            {"updates_url": "ftp://pypi.org/x"},
            (
                "updates_url",
                "must be a URL starting with http:// or https://, got 'ftp://pypi.org/x'",
            ),
        ),
        (
            {"configuration_url": "kitchen.local"},
            (
                "configuration_url",
                "must be a URL starting with http:// or https:// or homeassistant://, "
                "got 'kitchen.local'",
            ),
        ),
        ({"suggested_area": " "}, ("suggested_area", "must not be empty; null = none")),
    ],
)
def test_a_wrong_home_assistant_setting_is_named(
    settings: dict[str, Any], expected: tuple[str, str]
) -> None:
    """Each problem names its key and what would do."""
    assert list(replace(MqttConfig(), **settings).problems()) == [expected]


@pytest.mark.parametrize(
    "settings",
    [
        {"updates_url": "http://127.0.0.1:8080/pypi/coze-edge/json"},
        {"configuration_url": "homeassistant://config/devices"},
        {"configuration_url": "http://kitchen.local:8123", "suggested_area": "Kitchen"},
    ],
)
def test_good_home_assistant_settings_pass(settings: dict[str, Any]) -> None:
    """A loopback stand-in for PyPI, Home Assistant's own link scheme, a plain address."""
    assert list(replace(MqttConfig(), **settings).problems()) == []


def board(tmp_path: Path, configured: Controls | None = None) -> StatusBoard:
    return StatusBoard(ControlsStore(tmp_path, configured), default_volume=100, version="1.2")


def test_the_board_counts_each_lost_coze_session(tmp_path: Path) -> None:
    """Connected to not connected is one reconnect; starting up is none."""
    status = board(tmp_path)
    for state in (State.CONNECTING, State.IDLE, State.LISTENING, State.CONNECTING, State.IDLE):
        status.conversation_state(state, None)

    assert status.diagnostics.get_nowait().coze_reconnects == 1
    assert status.diagnostics.get_nowait().version == "1.2"


def test_the_board_reports_a_lost_or_silent_audio_device(tmp_path: Path) -> None:
    """A lost device wins over a silent microphone; once both are gone, audio is fine."""
    status = board(tmp_path)
    status.microphone_problem("no audio from the microphone for 5 s")
    status.audio_fault("microphone unplugged")
    lost = status.diagnostics.get_nowait().audio_problem
    status.audio_fault(None)
    silent = status.diagnostics.get_nowait().audio_problem
    status.microphone_problem(None)

    assert lost == "microphone unplugged"
    assert silent == "no audio from the microphone for 5 s"
    assert status.diagnostics.get_nowait().audio_problem is None


def test_chosen_controls_are_kept_and_a_new_board_starts_with_them(tmp_path: Path) -> None:
    """A wake word and turn detection chosen since start are in controls.json and in the
    state the next start publishes first."""
    configured = Controls(wake_word="alexa")
    first = board(tmp_path, configured)
    first.set_controls(replace(first.controls, wake_word=None, turn_detection="server_vad"))

    status = board(tmp_path, configured).status.get_nowait()

    assert (status.wake_word, status.turn_detection) == (None, "server_vad")
