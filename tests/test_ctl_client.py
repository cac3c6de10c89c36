"""
`coze-edge ctl` as an admin uses it: finding the daemon, what it prints, its exit codes.
The real command as a subprocess, against a real daemon (`coze-edge run`) where one is needed.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from coze_edge.simulator import Simulator
from tests.support.cli import run_cli, running_cli
from tests.support.data import DATA

LOGIN = {"method": "device_code", "client_id": "1234.app.coze"}
QUIET = {"file_input": str(DATA / "silence-2s.wav")}


@pytest.mark.daemon(audio=QUIET)
async def test_status_is_readable_by_default_and_json_when_asked(cli_config: Path) -> None:
    """`ctl status` prints one `name: value` per line; `--json` the state document."""
    async with running_cli(cli_config) as daemon:
        async with asyncio.timeout(30):
            await daemon.read_until("state: idle")
        await run_cli("ctl", "-c", str(cli_config), "volume", "35")

        text = await run_cli("ctl", "-c", str(cli_config), "status")
        document = await run_cli("ctl", "-c", str(cli_config), "status", "--json")

    assert text.returncode == 0, text.stdout
    assert text.stdout.splitlines() == [
        "state: idle",
        "muted: no",
        "volume: 35",
        "coze connected: yes",
        "wake word: off",
        "turn detection: client_interrupt",
    ]
    assert document.returncode == 0, document.stdout
    assert json.loads(document.stdout) == {
        "state": "idle",
        "muted": False,
        "volume": 35,
        "coze_connected": True,
        "detail": None,
        "wake_word": None,
        "turn_detection": "client_interrupt",
    }


@pytest.mark.simulator(poll_interval_s=1)
@pytest.mark.daemon(auth=LOGIN, audio=QUIET)
async def test_status_shows_a_pending_logins_code_and_url(sim: Simulator, cli_config: Path) -> None:
    """A daemon waiting for its login: `ctl status` gives the detail, the code to type and
    where, each on its own line."""
    async with running_cli(cli_config) as daemon:
        async with asyncio.timeout(30):
            await daemon.read_until("state: unauthorized")
        result = await run_cli("ctl", "-c", str(cli_config), "status")

    assert result.returncode == 0, result.stdout
    [code] = sim.pending_user_codes()
    lines = result.stdout.splitlines()
    assert lines[0] == "state: unauthorized"
    assert lines[1].startswith("detail: ")
    assert f"login code: {code}" in lines
    assert f"login URL: {sim.api_base}/device?user_code={code}" in lines
    assert any(line.startswith("login expires: 20") for line in lines)


@pytest.mark.daemon(audio=QUIET)
async def test_ctl_finds_the_daemon_of_the_unit_without_a_config(
    tmp_path: Path, cli_config: Path
) -> None:
    """Under systemd the daemon listens in $RUNTIME_DIRECTORY: ctl finds it there with
    no config at all (an admin's shell has none readable)."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o750)
    unit = {"RUNTIME_DIRECTORY": str(runtime)}
    async with running_cli(cli_config, env=unit) as daemon:
        async with asyncio.timeout(30):
            await daemon.read_until("state: idle")
        result = await run_cli(
            "ctl",
            "new-conversation",
            env={**unit, "CONFIGURATION_DIRECTORY": str(tmp_path / "none")},
        )

    assert result.returncode == 0, result.stdout
    assert "state: " in result.stdout
    assert not (tmp_path / "state" / "ctl.sock").exists()


async def test_with_no_daemon_it_says_where_it_looked(tmp_path: Path) -> None:
    """No daemon anywhere: exit 69, and each place it looked, in order, with why not: no
    socket, a socket nobody listens on (left by a daemon that was killed)."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    stale = tmp_path / "state"
    stale.mkdir()
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale / "ctl.sock"))
    left.close()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"coze:\n  bot_id: '7'\nauth:\n  method: pat\ndevice:\n  id: '42'\nstate_dir: {stale}\n"
    )

    result = await run_cli(
        "ctl", "status", "-c", str(config), env={"RUNTIME_DIRECTORY": str(runtime)}
    )

    assert result.returncode == 69, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "coze-edge ctl: no daemon answers; looked at:"
    assert lines[1] == f"  {runtime}/ctl.sock: no socket there"
    assert lines[2] == (
        f"  {stale}/ctl.sock: a socket, but no daemon listens on it (left by one that stopped)"
    )
    assert lines[3].startswith("  /run/coze-edge/ctl.sock: ")
    assert len(lines) == 4


async def test_without_the_group_it_says_how_to_join(tmp_path: Path) -> None:
    """A user outside the group coze-edge (who may not enter the socket's directory) is
    told to join it: `sudo usermod -aG coze-edge $USER`, then log in again."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o000)  # as /run/coze-edge is to a user outside its group
    try:
        result = await run_cli(
            "ctl",
            "status",
            env={"RUNTIME_DIRECTORY": str(runtime), "CONFIGURATION_DIRECTORY": str(tmp_path)},
            unprivileged=True,
        )
    finally:
        runtime.chmod(0o700)

    assert result.returncode == 69, result.stdout
    assert (
        f"  {runtime}/ctl.sock: permission denied (only root and the group coze-edge may use "
        "it: `sudo usermod -aG coze-edge $USER`, then log in again)"
    ) in result.stdout.splitlines()
    assert f"<state_dir>/ctl.sock: not looked for, {tmp_path}/config.yaml: cannot" in result.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["frobnicate"], "unknown command 'frobnicate'; known: listen, cancel,"),
        (["volume", "loud"], "volume: expected a number from 0 to 100, got 'loud'"),
        (["volume"], "volume: expected a number from 0 to 100, got ''"),
        (["say"], "say: text is empty"),
        (["wake-word", "hey_siri"], "wake_word: expected one of off, "),
        (["turn_detection", "sometimes"], "turn_detection: expected client_interrupt or"),
    ],
)
async def test_a_command_the_daemon_would_refuse_is_a_usage_error(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """Wrong commands and arguments are found before any daemon is asked: one line, exit
    64 (EX_USAGE), with or without a daemon."""
    result = await run_cli("ctl", *args, env={"RUNTIME_DIRECTORY": str(tmp_path)})

    assert result.returncode == 64, result.stdout
    assert result.stdout.startswith(f"coze-edge ctl: {says}"), result.stdout
    assert result.stdout.count("\n") == 1


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"ok": False, "error": "busy: too many control connections", "busy": True}, 69),
        ({"ok": False, "error": "unknown command 'listen'"}, 64),  # a daemon of another version
        ({"ok": True, "status": {"state": "speaking", "volume": 7, "future_key": 1}}, 0),
    ],
)
async def test_what_the_daemon_answers_decides_the_exit_code(
    tmp_path: Path, answer: dict[str, object], code: int
) -> None:
    """Refused for want of room: 69 (try again); refused for what was asked: 64; a status
    with keys this client does not know: shown without them."""

    async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(daemon, path=str(tmp_path / "ctl.sock"))
    async with server:
        result = await run_cli("ctl", "listen", env={"RUNTIME_DIRECTORY": str(tmp_path)})

    assert result.returncode == code, result.stdout
    if code:
        assert result.stdout == f"coze-edge ctl: {answer['error']}\n"
    else:
        assert result.stdout.splitlines()[:3] == ["state: speaking", "muted: no", "volume: 7"]
        assert "future" not in result.stdout
