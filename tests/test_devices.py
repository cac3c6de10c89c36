"""
``coze-edge devices``, the real command: the voice hardware recognised among PortAudio's
devices (PulseAudio null sinks named after real hardware, shown to PortAudio by an ALSA
config as a Pi's cards are), the recommended devices and their config lines, and what to
check when there is none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from coze_edge.adapters.sound_system import sound_facts
from coze_edge.core.hardware import hints
from tests.support.cli import run_cli
from tests.support.pulseaudio import HardwareKind, pulse_server


def device_line(output: str, name: str) -> str:
    """The line of the device list that names ``name`` (with its marks)."""
    [line] = [line for line in output.splitlines() if f"  {name}  (" in line]
    return line


async def devices_with(hardware: Mapping[str, HardwareKind], tmp_path: Path) -> str:
    with pulse_server(tmp_path / "pulse", hardware=hardware) as pulse:
        result = await run_cli("devices", env=pulse.env())
    assert result.returncode == 0, result.stdout
    return result.stdout


async def test_a_hat_is_recognised_and_its_config_lines_printed(tmp_path: Path) -> None:
    """The 4-mic HAT is the recommended microphone; it has no speaker, so the default plays."""
    output = await devices_with({"seeed-4mic-voicecard": "input"}, tmp_path)

    assert "(ReSpeaker 4-Mic Array for Raspberry Pi; recommended input)" in device_line(
        output, "seeed-4mic-voicecard"
    )
    assert "(recommended output, default input and output)" in device_line(output, "default")
    assert '    input_device: "seeed-4mic-voicecard"\n' in output
    assert "    output_device: null  # the system's default (default)\n" in output
    assert "dtoverlay=seeed-4mic-voicecard in /boot/firmware/config.txt" in output
    assert "coze-edge devices --test" in output


async def test_a_speakerphone_wins_over_a_camera(tmp_path: Path) -> None:
    """With a Jabra and a PS3 Eye plugged in, the Jabra is both microphone and speaker."""
    hardware: dict[str, HardwareKind] = {"CameraB409241": "input", "Jabra SPEAK 510 USB": "both"}

    output = await devices_with(hardware, tmp_path)

    assert "(USB speakerphone (Jabra Speak); recommended input and output)" in device_line(
        output, "Jabra SPEAK 510 USB"
    )
    assert "(PlayStation 3 Eye camera (4-mic array))" in device_line(output, "CameraB409241")
    assert '    input_device: "Jabra SPEAK 510 USB"\n' in output
    assert '    output_device: "Jabra SPEAK 510 USB"\n' in output


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        (
            "ReSpeaker 4 Mic Array",
            [
                '    input_device: "ReSpeaker 4 Mic Array"',
                "    input_channel: 0  # with the 6-channel firmware: the processed one "
                "(beamformed, echo-cancelled)",
                "    capture_rate: 16000  # the microphone's own rate: no resampling",
                '    output_device: "ReSpeaker 4 Mic Array"',
            ],
        ),
        (
            "seeed-8mic-voicecard",
            [
                '    input_device: "seeed-8mic-voicecard"',
                "    input_channel: 0  # a microphone: channels 6 and 7 carry the playback, "
                "not a microphone",
            ],
        ),
    ],
)
async def test_the_channel_to_use_is_in_the_config_lines(
    name: str, lines: list[str], tmp_path: Path
) -> None:
    """Hardware whose channels differ gets an input_channel line saying why."""
    output = await devices_with({name: "both"}, tmp_path)

    for line in lines:
        assert line + "\n" in output


async def test_no_device_at_all_says_what_to_check(tmp_path: Path) -> None:
    """Without a sound server to reach and no card, the list is empty: exit 1 and a checklist."""
    env = {"PULSE_SERVER": f"unix:{tmp_path}/nothing", "XDG_CONFIG_HOME": str(tmp_path)}

    result = await run_cli("devices", env=env)

    assert result.returncode == 1
    assert "PortAudio finds no audio device" in result.stdout
    assert "\nCheck:\n" in result.stdout
    expected = hints([], sound_facts())
    assert expected
    for line in expected:
        assert f"  - {line}\n" in result.stdout
