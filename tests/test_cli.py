"""The real `coze-edge` command as a subprocess: exit codes and messages users see."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from tests.support.cli import CliResult, run_cli
from tests.support.data import DATA
from tests.support.timing import MS


async def coze_edge(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
    return await run_cli(*args, env=env, stderr=asyncio.subprocess.PIPE, within=60_000 * MS)


async def test_check_config_lists_every_problem_and_exits_78(tmp_path: Path) -> None:
    """A wrong config gives each problem with its dotted key, a hint, and exit 78."""
    config = tmp_path / "kitchen.yaml"
    config.write_text("vad:\n  end_silence_ms: 700ms\n  aggressiveness: 7\nmqtt:\n  hots: x\n")

    result = await coze_edge("check-config", "-c", str(config))

    assert result.returncode == 78
    assert "vad.end_silence_ms: expected int, got '700ms'" in result.stderr
    assert "vad.aggressiveness" in result.stderr
    assert "mqtt.hots: unknown key (did you mean 'host'?)" in result.stderr
    assert "Traceback" not in result.stderr


async def test_check_config_accepts_a_good_file_and_env_overrides(tmp_path: Path) -> None:
    """A valid config (bot id from the environment) is reported ok, exit 0."""
    config = tmp_path / "ok.yaml"
    config.write_text("auth:\n  method: pat\ndevice:\n  id: '42'\n")

    result = await coze_edge(
        "check-config", "-c", str(config), env={"COZE_EDGE_COZE__BOT_ID": "7496347519799787557"}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok")


async def test_run_without_a_token_exits_77(tmp_path: Path) -> None:
    """auth.method pat with no token anywhere: a clear line and exit 77 (no restart)."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "coze:\n  bot_id: '7'\nauth:\n  method: pat\ndevice:\n  id: '42'\n"
        f"state_dir: {tmp_path}\naudio:\n  backend: file\n"
        f"  file_input: {DATA / 'silence-2s.wav'}\n"
    )

    result = await coze_edge("run", "-c", str(config))

    assert result.returncode == 77, result.stderr
    assert "auth.pat_file" in result.stderr
    assert "Traceback" not in result.stderr


async def test_help_works_without_portaudio_or_network() -> None:
    """--help lists the commands of CONTRACT.md."""
    result = await coze_edge("--help")

    assert result.returncode == 0
    for command in ("run", "login", "bind", "devices", "check-config", "doctor", "demo"):
        assert command in result.stdout
