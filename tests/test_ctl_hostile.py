"""
The control socket against hostile local clients, over real unix sockets: any bytes get one
JSON line and never a traceback; idle, slow and excess clients are bounded; and a real
daemon flooded with idle clients still answers ``coze-edge ctl status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import re
import resource
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coze_edge.core.commands import Command, Say
from coze_edge.core.status import DeviceStatus, State
from coze_edge.ctl import (
    IDLE_GRACE_S,
    MAX_CONNECTIONS,
    MAX_JSON_DEPTH,
    MAX_REQUEST_BYTES,
    REQUEST_DEADLINE_S,
    CtlServer,
    request,
)
from coze_edge.simulator import Simulator
from tests.support.cli import run_cli, running_cli
from tests.support.data import DATA
from tests.support.timing import MS


@dataclass
class Served:
    path: Path
    server: CtlServer
    commands: list[Command]


@pytest.fixture
async def served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Served]:
    """A CtlServer on a real unix socket; after the test, nothing was logged at ERROR or
    with a traceback (asyncio's "Task exception was never retrieved" included)."""
    path = tmp_path / "ctl.sock"
    commands: list[Command] = []
    server = CtlServer(path, submit=commands.append, status=lambda: DeviceStatus(State.IDLE))
    caplog.set_level(logging.INFO)
    task = asyncio.create_task(server.run())
    async with asyncio.timeout(2000 * MS):
        while not path.exists():  # noqa: ASYNC110 - the socket file is the signal
            await asyncio.sleep(0.005)
    yield Served(path, server, commands)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gc.collect()  # a task that died with an exception logs it when collected
    await asyncio.sleep(0)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


async def exchange(path: Path, payload: bytes, *, half_close: bool = True) -> list[bytes]:
    """Send ``payload`` (then EOF if ``half_close``); every line the server sends back
    until it closes. A reset (we sent what it did not read) ends the reply too."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(payload)
            if half_close:
                writer.write_eof()
            await writer.drain()
        lines: list[bytes] = []
        async with asyncio.timeout((REQUEST_DEADLINE_S + 3) * 1000 * MS):
            with contextlib.suppress(ConnectionError):
                while line := await reader.readline():
                    lines.append(line)
        return lines
    finally:
        writer.close()


def refusal(lines: list[bytes]) -> str:
    """The error of the single JSON line in ``lines``."""
    [line] = lines
    reply: dict[str, Any] = json.loads(line)
    assert reply["ok"] is False, reply
    error: str = reply["error"]
    return error


# --- any bytes --------------------------------------------------------------------------------


def corpus(seed: int = 17, count: int = 300) -> Iterator[bytes]:
    """Requests a careless or hostile client might send: random bytes, JSON-ish noise
    built from the tokens a request is made of, and mangled real requests."""
    rng = random.Random(seed)
    tokens = [
        b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"\\u", b"\\ud800", b"null", b"true",
        b"1e999", b"-0", b"NaN", b'"command"', b'"argument"', b'"status"', b'"say"',
        b'"volume"', b"\xff", b"\xc3", b"\x00", b"\n", b" ", "\u00e9".encode(), b"9" * 50,
    ]  # fmt: skip
    real = [b'{"command": "status"}', b'{"command": "volume", "argument": "35"}']
    for _ in range(count):
        match rng.randrange(3):
            case 0:
                yield rng.randbytes(rng.randrange(1, 200))
            case 1:
                yield b"".join(rng.choices(tokens, k=rng.randrange(1, 40)))
            case _:
                mangled = bytearray(rng.choice(real))
                for _ in range(rng.randrange(1, 4)):
                    at = rng.randrange(len(mangled))
                    mangled[at : at + 1] = rng.choice(tokens)
                yield bytes(mangled)


async def test_random_bytes_get_one_json_line_and_no_traceback(served: Served) -> None:
    """300 random and mangled requests: each gets exactly one JSON line back (or, for one
    with a newline inside, the answer to its first line), nothing is logged as an error,
    and the server still answers."""
    for payload in corpus():
        lines = await exchange(served.path, payload)
        assert len(lines) == 1, payload
        assert isinstance(json.loads(lines[0])["ok"], bool)

    assert (await request(served.path, "status"))["ok"] is True


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"[" * 4000 + b"\n", "nests deeper than"),  # was a RecursionError: no answer at all
        (b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"\n", "nests deeper than"),
        (b'{"command": "status", "x": ' + b"[" * 5 + b"]" * 5 + b"}\n", "nests deeper than"),
        (b'{"command": "say", "argument": "\\ud800"}\n', "not valid Unicode text"),
        (b'{"command": "status", "n": ' + b"9" * 5000 + b"}\n", "not JSON"),
        (b"\xff\xfe\xfd\n", "not UTF-8"),
        (b'{"command": "st\xc3atus"}\n', "not UTF-8"),
        (b"\n", "not JSON"),
        (b"", "not JSON"),  # connect, then EOF at once
        (b'"status"\n', "needs a 'command' string"),
        (b'{"command": 7}\n', "needs a 'command' string"),
        (b'{"command": "say", "argument": ["x"]}\n', "'argument' must be a string"),
        (b'{"command": "reboot"}\n', "unknown command"),
        (b"x" * (MAX_REQUEST_BYTES + 10) + b"\n", f"over {MAX_REQUEST_BYTES} bytes"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else None,
)
async def test_each_malformed_request_is_refused_with_what_is_wrong(
    served: Served, payload: bytes, says: str
) -> None:
    """Deep JSON, lone surrogates, huge numbers, non-UTF-8, huge lines: one refusal line."""
    assert says in refusal(await exchange(served.path, payload))
    assert served.commands == []


async def test_a_flood_without_a_newline_is_cut_off(served: Served) -> None:
    """4 MiB with no newline: the server stops reading at its limit and closes (the client,
    still sending, may see a reset instead of the refusal line); others are answered."""
    lines = await exchange(served.path, b"x" * (4 * 1024 * 1024))

    assert lines in ([], [b'{"ok": false, "error": "request over 65536 bytes"}\n'])
    assert (await request(served.path, "status"))["ok"] is True


async def test_strings_may_hold_brackets(served: Served) -> None:
    """The depth check skips strings: `say [[[[[[` is text, not nesting."""
    text = "[" * (MAX_JSON_DEPTH + 10) + ' "quoted" \\ {'

    reply = await request(served.path, "say", text)

    assert reply["ok"] is True
    assert served.commands == [Say(text)]


async def test_the_longest_say_fits_in_a_request(served: Served) -> None:
    """4,000 characters outside the BMP (12 bytes each, JSON-escaped) are under the limit."""
    text = "\U0001f600" * 4000

    reply = await request(served.path, "say", text)

    assert reply["ok"] is True
    assert served.commands == [Say(text)]


async def test_a_request_without_a_newline_then_eof_is_answered(served: Served) -> None:
    """A client that half-closes after its request (no newline) still gets its answer."""
    [line] = await exchange(served.path, b'{"command": "status"}')

    assert json.loads(line)["ok"] is True


# --- slots and deadlines ----------------------------------------------------------------------


def idle_clients(path: Path, count: int) -> list[socket.socket]:
    """``count`` connections that never send anything."""
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        clients.append(client)
    return clients


async def test_an_idle_client_is_closed_after_the_deadline(served: Served) -> None:
    """A client that sends nothing is told so and closed after REQUEST_DEADLINE_S."""
    started = time.monotonic()

    error = refusal(await exchange(served.path, b"", half_close=False))

    assert error == f"no request within {REQUEST_DEADLINE_S:g} s"
    assert REQUEST_DEADLINE_S <= time.monotonic() - started < REQUEST_DEADLINE_S + 1000 * MS


async def test_a_slow_drip_client_is_closed_at_the_same_deadline(served: Served) -> None:
    """One byte every 200 ms keeps no slot longer: the deadline is for the whole request."""
    reader, writer = await asyncio.open_unix_connection(str(served.path))

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in b'{"command": "status"        }\n':
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)

    started = time.monotonic()
    dripping = asyncio.create_task(drip())
    line = await reader.readline()
    dripping.cancel()
    writer.close()

    assert json.loads(line)["error"] == f"no request within {REQUEST_DEADLINE_S:g} s"
    assert time.monotonic() - started < REQUEST_DEADLINE_S + 1000 * MS


async def test_at_the_cap_the_oldest_idle_client_makes_room(served: Served) -> None:
    """MAX_CONNECTIONS silent clients, older than IDLE_GRACE_S: a request still gets its
    answer, and the oldest silent client is told why it is closed."""
    clients = await asyncio.to_thread(idle_clients, served.path, MAX_CONNECTIONS)
    try:
        await asyncio.sleep(IDLE_GRACE_S + 0.1)

        reply = await request(served.path, "status")

        assert reply["ok"] is True
        clients[0].settimeout(1000 * MS)
        told = json.loads(clients[0].makefile("rb").readline())
        assert told == {
            "ok": False,
            "error": "closed: no request, and others are waiting",
            "busy": True,  # for want of room: `coze-edge ctl` exits 69, not 64
        }
        assert served.server.turned_away == 1
    finally:
        for client in clients:
            client.close()


async def test_past_the_cap_newcomers_are_refused_while_all_are_fresh(served: Served) -> None:
    """Clients connecting faster than IDLE_GRACE_S do not push each other out: the excess
    ones get one line, 'busy', and are closed."""
    clients = await asyncio.to_thread(idle_clients, served.path, MAX_CONNECTIONS)
    try:
        lines = await exchange(served.path, b'{"command": "status"}\n', half_close=False)
    finally:
        for client in clients:
            client.close()

    assert refusal(lines) == "busy: too many control connections, try again"


async def test_turning_clients_away_is_logged_once_per_episode(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """200 idle clients at once: one warning, and one line with the count when it is over,
    not a line each."""
    clients = await asyncio.to_thread(idle_clients, served.path, 200)
    for client in clients:
        client.close()
    async with asyncio.timeout((REQUEST_DEADLINE_S + 2) * 1000 * MS):
        while "turned away" not in caplog.text:  # noqa: ASYNC110 - the log is the signal
            await asyncio.sleep(0.05)

    lines = [r.getMessage() for r in caplog.records if r.name == "coze_edge.ctl"]
    assert sum("the cap" in line for line in lines) == 2, lines
    summary = next(line for line in lines if "turned away" in line)
    assert f"turned away {served.server.turned_away} connections" in summary
    assert served.server.turned_away >= 200 - MAX_CONNECTIONS


# --- the real daemon --------------------------------------------------------------------------


UNIT = Path(__file__).parents[1] / "systemd" / "coze-edge.service"


def unit_nofile() -> int:
    """The unit's LimitNOFILE."""
    found = re.search(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.MULTILINE)
    assert found, "the unit sets no LimitNOFILE"
    return int(found[1])


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.daemon(audio={"file_input": str(DATA / "silence-2s.wav")})
async def test_a_flooded_daemon_still_answers_ctl_status(
    sim: Simulator, cli_config: Path, tmp_path: Path
) -> None:
    """1,500 idle clients, all kept open (before the cap, 1,116 took all 1,024 file
    descriptors of a daemon: the log filled with accept() tracebacks and ctl status was
    refused), hold at most MAX_CONNECTIONS of its descriptors, and `ctl status` answers;
    the daemon runs with the unit's LimitNOFILE and never reaches it."""
    socket_file = tmp_path / "state" / "ctl.sock"
    async with running_cli(cli_config) as daemon:
        async with asyncio.timeout(30):
            await daemon.read_until("state: idle")
        pid = daemon.process.pid
        # The unit's LimitNOFILE: the flood must fit in it.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (unit_nofile(), unit_nofile()))
        before = open_fds(pid)
        clients: list[socket.socket] = []
        try:
            for _ in range(15):  # 100 at a time, as fast as the daemon accepts them
                clients += await asyncio.to_thread(idle_clients, socket_file, 100)
            # Those over the cap are closed at once: the daemon keeps MAX_CONNECTIONS of them.
            async with asyncio.timeout(2000 * MS):
                while open_fds(pid) > before + MAX_CONNECTIONS:  # noqa: ASYNC110 - /proc
                    await asyncio.sleep(0.02)
            await asyncio.sleep(IDLE_GRACE_S + 0.1)
            held = open_fds(pid)
            started = time.monotonic()
            status = await run_cli("ctl", "-c", str(cli_config), "--json", "status")
            took = time.monotonic() - started
        finally:
            for client in clients:
                client.close()

    assert status.returncode == 0, status.stdout
    assert json.loads(status.stdout)["state"] == "idle"
    assert took < 5000 * MS
    assert held <= before + MAX_CONNECTIONS, (before, held)
    assert "Traceback" not in daemon.output
    assert "Too many open files" not in daemon.output
    assert daemon.output.count("clients at once (the cap)") == 1
