"""The real `coze-edge` command as a subprocess: exit codes and messages users see."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

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


def subcommands(help_text: str) -> list[str]:
    """The commands `coze-edge --help` lists (the lines under COMMAND)."""
    listed = help_text.split("positional arguments:")[1].split("options:")[0]
    return re.findall(r"^ {4}(\S+)", listed, flags=re.MULTILINE)  # deeper: wrapped help


ALL_COMMANDS = [
    "run",
    "login",
    "bind",
    "devices",
    "check-config",
    "doctor",
    "demo",
    "simulator",
    "token-service serve",
    "token-service issue-secret",
    "voices",
    "tools",
    "ctl status",
]


async def test_the_help_lists_every_command_this_file_checks() -> None:
    """The commands below are all there are: a new one is checked here too."""
    result = await coze_edge("--help")

    assert sorted(subcommands(result.stdout)) == sorted({c.split()[0] for c in ALL_COMMANDS})
    assert "exit codes: 0" in result.stdout


@pytest.mark.parametrize("command", ALL_COMMANDS)
async def test_every_command_takes_c_and_a_wrong_command_line_exits_64(
    tmp_path: Path, command: str
) -> None:
    """-c FILE is accepted by every command (after it or before it); an unknown option
    is a usage error, exit 64 (EX_USAGE), not argparse's 2, with the usage line."""
    config = str(tmp_path / "config.yaml")
    words = command.split()

    after = await coze_edge(*words, "-c", config, "--no-such-option")
    before = await coze_edge("-c", config, *words, "--no-such-option")

    for result in (after, before):
        assert result.returncode == 64, result.stderr
        assert result.stderr.startswith("usage: coze-edge"), result.stderr
        [error] = [line for line in result.stderr.splitlines() if ": error: " in line]
        assert "--config" not in error, error
        assert " -c" not in error, error
        assert result.stdout == ""


@pytest.mark.parametrize("command", ALL_COMMANDS)
async def test_every_command_has_a_one_line_description(command: str) -> None:
    """`coze-edge COMMAND --help`: usage, one line saying what it does, the -c option."""
    words = command.split()[:2] if command.startswith("token-service") else command.split()[:1]

    result = await coze_edge(*words, "--help")

    assert result.returncode == 0, result.stderr
    paragraphs = result.stdout.split("\n\n")
    description = paragraphs[1]
    assert "\n" not in description.strip(), description
    assert len(description.strip()) > 10
    assert "-c FILE, --config FILE" in result.stdout


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        ("simulator", ["(default: 127.0.0.1)", "(default: 8790)", "(default: 6.0)"]),
        ("demo", ["(default: demo-output/reply.wav)", "(default: a bundled question)"]),
        ("token-service serve", ["(default: 8791)", "(default: 3600)", "(default:\n"]),
        ("run", ["(default: $COZE_EDGE_CONFIG, else"]),
    ],
)
async def test_help_shows_the_defaults(command: str, defaults: list[str]) -> None:
    """Each option with a default says it in --help; an option without one says nothing
    like "(default: None)"."""
    result = await coze_edge(*command.split(), "--help")

    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines where it likes
    for default in defaults:
        assert " ".join(default.split()) in text, text
    assert "default: None" not in text
    assert "default: False" not in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["simulator", "--port", "70000"], "a port is 0..65535, got 70000"),
        (["simulator", "--port", "eighty"], "expected a port number, got 'eighty'"),
        (["token-service", "serve", "--app-id", "1", "--key-id", "k", "--port", "-1"], "0..65535"),
        (["ctl"], "the following arguments are required: COMMAND"),
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
async def test_a_wrong_argument_is_one_line_and_exit_64(args: list[str], says: str) -> None:
    """Values argparse refuses: the usage, one line saying what is wrong, exit 64."""
    result = await coze_edge(*args)

    assert result.returncode == 64, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


async def test_without_c_the_installed_config_is_read() -> None:
    """With no -c (and neither $COZE_EDGE_CONFIG nor systemd's directory), the config read
    is /etc/coze-edge/config.yaml, where scripts/install puts it (doctor and the rest take
    the same path: tests/test_install_readme.py runs them so)."""
    result = await coze_edge("check-config", env={"CONFIGURATION_DIRECTORY": ""})

    said = result.stdout + result.stderr
    assert said.startswith("/etc/coze-edge/config.yaml: "), said
    assert "Traceback" not in said
