"""
The soak: N turns (default 1,000) against the simulator (a separate process) as fast as
they go, the daemon in this process with a microphone that speaks whenever the device is
idle. Prints RSS, open file descriptors and asyncio tasks after a warm-up and at the end.
Run through `scripts/soak [TURNS]`; tests/test_soak.py runs a short one.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from coze_edge.adapters.file_audio import FileSpeaker  # noqa: E402
from coze_edge.adapters.wav import read_wav_as  # noqa: E402
from coze_edge.config import config_from_mapping  # noqa: E402
from coze_edge.core.audio import CAPTURE  # noqa: E402
from coze_edge.core.status import DeviceStatus, State  # noqa: E402
from coze_edge.credentials import StaticToken  # noqa: E402
from coze_edge.daemon import Daemon  # noqa: E402
from coze_edge.supervisor import supervise  # noqa: E402

UTTERANCE = ROOT / "tests" / "data" / "utterance-weather.wav"
BLOCK = CAPTURE.frame_bytes(60)


class TurnTakingMicrophone:
    """Says the utterance each time the device is idle, else silence; never waits."""

    def __init__(self, state: list[State]) -> None:
        self._state = state
        self._speech = read_wav_as(UTTERANCE, CAPTURE)
        self.overruns = 0
        self.captured_at: float | None = None
        self.on_capture: Callable[[bytes], bytes] | None = None

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def soak(turns: int, tmp: Path, *, warm_up: int = 20) -> tuple[Sample, Sample]:
    """Run ``turns`` turns after ``warm_up`` ones; the samples after each stretch."""
    port = free_port()
    simulator = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop matters
        [
            sys.executable,
            "-m",
            "coze_edge",
            "simulator",
            "--port",
            str(port),
            "--reply-speed",
            "100",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"127.0.0.1:{port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        config = config_from_mapping(
            {
                "coze": {"api_base": f"http://{base}", "ws_base": f"ws://{base}", "bot_id": "7"},
                "auth": {"method": "pat"},
                "device": {"id": "42"},
                "state_dir": str(tmp),
                "audio": {"earcons": False},
                "log": {"level": "warning"},
            },
            env={},
        )
        state = [State.STARTING]
        completed = 0

        def on_status(status: DeviceStatus) -> None:
            nonlocal completed
            if state[0] is State.SPEAKING and status.state is State.IDLE:
                completed += 1
            state[0] = status.state

        def audio() -> tuple[TurnTakingMicrophone, FileSpeaker]:
            return TurnTakingMicrophone(state), FileSpeaker(Path(os.devnull), realtime=False)

        daemon = Daemon(
            config, tokens=StaticToken("sim-pat"), on_status=on_status, env={}, audio=audio
        )
        stop = asyncio.Event()
        task = asyncio.create_task(supervise(daemon.services(), stop=stop, signals=()))
        try:
            while completed < warm_up:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.05)
            first = sample(completed)
            while completed < warm_up + turns:
                await asyncio.sleep(0.05)
                if task.done():
                    raise RuntimeError("the daemon stopped during the soak")
            last = sample(completed)
        finally:
            stop.set()
            await task
        return first, last
    finally:
        simulator.kill()
        simulator.wait()


def main() -> None:
    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        first, last = asyncio.run(soak(turns, Path(tmp)))
    took = time.monotonic() - started
    print(f"{last.turns - first.turns} turns in {took:.0f} s (after {first.turns} warm-up turns)")
    print(f"{'':<12} {'after warm-up':>14} {'at the end':>11} {'growth':>8}")
    print(
        f"{'RSS':<12} {first.rss_kb / 1024:>11.1f} MB {last.rss_kb / 1024:>8.1f} MB"
        f" {(last.rss_kb - first.rss_kb) / 1024:>+6.2f} MB"
    )
    print(f"{'open fds':<12} {first.fds:>14} {last.fds:>11} {last.fds - first.fds:>+8}")
    print(f"{'tasks':<12} {first.tasks:>14} {last.tasks:>11} {last.tasks - first.tasks:>+8}")


if __name__ == "__main__":
    main()
