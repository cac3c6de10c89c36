"""
A custom wake word model (``wake.model``) and custom earcons (``audio.earcon_files``):
checked when the config is loaded (the real ``coze-edge check-config`` and ``run``: exit
78 naming the key), and used by the daemon (the custom word opens a turn, its own earcon
is what the speaker plays).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.simulator import Simulator
from tests.support.cli import CliResult, run_cli
from tests.support.daemon import daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.media import custom_wake_model, tone_wav
from tests.support.timing import MS


async def check_config(tmp_path: Path, command: str = "check-config", **sections: Any) -> CliResult:
    """The real command on a config of ``sections`` (with what else it needs)."""
    settings: dict[str, Any] = {
        "coze": {"bot_id": "7"},
        "auth": {"method": "pat"},
        "device": {"id": "42"},
        "state_dir": str(tmp_path / "state"),
        "audio": {"backend": "file", "file_input": str(DATA / "silence-2s.wav")},
    }
    for name, values in sections.items():
        settings[name] = {**settings.get(name, {}), **values}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    return await run_cli(
        command, "-c", str(config), stderr=asyncio.subprocess.PIPE, within=60_000 * MS
    )


def problem_lines(result: CliResult) -> list[str]:
    return [line.strip() for line in result.stderr.splitlines()[1:]]


async def test_check_config_accepts_a_custom_model_and_earcons(tmp_path: Path) -> None:
    """A usable model and WAVs of any rate and channel count pass the check."""
    model = custom_wake_model(tmp_path / "wake")
    ding = tone_wav(tmp_path / "ding.wav", rate=44100, channels=2)

    result = await check_config(
        tmp_path, wake={"model": str(model)}, audio={"earcon_files": {"wake": str(ding)}}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")


def broken(tmp_path: Path, how: str) -> Path:
    manifest = custom_wake_model(tmp_path / "wake")
    match how:
        case "missing":
            return tmp_path / "wake" / "nothing.json"
        case "a WAV":
            return tone_wav(tmp_path / "wake" / "model.json")
        case "no tflite":
            manifest.with_suffix(".tflite").unlink()
    return manifest


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing", "nothing.json: No such file or directory"),
        ("a WAV", "is not a microWakeWord manifest (not JSON"),
        ("no tflite", "names computer.tflite, but cannot read"),
    ],
)
async def test_an_unusable_wake_model_is_exit_78_naming_the_key(
    tmp_path: Path, how: str, message: str
) -> None:
    """A missing file, one that is not a manifest, or a missing .tflite: check-config and
    run both stop with 78 and say which."""
    model = broken(tmp_path, how)

    for command in ("check-config", "run"):
        result = await check_config(tmp_path, command, wake={"model": str(model)})

        assert result.returncode == 78, result.stderr
        [line] = problem_lines(result)
        assert line.startswith("wake.model: ")
        assert message in line
        assert "Traceback" not in result.stderr


async def test_a_wake_model_and_a_built_in_word_together_are_refused(tmp_path: Path) -> None:
    """One wake word at a time."""
    model = custom_wake_model(tmp_path / "wake")

    result = await check_config(tmp_path, wake={"model": str(model), "word": "alexa"})

    assert result.returncode == 78
    assert problem_lines(result) == [
        "wake.model: set wake.word (a built-in wake word) or wake.model, not both"
    ]


async def test_unusable_earcon_files_are_exit_78_naming_each(tmp_path: Path) -> None:
    """Not a WAV, too long, an unknown event: each is named by its key."""
    not_wav = tmp_path / "ding.mp3"
    not_wav.write_bytes(b"ID3\x03" + bytes(100))
    long = tone_wav(tmp_path / "long.wav", seconds=4.0)
    files = {"wake": str(not_wav), "done": str(long), "wakeup": str(long)}

    result = await check_config(tmp_path, audio={"earcon_files": files})

    assert result.returncode == 78
    assert sorted(problem_lines(result)) == [
        f"audio.earcon_files.done: {long} lasts 4.0 s: an earcon may last 3",
        f"audio.earcon_files.wake: {not_wav}: not a WAV file (no RIFF/WAVE header)",
        "audio.earcon_files.wakeup: unknown earcon (did you mean 'wake'?): "
        "listening, wake, error, unauthorized or done",
    ]


async def test_the_custom_word_wakes_the_daemon_with_its_own_earcon(tmp_path: Path) -> None:
    """wake.model's word opens a turn (its name in the event and the state), and the wake
    earcon played is the custom WAV, converted to the reply rate."""
    model = custom_wake_model(tmp_path / "wake")
    ding = tone_wav(tmp_path / "ding.wav", rate=22050, channels=2)
    out = tmp_path / "out.wav"
    async with Simulator(reply_speed=50.0) as sim:
        config = daemon_config(
            sim,
            tmp_path,
            audio={
                "backend": "file",
                "file_input": str(DATA / "wake-okay-nabu-then-question.wav"),
                "file_output": str(out),
                "file_realtime": False,
                "earcon_files": {"wake": str(ding)},
            },
            wake={"model": str(model)},
        )
        async with running_daemon(config) as run:
            with contextlib.suppress(TimeoutError):
                await run.wait(lambda: any(e["type"] == "turn" for e in run.events), 20)
            status = run.daemon.status.get_nowait()

    assert {"type": "wake_word", "word": "computer"} in run.events
    assert any(event["type"] == "turn" for event in run.events)
    assert status is not None
    assert status.wake_word == "computer"
    with wave.open(str(out), "rb") as played:
        audio = played.readframes(played.getnframes())
    assert audio.find(read_wav_as(ding, AudioFormat(24000))) >= 0


def test_the_manifest_written_by_the_helper_is_microwakewords(tmp_path: Path) -> None:
    """The test model's manifest has what microWakeWord writes (not only what we read)."""
    manifest: Mapping[str, Any] = json.loads(custom_wake_model(tmp_path).read_text())

    assert manifest["type"] == "micro"
    assert set(manifest["micro"]) >= {"probability_cutoff", "sliding_window_size"}
