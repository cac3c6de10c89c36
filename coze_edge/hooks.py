"""
State hooks for LED rings and displays: a configured program runs at every state change,
with the state in its environment. Runs one at a time in order, never blocks audio (the
daemon only queues), is killed after ``hooks.timeout_s`` with every process it started (its
process group); failures are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from typing import Final

from coze_edge.core.status import DeviceStatus

log = logging.getLogger(__name__)

QUEUE_SIZE = 32
STATE_VARIABLE: Final = "COZE_EDGE_HOOK_STATE"
"""The state (``idle``, ``listening``, ...) in the hook's environment."""
MUTED_VARIABLE: Final = "COZE_EDGE_HOOK_MUTED"
"""``1`` if the microphone is muted, else ``0``, in the hook's environment."""


class StateHook:
    def __init__(self, command: str, *, timeout_s: float = 5.0) -> None:
        self._argv = shlex.split(command)
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[DeviceStatus] = asyncio.Queue(QUEUE_SIZE)
        self._last: tuple[str, bool] | None = None

    def changed(self, status: DeviceStatus) -> None:
        """Queue a run for this status; never waits (the oldest run is dropped if full)."""
        key = (status.state.value, status.muted)
        if key == self._last:
            return
        self._last = key
        if self._queue.full():
            skipped = self._queue.get_nowait()
            log.warning(
                "! state hook %s falls behind: skipped its run for %s",
                self._argv[0],
                skipped.state.value,
            )
        self._queue.put_nowait(status)

    async def run(self) -> None:
        while True:
            status = await self._queue.get()
            await self._run_once(status)

    async def _run_once(self, status: DeviceStatus) -> None:
        env = {
            **os.environ,
            STATE_VARIABLE: status.state.value,
            MUTED_VARIABLE: "1" if status.muted else "0",
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                # A group of its own, so that a timeout ends everything it started: a child
                # left behind (an animation, a `sleep`) would otherwise outlive the kill.
                process_group=0,
            )
        except OSError as exc:
            log.warning("! state hook %s cannot start: %s", self._argv[0], exc)
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                code = await process.wait()
        except TimeoutError:
            await _kill_group(process)
            log.warning(
                "! state hook %s killed after %.1f s, with the processes it started",
                self._argv[0],
                self._timeout_s,
            )
            return
        except asyncio.CancelledError:  # the daemon stops: leave nothing running
            await asyncio.shield(_kill_group(process))
            raise
        if code != 0:
            log.warning("! state hook %s exited with %d", self._argv[0], code)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the hook's process group (its pid is the group's id) and reap the hook."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
