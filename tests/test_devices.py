"""
``coze-edge devices`` and ``devices --test``, the real command: the voice hardware
recognised among PortAudio's devices (PulseAudio null sinks named after real hardware,
shown to PortAudio by an ALSA config as a Pi's cards are), the recommended devices and
their config lines, and what to check when there is none; and the audio check, with speech
played into PulseAudio's virtual microphone (loud, quiet, over noise) and with and without
an echo path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import termios
import threading
import wave
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from coze_edge.adapters.sound_system import sound_facts
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.core.hardware import hints
from tests.support.cli import CliRun, run_cli, start_cli
from tests.support.data import DATA
from tests.support.pulseaudio import HardwareKind, PulseEnv, louder, pulse_server
from tests.support.timing import MS


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


# --- devices --test -----------------------------------------------------------------------


async def audio_check(pulse: PulseEnv, user: Path, *args: str) -> str:
    """``coze-edge devices --test --seconds 3``, with ``user`` played into the microphone as
    soon as the recording starts; everything it printed."""
    run = CliRun(await start_cli("devices", "--test", "--seconds", "3", *args, env=pulse.env()))
    await run.read_until("Recording 3 s")
    player = pulse.play_into_mic(user)
    async with asyncio.timeout(40_000 * MS):
        rest, _ = await run.process.communicate()
    await asyncio.to_thread(player.wait)
    run.rest = rest.decode()
    assert run.returncode == 0, run.output
    return run.output


def reported(output: str, what: str) -> float:
    """A figure of the report: ``peak``, ``speech`` or ``noise floor`` in dBFS."""
    match = re.search(rf"^  {what} +(-?[\d.]+) dBFS", output, re.MULTILINE)
    assert match, output
    return float(match.group(1))


def with_noise(source: Path, target: Path, level_dbfs: float) -> Path:
    """A copy of a 16 kHz WAV with white noise at ``level_dbfs`` RMS over all of it."""
    speech = np.frombuffer(read_wav_as(source, CAPTURE), dtype="<i2").astype(np.float64)
    hiss = np.random.default_rng(7).normal(0, 32768 * 10 ** (level_dbfs / 20), len(speech))
    with wave.open(str(target), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(CAPTURE.rate)
        w.writeframes(np.clip(np.rint(speech + hiss), -32768, 32767).astype("<i2").tobytes())
    return target


async def test_a_loud_input_is_reported_as_clipping(pulse: PulseEnv, tmp_path: Path) -> None:
    """Speech six times too loud: the meter runs, clipping is reported, no gain suggested,
    and without an echo path the tone is not heard."""
    user = louder(DATA / "utterance-weather.wav", tmp_path / "loud.wav", 6.0)

    output = await audio_check(pulse, user)

    print(output)
    assert re.search(r"^   1\.0 s  level +-?[\d.]+ dBFS  peak", output, re.MULTILINE)
    assert "Playing it back: you should hear yourself." in output
    assert reported(output, "peak") == 0.0
    assert re.search(r"^  clipping     \d+ samples at full scale", output, re.MULTILINE)
    assert "    input_gain_db: 0  # no gain: the input already clips\n" in output
    assert "! the input clips" in output
    assert "  not heard (likeness 0.0" in output


async def audio_check_on_a_terminal(pulse: PulseEnv, user: Path, *args: str) -> str:
    """``audio_check`` with a terminal (a pty) as stdout, as a person runs it: what it
    wrote there, line ends as the program wrote them."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # keep "\n" as "\n"
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    process = await start_cli(
        "devices", "--test", "--seconds", "3", *args, env=pulse.env(), stdout=slave, stderr=slave
    )
    os.close(slave)
    written = bytearray()
    recording = threading.Event()

    def read() -> None:  # until the program closes the terminal (EIO)
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 4096):
                written.extend(chunk)
                if b"Recording 3 s" in written:
                    recording.set()
        recording.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        await asyncio.to_thread(recording.wait, 20_000 * MS)
        player = pulse.play_into_mic(user)
        async with asyncio.timeout(40_000 * MS):
            await process.wait()
        await asyncio.to_thread(player.wait)
    finally:
        await asyncio.to_thread(reader.join, 5_000 * MS)
        os.close(master)
    output = written.decode(errors="replace")
    assert process.returncode == 0, output
    return output


async def test_a_quiet_input_gets_a_gain(pulse: PulseEnv, tmp_path: Path) -> None:
    """Speech at a thirtieth of its level, on a terminal, with the config's devices: the
    meter redraws one line, no clipping, and a gain that brings the speech near -20."""
    user = louder(DATA / "utterance-weather.wav", tmp_path / "quiet.wav", 1 / 30)
    config = tmp_path / "config.yaml"
    config.write_text(
        "coze: {bot_id: '7'}\nauth: {method: pat}\ndevice: {id: '42'}\n"
        "audio: {input_device: pulse, output_device: pulse, input_channel: 0}\n"
    )

    output = await audio_check_on_a_terminal(pulse, user, "-c", str(config))

    print(output)
    assert output.startswith("Microphone: pulse, channel 0\nSpeaker:    pulse\n")
    meter = output.partition("count from one to ten) ...\n")[2].partition("\n")[0]
    assert meter.count("\r  [") >= 20  # about every 100 ms for 3 s
    assert re.search(r"\r  \[#+\.*\] +-?[\d.]+ dBFS  peak +-?[\d.]+\r", meter)
    assert "  clipping     none\n" in output
    speech = reported(output, "speech")
    assert speech < -40
    gain = re.search(r"^    input_gain_db: (\d+)  # speech at", output, re.MULTILINE)
    assert gain, output
    assert -23 <= speech + float(gain.group(1)) <= -17


async def test_an_echo_path_and_a_noisy_room_are_reported(
    echoing_pulse: PulseEnv, tmp_path: Path
) -> None:
    """With the speaker reaching the microphone, the tone is found at the path's delay; the
    noise under the speech makes the VAD stricter and suggests noise suppression."""
    user = with_noise(DATA / "utterance-weather.wav", tmp_path / "noisy.wav", -40.0)

    output = await audio_check(echoing_pulse, user)

    print(output)
    echo = re.search(r"audible: the tone came back (\d+) ms later at (-?\d+) dBFS", output)
    assert echo, output
    assert 40 <= int(echo.group(1)) <= 400
    assert "pip install 'coze-edge[aec]'" in output
    assert -45 <= reported(output, "noise floor") <= -35
    assert "    aggressiveness: 3  # noise floor" in output
    assert "audio.noise_suppression: true" in output


async def test_a_recording_too_short_or_long_is_a_usage_error() -> None:
    """--seconds outside 0.5..60 is refused before any device is opened: exit 64."""
    result = await run_cli("devices", "--test", "--seconds", "0", stderr=asyncio.subprocess.PIPE)

    assert result.returncode == 64
    assert result.stderr == "coze-edge devices: --seconds must be between 0.5 and 60\n"
