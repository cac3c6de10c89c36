"""
Command tools (``tools.commands``): a local program per tool, run without a shell.

The program gets the call's arguments as one JSON object on its stdin and a small
environment of its own (not the daemon's, so no credentials directory); what it prints on
stdout is the output. It runs in a new session (its own process group), and that whole
group is killed when the program exits (children it left behind) or when the time is up
(``tools.command_timeout_ms``, or the tool deadline). A non-zero exit status is an error
output, with what it printed. What it prints on stderr only goes to the log, redacted and
cut short. Each stream is read up to a bound; the rest is read and thrown away, so a
chatty program cannot fill the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from coze_edge.core.tools import ToolError
from coze_edge.logs import redact
from coze_edge.tools import Tool

log = logging.getLogger(__name__)

STDERR_BYTES: Final = 2048
"""How much of a program's stderr is kept for the log."""
READ_CHUNK: Final = 65536

ENV_KEPT: Final = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "HOME")
"""The daemon's variables a command tool gets, when set."""
DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
TOOL_VARIABLE: Final = "COZE_EDGE_TOOL"
"""The tool's name, in its environment."""

ARGUMENTS_SCHEMA: Final = {"type": "object", "additionalProperties": True}
"""What the device knows of a command tool's arguments: whatever the plugin declares."""


def executable_problem(program: str) -> str | None:
    """Why ``program`` cannot be a command tool's program: it must be an absolute path to
    an executable file (checked at start, so a typo shows there, not at the first call)."""
    path = Path(program)
    if not path.is_absolute():
        return f"{program!r} is not an absolute path"
    if not path.is_file():
        return f"{program} does not exist" if not path.exists() else f"{program} is not a file"
    if not os.access(path, os.X_OK):
        return f"{program} is not executable"
    return None


def tool_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """A command tool's environment: a few of ``env``'s variables and its name."""
    kept = {key: env[key] for key in ENV_KEPT if key in env}
    kept.setdefault("PATH", DEFAULT_PATH)
    kept[TOOL_VARIABLE] = name
    return kept


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, int]:
    """The first ``limit`` bytes of ``stream`` and its whole length (the rest is dropped)."""
    kept = bytearray()
    total = 0
    while chunk := await stream.read(READ_CHUNK):
        total += len(chunk)
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept), total


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` and close; a program that does not read its stdin is fine."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stream.wait_closed()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class CommandTool:
    """One ``tools.commands`` entry: ``argv[0]`` is an absolute path (checked at start)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout_s: float,
        max_output_bytes: int,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = tuple(argv)
        self.timeout_s = timeout_s
        self.max_output_bytes = max_output_bytes
        self._env = tool_environment(name, os.environ if env is None else env)

    def tool(self) -> Tool:
        return Tool(
            self.name,
            f"Runs {Path(self.argv[0]).name} on the device (declare its parameters in Coze).",
            ARGUMENTS_SCHEMA,
            self.run,
        )

    async def run(self, args: dict[str, Any]) -> str:
        """Run the program with ``args`` on stdin; its stdout, or ToolError."""
        stdin = json.dumps(args, ensure_ascii=False).encode()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                cwd="/",
                start_new_session=True,  # its own process group, killed as a whole
            )
        except OSError as exc:
            log.warning("! tool %s cannot start %s: %s", self.name, self.argv[0], exc)
            raise ToolError(f"the program of {self.name} cannot start") from None
        try:
            out, err, code = await self._communicate(process, stdin)
        finally:
            _kill_group(process.pid)  # what it left running, or all of it on a timeout
            # Every writer of its pipes is gone now: read them to their end, so they close.
            await process.communicate()
        return self._output(out, err, code)

    async def _communicate(
        self, process: asyncio.subprocess.Process, stdin: bytes
    ) -> tuple[tuple[bytes, int], tuple[bytes, int], int]:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            async with asyncio.timeout(self.timeout_s), asyncio.TaskGroup() as io:
                io.create_task(_feed(process.stdin, stdin))
                # One byte more than is sent on: the toolbox then cuts it, and says so.
                out = io.create_task(_read_bounded(process.stdout, self.max_output_bytes + 1))
                err = io.create_task(_read_bounded(process.stderr, STDERR_BYTES))
                code = await process.wait()
                # A child that kept our pipes open would hold the reads up: end it now.
                _kill_group(process.pid)
        except TimeoutError:
            log.warning("! tool %s killed after %.1f s", self.name, self.timeout_s)
            raise ToolError(f"{self.name} did not finish within {self.timeout_s:g} s") from None
        return out.result(), err.result(), code

    def _output(self, out: tuple[bytes, int], err: tuple[bytes, int], code: int) -> str:
        stdout = out[0].decode(errors="replace")
        if out[1] > len(out[0]):
            log.info("tool %s printed %d bytes; kept %d", self.name, out[1], len(out[0]))
        stderr = err[0].decode(errors="replace").strip()
        if stderr:
            level = logging.WARNING if code else logging.DEBUG
            log.log(level, "tool %s stderr: %s", self.name, redact(stderr))
        if code == 0:
            return stdout.rstrip("\n")
        reason = f"exited with status {code}" if code > 0 else f"killed by signal {-code}"
        details = {"output": stdout.strip()} if stdout.strip() else {}
        raise ToolError(f"{self.name} failed ({reason})", **details)
