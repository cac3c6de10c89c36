"""The local control socket: requests in over a real unix socket, commands and status out."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coze_edge.core.commands import Command, Listen, SetVolume
from coze_edge.core.status import DeviceStatus, State
from coze_edge.ctl import CtlServer, request, socket_path


@pytest.fixture
async def ctl(tmp_path: Path) -> AsyncIterator[tuple[Path, list[Command]]]:
    path = tmp_path / "ctl.sock"
    commands: list[Command] = []
    server = CtlServer(
        path, submit=commands.append, status=lambda: DeviceStatus(state=State.IDLE, volume=35)
    )
    task = asyncio.create_task(server.run())
    for _ in range(200):
        if path.exists():
            break
        await asyncio.sleep(0.005)
    yield path, commands
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not path.exists()


async def test_a_command_is_parsed_submitted_and_answered_with_the_status(
    ctl: tuple[Path, list[Command]],
) -> None:
    """ctl volume 35 reaches the daemon as SetVolume(35) and returns the status."""
    path, commands = ctl

    reply = await request(path, "volume", "35")
    await request(path, "listen")

    assert reply["ok"] is True
    assert reply["status"]["state"] == "idle"
    assert commands == [SetVolume(35), Listen()]


async def test_status_submits_nothing(ctl: tuple[Path, list[Command]]) -> None:
    """ctl status only reads."""
    path, commands = ctl

    reply = await request(path, "status")

    assert reply["ok"] is True
    assert commands == []


@pytest.mark.parametrize(("command", "argument"), [("volume", "loud"), ("reboot", ""), ("say", "")])
async def test_bad_requests_are_refused_and_change_nothing(
    ctl: tuple[Path, list[Command]], command: str, argument: str
) -> None:
    """An unknown command or a bad argument gets an error and submits nothing."""
    path, commands = ctl

    reply: dict[str, Any] = await request(path, command, argument)

    assert reply["ok"] is False
    assert reply["error"]
    assert commands == []


async def test_garbage_on_the_socket_gets_an_error(ctl: tuple[Path, list[Command]]) -> None:
    """A line that is not JSON is answered with an error, and the server goes on."""
    path, _ = ctl
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b"\xff\xfe not json\n")
    await writer.drain()
    line = await reader.readline()
    writer.close()

    assert b'"ok": false' in line
    assert (await request(path, "status"))["ok"] is True


async def test_the_socket_is_group_accessible_only(ctl: tuple[Path, list[Command]]) -> None:
    """The socket is mode 0660: the service's group may control it, others may not."""
    path, _ = ctl

    assert stat.S_IMODE(path.stat().st_mode) == 0o660


def test_socket_path_prefers_the_runtime_directory(tmp_path: Path) -> None:
    """Under systemd the socket lives in $RUNTIME_DIRECTORY, else in the state dir."""
    assert socket_path(tmp_path, {"RUNTIME_DIRECTORY": "/run/coze-edge"}) == Path(
        "/run/coze-edge/ctl.sock"
    )
    assert socket_path(tmp_path, {}) == tmp_path / "ctl.sock"
