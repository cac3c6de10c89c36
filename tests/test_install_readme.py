"""
The README's "Install on a Raspberry Pi" block, run line by line in a throwaway root: the
real `scripts/install` (pip and all) from a copy of this checkout, then each command as
written, against the simulator.

The README is read, not copied: every line of its block must be one of the steps below,
in the same order, so a changed instruction fails here until it is tried. What a throwaway
root cannot have is translated, the same way for every line:

* ``/etc/coze-edge``, ``/var/lib/coze-edge`` and ``/run/coze-edge`` are the root's; every
  command gets them from systemd's ``CONFIGURATION_DIRECTORY``, ``STATE_DIRECTORY`` and
  ``RUNTIME_DIRECTORY`` (which the program reads for them), and ``/usr/local/bin`` of the
  root comes first on ``PATH``;
* ``sudo -u coze-edge`` runs as ``nobody`` when the tests run as root (the install is
  told ``--owner nobody``), so file modes apply as they would to the service's user; as
  another user the tests run it as themselves;
* ``sudo`` alone runs as the tests' user; ``scripts/install`` gets ``--prefix`` and skips
  apt, systemctl and creating the user; ``sudoedit`` is this test's edit of the file;
  ``systemctl enable --now`` starts the unit's ``ExecStart`` as systemd would (its user,
  its directories); ``usermod -aG coze-edge`` is checked as what it grants (the socket's
  modes); ``journalctl -f`` reads the daemon's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coze_edge.simulator import Simulator
from tests.support.cli import UNPRIVILEGED, cli_env
from tests.support.data import DATA
from tests.support.timing import MS

PROJECT = Path(__file__).parent.parent
SHIPPED = ("pyproject.toml", "README.md", "coze_edge", "config", "systemd", "scripts")
"""What a fresh clone holds that the install uses."""
BOT = "7496347519799787557"
CLIENT = "1234.app.coze"
SERVICE_USER = "nobody"
AS_ROOT = os.geteuid() == 0


def readme_install_block() -> list[str]:
    """The commands of the README's install block, comments dropped."""
    section = (PROJECT / "README.md").read_text().split("## Install on a Raspberry Pi\n")[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [re.split(r"\s+# ", line)[0].strip() for line in block.splitlines() if line.strip()]


@dataclass
class Pi:
    """The throwaway root, the simulator as Coze, and what ran."""

    root: Path
    source: Path
    sim: Simulator
    daemon: asyncio.subprocess.Process | None = None
    journal: list[str] = field(default_factory=list)

    def path(self, absolute: str) -> Path:
        """``absolute`` (a path on the Pi) inside the throwaway root."""
        return self.root / absolute.lstrip("/")

    def env(self) -> dict[str, str]:
        return cli_env(
            {
                "PATH": f"{self.path('/usr/local/bin')}:{os.environ['PATH']}",
                "CONFIGURATION_DIRECTORY": str(self.path("/etc/coze-edge")),
                "STATE_DIRECTORY": str(self.path("/var/lib/coze-edge")),
                "RUNTIME_DIRECTORY": str(self.path("/run/coze-edge")),
                "PYTHONUNBUFFERED": "1",
            }
        )

    async def start(self, command: str, *, as_service: bool) -> asyncio.subprocess.Process:
        """``command`` through the shell, as written, in the root's environment."""
        prefix = UNPRIVILEGED if as_service and AS_ROOT else ()
        return await asyncio.create_subprocess_exec(
            *prefix,
            "bash",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env(),
            cwd=self.source,
        )

    async def run(self, command: str, *, as_service: bool = False) -> tuple[int, str]:
        proc = await self.start(command, as_service=as_service)
        async with asyncio.timeout(60_000 * MS):
            out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()


async def read_line(proc: asyncio.subprocess.Process, marker: str, seen: list[str]) -> str:
    assert proc.stdout is not None
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise AssertionError(f"ended before {marker!r}:\n" + "".join(seen))
        seen.append(line)
        if marker in line:
            return line


# --- the steps, in the README's order ------------------------------------------------------


async def install(pi: Pi, command: str) -> None:
    offline = "--no-apt --no-systemctl --no-user"
    code, out = await pi.run(f"{command} --prefix {pi.root} {offline} --owner {SERVICE_USER}")
    assert code == 0, out
    link = pi.path("/usr/local/bin/coze-edge")
    assert link.resolve() == pi.path("/opt/coze-edge/venv/bin/coze-edge").resolve()
    state = pi.path("/var/lib/coze-edge")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    if AS_ROOT:
        assert state.owner() == SERVICE_USER


async def edit_config(pi: Pi) -> None:
    """What the owner types: the bot and the OAuth app; for this test bench also Coze's
    address (the simulator), a WAV as the microphone and a fixed device id."""
    config = pi.path("/etc/coze-edge/config.yaml")
    question = pi.path("/srv/question.wav")
    question.parent.mkdir()
    shutil.copy(DATA / "silence-2s.wav", question)
    question.chmod(0o644)
    replacements = {
        "  bot_id: null": f'  bot_id: "{BOT}"',
        "  client_id: null": f'  client_id: "{CLIENT}"',
        "  api_base: null": f"  api_base: {pi.sim.api_base}",
        "  ws_base: null": f"  ws_base: {pi.sim.ws_base}",
        "  backend: sounddevice": "  backend: file",
        "  file_input: null": f"  file_input: {question}",
        "  id: null": '  id: "5551234"',
    }
    lines = config.read_text().splitlines()
    for i, line in enumerate(lines):
        for old, new in replacements.items():
            if line.startswith(old + " ") or line == old:
                lines[i] = new
    config.write_text("\n".join(lines) + "\n")
    assert config.read_text().count('"5551234"') == 1


async def check_config(pi: Pi, command: str) -> None:
    code, out = await pi.run(command, as_service=True)
    assert code == 0, out
    assert out == f"{pi.path('/etc/coze-edge/config.yaml')}: ok\n"


async def login(pi: Pi, command: str) -> None:
    """Before the first start: the code is shown, approved on the 'phone', the token saved."""
    proc = await pi.start(command, as_service=True)
    seen: list[str] = []
    async with asyncio.timeout(30_000 * MS):
        shown = await read_line(proc, "enter the code", seen)
        code = shown.split()[-1]
        assert code in pi.sim.pending_user_codes()
        pi.sim.approve(code)
        rest, _ = await proc.communicate()
    output = "".join(seen) + rest.decode()
    assert proc.returncode == 0, output
    token = pi.path("/var/lib/coze-edge/token.json")
    assert f"Logged in; the token is saved in {token}" in output
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    if AS_ROOT:
        assert token.owner() == SERVICE_USER


async def start_unit(pi: Pi) -> None:
    """The unit's ExecStart with its User and directories, as systemd starts it."""
    unit = pi.path("/etc/systemd/system/coze-edge.service").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.+)$", unit, flags=re.MULTILINE)
    assert re.search(r"^RuntimeDirectoryMode=0750$", unit, flags=re.MULTILINE)
    runtime = pi.path("/run/coze-edge")
    runtime.mkdir(parents=True, mode=0o750)
    if AS_ROOT:
        shutil.chown(runtime, SERVICE_USER)
    program, *args = shlex.split(exec_start)
    pi.daemon = await pi.start(shlex.join([str(pi.path(program)), *args]), as_service=True)
    async with asyncio.timeout(30_000 * MS):
        await read_line(pi.daemon, "state: idle", pi.journal)


