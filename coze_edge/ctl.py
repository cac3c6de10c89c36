"""
Local control of a running daemon over a unix socket (``coze-edge ctl COMMAND``).

The socket is ``$RUNTIME_DIRECTORY/ctl.sock`` under systemd, else ``<state_dir>/ctl.sock``;
mode 0660, so the service's group may use it and nobody else. One request per connection:
a JSON line ``{"command": NAME, "argument": TEXT}``; one JSON line back:
``{"ok": true, "status": {...}}`` or ``{"ok": false, "error": "..."}``. The commands are
the MQTT ones and go through the same parser, so neither can run programs or touch files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from coze_edge.core.commands import CommandError, QueryStatus, parse_command
from coze_edge.core.status import DeviceStatus, LoginPrompt, login_payload

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 8192
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: no daemon listening


def socket_path(state_dir: Path, env: Mapping[str, str]) -> Path:
    runtime = env.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "ctl.sock"
    return state_dir / "ctl.sock"


class CtlServer:
    """Serves ctl requests until cancelled; removes its socket on the way out."""

    def __init__(
        self,
        path: Path,
        *,
        submit: Callable[[Any], Awaitable[None] | None],
        status: Callable[[], DeviceStatus],
        login: Callable[[], LoginPrompt | None] = lambda: None,
    ) -> None:
        self._path = path
        self._submit = submit
        self._status = status
        self._login = login

    async def run(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # a stale socket of a previous run
        old_umask = os.umask(0o117)  # the socket is created 0660
        try:
            server = await asyncio.start_unix_server(self._serve, path=str(self._path))
        except OSError as exc:
            # Local control is a convenience: without it the speaker still works.
            log.error("! no control socket at %s: %s", self._path, exc)
            return
        finally:
            os.umask(old_umask)
        log.info("control socket at %s", self._path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
            reply = await self._answer(line)
        except (TimeoutError, ValueError, ConnectionError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request over {MAX_REQUEST_BYTES} bytes"}
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": "request needs a 'command' string"}
        argument = request.get("argument", "")
        if not isinstance(argument, str):
            return {"ok": False, "error": "'argument' must be a string"}
        try:
            command = parse_command(request["command"], argument.encode())
        except CommandError as exc:
            return {"ok": False, "error": str(exc)}
        if not isinstance(command, QueryStatus):
            done = self._submit(command)
            if done is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await done
        status: dict[str, Any] = json.loads(self._status().to_json())
        prompt = self._login()
        if prompt is not None:
            # The socket is for the service's group only: the code may be shown here.
            status["login"] = json.loads(login_payload(prompt))
        return {"ok": True, "status": status}


async def request(path: Path, command: str, argument: str = "") -> dict[str, Any]:
    """One request to a running daemon; OSError when none listens at ``path``."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps({"command": command, "argument": argument}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(10):
            line = await reader.readline()
    finally:
        writer.close()
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError("the daemon answered something that is not a JSON object")
    return reply


async def run_ctl(config: str | None, action: str, words: list[str], *, out: TextIO) -> int:
    """The ``coze-edge ctl`` command."""
    from coze_edge.config import load_config, resolve_config_path

    env = os.environ
    if env.get("RUNTIME_DIRECTORY"):
        path = socket_path(Path("/nonexistent"), env)
    else:
        path = socket_path(load_config(resolve_config_path(config, env)).state_dir, env)
    try:
        reply = await request(path, action, " ".join(words))
    except (OSError, TimeoutError) as exc:
        print(f"coze-edge ctl: no daemon answers at {path}: {exc}", file=out)
        return EXIT_UNAVAILABLE
    if not reply.get("ok"):
        print(f"coze-edge ctl: {reply.get('error', 'refused')}", file=out)
        return 1
    print(json.dumps(reply.get("status", {}), ensure_ascii=False), file=out)
    return 0
