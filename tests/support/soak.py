"""
The soak: turns against the simulator (a separate process) as fast as they go, the daemon
in this process with a microphone that speaks whenever the device is idle; RSS, open file
descriptors and asyncio tasks after a warm-up and at the end. ``scripts/soak [TURNS]``
runs 1,000 and prints them; tests/test_soak.py runs a short one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from coze_edge.adapters.file_audio import FileSpeaker
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE
from coze_edge.core.status import DeviceStatus, State
from coze_edge.credentials import StaticToken
from coze_edge.daemon import Daemon
from tests.support.cli import start_cli
from tests.support.daemon import SIM_PAT, daemon_config, supervised
from tests.support.data import DATA
from tests.support.ports import free_port

UTTERANCE = DATA / "utterance-weather.wav"
BLOCK = CAPTURE.frame_bytes(60)


class TurnTakingMicrophone:
    """Says the utterance each time the device is idle, else silence; never waits."""

    def __init__(self, state: list[State]) -> None:
        self._state = state
        self._speech = read_wav_as(UTTERANCE, CAPTURE)
        self.overruns = 0
        self.captured_at: float | None = None
        self.on_capture: Callable[[bytes], bytes] | None = None
        self.handoff_ms = 0  # ignored: it never waits

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        return None

    async def frames(self) -> AsyncIterator[bytes]:
        silence = bytes(BLOCK)
        while True:
            if self._state[0] is State.IDLE:
                for i in range(0, len(self._speech), BLOCK):
                    self.captured_at = time.monotonic()
                    yield self._speech[i : i + BLOCK].ljust(BLOCK, b"\0")
            for _ in range(20):  # 1.2 s of silence ends the turn, then idle waits
                await asyncio.sleep(0.001)
                self.captured_at = time.monotonic()
                yield silence


@dataclass
class Sample:
    turns: int
    rss_kb: int
    fds: int
    tasks: int


def sample(turns: int) -> Sample:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return Sample(
        turns,
        int(status["VmRSS"].split()[0]),
        len(os.listdir("/proc/self/fd")),
        len(asyncio.all_tasks()),
    )


@dataclass(frozen=True)
class SimulatorProcess:
    """``coze-edge simulator`` in a process of its own: its work is not in our samples."""

    process: asyncio.subprocess.Process
    api_base: str
    ws_base: str


async def soak(turns: int, tmp: Path, *, warm_up: int = 20) -> tuple[Sample, Sample]:
    """Run ``turns`` turns after ``warm_up`` ones; the samples after each stretch."""
    port = free_port()
    base = f"127.0.0.1:{port}"
    process = await start_cli(
        "simulator", "--port", str(port), "--reply-speed", "100", stdout=asyncio.subprocess.DEVNULL
    )
    simulator = SimulatorProcess(process, api_base=f"http://{base}", ws_base=f"ws://{base}")
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        config = daemon_config(simulator, tmp, audio={"earcons": False}, log={"level": "warning"})
        state = [State.STARTING]
        completed = 0

        def on_status(status: DeviceStatus) -> None:
            nonlocal completed
            if state[0] is State.SPEAKING and status.state is State.IDLE:
                completed += 1
            state[0] = status.state

        def audio() -> tuple[TurnTakingMicrophone, FileSpeaker]:
            return TurnTakingMicrophone(state), FileSpeaker(Path(os.devnull), realtime=False)

        # Not running_daemon: its record of every state and event would grow with the turns.
        daemon = Daemon(
            config, tokens=StaticToken(SIM_PAT), on_status=on_status, env={}, audio=audio
        )
        async with supervised(daemon) as task:
            while completed < warm_up:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.05)
            first = sample(completed)
            while completed < warm_up + turns:
                await asyncio.sleep(0.05)
                if task.done():
                    raise RuntimeError("the daemon stopped during the soak")
            last = sample(completed)
        return first, last
    finally:
        simulator.process.kill()
        await simulator.process.wait()
