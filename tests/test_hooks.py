"""State hooks as real programs: a hook that overruns, or is running when the daemon stops,
is killed with every process it started."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from coze_edge.core.status import DeviceStatus, State
from coze_edge.hooks import StateHook
from tests.support.timing import MS


def hook_script(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A hook that starts a child ignoring SIGTERM/SIGINT/SIGHUP (as an LED animation that
    never ends might), writes both pids, and waits; the script, and the two pid files."""
    hook_pid, child_pid = tmp_path / "hook.pid", tmp_path / "child.pid"
    script = tmp_path / "leds"
    script.write_text(
        "#!/bin/sh\n"
        f"echo $$ > {hook_pid}.tmp && mv {hook_pid}.tmp {hook_pid}\n"
        "(trap '' TERM INT HUP; exec sleep 60) &\n"
        f"echo $! > {child_pid}.tmp && mv {child_pid}.tmp {child_pid}\n"
        "wait\n"
    )
    script.chmod(0o755)
    return script, hook_pid, child_pid


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def wait_for(predicate: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls files and /proc, not a flag
            await asyncio.sleep(0.02)


async def read_pid(path: Path) -> int:
    await wait_for(path.exists, 5000 * MS)
    return int(path.read_text())  # noqa: ASYNC240 - a few bytes, written whole


@contextlib.asynccontextmanager
async def running(hook: StateHook) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(hook.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_hook_that_overruns_is_killed_with_the_child_it_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After hooks.timeout_s the hook's whole process group is killed: the child that
    ignores SIGTERM is gone too, not left running for ever."""
    script, hook_pid, child_pid = hook_script(tmp_path)
    hook = StateHook(f"{script} --ring", timeout_s=0.3)
    hook.changed(DeviceStatus(state=State.IDLE))

    with caplog.at_level(logging.WARNING, logger="coze_edge.hooks"):
        async with running(hook):
            hook_process, child = await read_pid(hook_pid), await read_pid(child_pid)
            assert alive(child)
            await wait_for(lambda: "killed after 0.3 s" in caplog.text, 5000 * MS)
            await wait_for(lambda: not alive(child), 2000 * MS)

    assert not alive(hook_process)
    assert "with the processes it started" in caplog.text


async def test_the_next_state_runs_after_a_killed_hook(tmp_path: Path) -> None:
    """A killed hook does not stop the ones queued after it."""
    script, hook_pid, _ = hook_script(tmp_path)
    seen = tmp_path / "seen"
    quick = tmp_path / "quick"
    quick.write_text(
        "#!/bin/sh\n"
        f'echo "$COZE_EDGE_HOOK_STATE" >> {seen}\n'
        f'if [ "$COZE_EDGE_HOOK_STATE" = idle ]; then exec {script}; fi\n'
    )
    quick.chmod(0o755)
    hook = StateHook(str(quick), timeout_s=0.3)
    hook.changed(DeviceStatus(state=State.IDLE))
    hook.changed(DeviceStatus(state=State.LISTENING))

    async with running(hook):
        await read_pid(hook_pid)
        await wait_for(lambda: seen.exists() and "listening" in seen.read_text(), 5000 * MS)

    assert seen.read_text().split() == ["idle", "listening"]


async def test_a_hook_running_when_the_daemon_stops_is_killed(tmp_path: Path) -> None:
    """Cancelling the hook service (the daemon stopping) kills the running hook and its
    child instead of leaving them behind."""
    script, hook_pid, child_pid = hook_script(tmp_path)
    hook = StateHook(str(script), timeout_s=60)
    hook.changed(DeviceStatus(state=State.SPEAKING))

    async with running(hook):
        hook_process, child = await read_pid(hook_pid), await read_pid(child_pid)

    await wait_for(lambda: not alive(hook_process) and not alive(child), 2000 * MS)