async def doctor(pi: Pi, command: str) -> None:
    code, out = await pi.run(command, as_service=True)
    assert code == 0, out
    assert f"ok    config       loaded; device id 5551234, bot {BOT}" in out
    assert "ok    credentials  OAuth token valid until" in out
    assert out.splitlines()[-1].startswith("all checks passed")


async def join_group(pi: Pi) -> None:
    """What the group grants: the socket is the group's (0660) in a directory only root,
    the service and the group may enter (0750)."""
    sock = pi.path("/run/coze-edge/ctl.sock")
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o750


async def ctl_status(pi: Pi, command: str) -> None:
    code, out = await pi.run(command)
    assert code == 0, out
    assert out.splitlines()[0] == "state: idle"
    assert "muted: no" in out.splitlines()


async def journal(pi: Pi) -> None:
    assert pi.daemon is not None
    pi.daemon.send_signal(signal.SIGTERM)
    async with asyncio.timeout(5_000 * MS):
        rest, _ = await pi.daemon.communicate()
    text = "".join(pi.journal) + rest.decode()
    assert pi.daemon.returncode == 0, text
    assert "Traceback" not in text
    assert "starting (device id 5551234)" in text


Step = Callable[[Pi, str], Awaitable[None]]


def without_command(step: Callable[[Pi], Awaitable[None]]) -> Step:
    async def run(pi: Pi, command: str) -> None:
        await step(pi)

    return run


STEPS: dict[str, Step] = {
    "sudo scripts/install": install,
    "sudoedit /etc/coze-edge/config.yaml": without_command(edit_config),
    "sudo -u coze-edge coze-edge check-config": check_config,
    "sudo -u coze-edge coze-edge login": login,
    "sudo systemctl enable --now coze-edge": without_command(start_unit),
    "sudo -u coze-edge coze-edge doctor": doctor,
    "sudo usermod -aG coze-edge $USER": without_command(join_group),
    "sudo coze-edge ctl status": ctl_status,
    "journalctl -u coze-edge -f": without_command(journal),
}


def as_run(command: str) -> str:
    """The command without its sudo: who runs it is the step's business."""
    return re.sub(r"^sudo (-u coze-edge )?", "", command)


@contextlib.contextmanager
def throwaway_root() -> Iterator[tuple[Path, Path]]:
    """A root and a fresh copy of this checkout, in a directory every user may enter (the
    tests' own tmp_path is root's alone, and ``nobody`` must reach the root)."""
    top = Path(tempfile.mkdtemp(prefix="coze-edge-pi-"))
    try:
        top.chmod(0o755)
        source = top / "coze-edge"
        source.mkdir()
        for name in SHIPPED:
            item = PROJECT / name
            if item.is_dir():
                shutil.copytree(item, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(item, source / name)
        root = top / "root"
        root.mkdir()
        yield root, source
    finally:
        shutil.rmtree(top)


@contextlib.asynccontextmanager
async def pi_with_coze() -> AsyncIterator[Pi]:
    with throwaway_root() as (root, source):
        async with Simulator(poll_interval_s=1) as sim:
            pi = Pi(root=root, source=source, sim=sim)
            try:
                yield pi
            finally:
                if pi.daemon is not None and pi.daemon.returncode is None:
                    pi.daemon.kill()
                    await pi.daemon.wait()


@pytest.mark.timeout(900)
async def test_the_readme_install_steps_work_as_written() -> None:
    """Each line of the README's install block, in order, as the README writes it: the
    install puts `coze-edge` on PATH and makes the state directory, `login` before the
    first start saves the token as the service's user, the unit starts, `doctor` and
    `ctl status` find the config and the daemon with no -c."""
    steps = readme_install_block()
    assert steps == list(STEPS), "the README's install block changed: try it here"

    async with pi_with_coze() as pi:
        for command in steps:
            await STEPS[command](pi, as_run(command))
