"""
The real ``coze-edge`` command as a subprocess. One helper, :func:`start_cli`, starts every
one: ``python -m coze_edge ARGS`` with the interpreter running the tests, no stdin, and
without this shell's ``COZE_EDGE_*`` settings (a developer's environment must not leak
into a test). On top of it:

* :func:`run_cli` runs a command to its end: exit code and output.
* :func:`running_cli` runs ``coze-edge run`` (or ``login``) for a block and stops it with
  SIGTERM, as systemd does; :class:`CliRun` reads its output line by line meanwhile.
* :func:`write_cli_config` writes a config file that points the command at a simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from tests.support.daemon import SIM_PAT, CozeEndpoint, daemon_settings, merged
from tests.support.data import DATA
from tests.support.timing import MS

STOP_WITHIN_S = 3.0
"""How long ``coze-edge run`` may take to stop after SIGTERM (CONTRACT.md; not scaled)."""


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``COZE_EDGE_*`` settings, plus ``extra``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COZE_EDGE_")}
    return {**clean, **(extra or {})}


UNPRIVILEGED: Final = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")
"""Run as ``nobody`` (a user without root's way past file modes); only root may switch."""


async def start_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: int = asyncio.subprocess.PIPE,
    stderr: int = asyncio.subprocess.STDOUT,
    unprivileged: bool = False,
) -> asyncio.subprocess.Process:
    """``coze-edge ARGS``: no stdin; stderr on the stdout pipe unless told otherwise;
    ``env`` is added to the cleaned environment. ``unprivileged``: as ``nobody`` when the
    tests run as root, so that file modes apply to it (else as the tests' own user)."""
    prefix = UNPRIVILEGED if unprivileged and os.geteuid() == 0 else ()
    return await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "coze_edge",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=cli_env(env),
    )


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    """Empty unless ``run_cli(..., stderr=asyncio.subprocess.PIPE)``."""


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    stderr: int = asyncio.subprocess.STDOUT,
    within: float = 20_000 * MS,
    unprivileged: bool = False,
) -> CliResult:
    """``coze-edge ARGS`` to its end (TimeoutError after ``within`` seconds)."""
    proc = await start_cli(*args, env=env, stderr=stderr, unprivileged=unprivileged)
    async with asyncio.timeout(within):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), (err or b"").decode())


async def read_until(proc: asyncio.subprocess.Process, marker: str, log: list[str]) -> None:
    """Read ``proc``'s output into ``log`` up to the first line containing ``marker``."""
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError("daemon exited early:\n" + "".join(log))
        log.append(line)
        if marker in line:
            return


@dataclass
class CliRun:
    """A ``coze-edge`` process started by :func:`running_cli`, and what it printed."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    """The lines read so far by :meth:`read_until`."""
    rest: str = ""
    """What it printed after those, up to its end (set once it has stopped)."""

    async def read_until(self, marker: str) -> None:
        await read_until(self.process, marker, self.lines)

    @property
    def output(self) -> str:
        return "".join(self.lines) + self.rest

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


@contextlib.asynccontextmanager
async def running_cli(
    config: Path, command: str = "run", *, env: Mapping[str, str] | None = None
) -> AsyncIterator[CliRun]:
    """``coze-edge COMMAND -c CONFIG`` for the block; then SIGTERM (once, if it still runs)
    and its remaining output, within ``STOP_WITHIN_S`` + 2 s."""
    run = CliRun(await start_cli(command, "-c", str(config), env=env))
    try:
        yield run
    finally:
        if run.process.returncode is None:
            run.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_WITHIN_S + 2):
            rest, _ = await run.process.communicate()
        run.rest = rest.decode()


def write_cli_config(
    directory: Path, coze: CozeEndpoint, /, *, pat: str = SIM_PAT, **sections: Any
) -> Path:
    """
    ``directory/config.yaml`` for ``coze-edge run -c`` against ``coze``: the personal access
    token in ``directory/pat`` (0600), state in ``directory/state``, the file backend with
    the weather question as microphone (in real time) and ``directory/out.wav`` as speaker,
    device 5551234 "kitchen", info logs. Each of ``sections`` is merged into its section.
    """
    pat_file = directory / "pat"
    pat_file.write_text(pat + "\n")
    pat_file.chmod(0o600)
    (directory / "state").mkdir(exist_ok=True)
    settings = daemon_settings(
        coze,
        directory / "state",
        coze={"bot_id": "7496347519799787557"},
        auth={"method": "pat", "pat_file": str(pat_file)},
        device={"id": "5551234", "name": "kitchen"},
        audio={
            "backend": "file",
            "file_input": str(DATA / "utterance-weather.wav"),
            "file_output": str(directory / "out.wav"),
        },
        log={"level": "info"},
    )
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(merged(settings, sections)))
    return path
