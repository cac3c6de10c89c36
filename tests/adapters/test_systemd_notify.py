"""sd_notify over a real datagram socket, and the watchdog's ping rule."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from coze_edge.adapters import systemd


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, {"NOTIFY_SOCKET": str(path)}
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_ready_status_and_stopping_reach_the_socket(
    notify_socket: tuple[socket.socket, dict[str, str]],
) -> None:
    """Each helper sends its sd_notify line as one datagram."""
    sock, env = notify_socket

    assert systemd.ready(env=env)
    assert systemd.status("listening\nmuted", env=env)
    assert systemd.stopping(env=env)

    assert received(sock) == ["READY=1", "STATUS=listening muted", "STOPPING=1"]


def test_abstract_namespace_sockets_work() -> None:
    """A NOTIFY_SOCKET starting with @ is an abstract-namespace address."""
    name = f"coze-edge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"


def test_without_systemd_nothing_is_sent() -> None:
    """No NOTIFY_SOCKET: a no-op; a dead socket: False, never an exception."""
    assert systemd.ready(env={}) is False
    assert systemd.ready(env={"NOTIFY_SOCKET": "/nonexistent/socket"}) is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=30 s means a ping every 15 s; another process's watchdog is not ours."""
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "x"}) is None


async def test_watchdog_pings_only_while_healthy(
    notify_socket: tuple[socket.socket, dict[str, str]],
) -> None:
    """WATCHDOG=1 comes every interval while audio flows, and stops when it stalls."""
    sock, env = notify_socket
    healthy = True
    watchdog = systemd.Watchdog(interval=0.05, healthy=lambda: healthy, env=env)
    task = asyncio.create_task(watchdog.run())
    await asyncio.sleep(0.28)
    pinged = received(sock)
    healthy = False
    await asyncio.sleep(0.2)
    after_stall = received(sock)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert 3 <= len(pinged) <= 6
    assert set(pinged) == {"WATCHDOG=1"}
    assert after_stall == []
    assert watchdog.skipped >= 2
