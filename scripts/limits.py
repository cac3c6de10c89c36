"""
The peaks that systemd/coze-edge.service's MemoryMax=, TasksMax= and LimitNOFILE= are set
from: a real ``coze-edge run`` (a subprocess, as systemd runs it) on PortAudio through a
private PulseAudio server, with echo cancellation, the wake word, MQTT, a state hook and a
``ctl status`` per turn, talked to for a while (default 5 minutes; every other reply is
interrupted, by speech or by the wake word); then its control socket is flooded with
1,500 idle clients, three times. /proc is sampled every 20 ms. The daemon runs with the
unit's LimitNOFILE. Run through `scripts/limits [MINUTES]`.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

from coze_edge.simulator import Simulator
from tests.support.cli import start_cli, write_cli_config
from tests.support.data import DATA
from tests.support.mosquitto import running_broker
from tests.support.pulseaudio import louder, pulse_server

UNIT = Path(__file__).parents[1] / "systemd" / "coze-edge.service"
WAKE_AND_QUESTION = DATA / "wake-okay-nabu-then-question.wav"
WAKE = DATA / "wake-okay-nabu.wav"
STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "Threads")


def processes(pid: int) -> list[int]:
    """``pid`` and its descendants (a hook and what it started)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in processes(int(child)))]


def proc_status(pid: int) -> dict[str, int]:
    """The kB and counts of ``/proc/PID/status`` in STATUS_KEYS."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_KEYS:
            found[key] = int(value.split()[0])
    return found


class Peaks:
    """The highest value seen of each figure."""

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}

    def sample(self, pid: int) -> None:
        try:
            figures = proc_status(pid)
            figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return
        tasks = 0
        for each in processes(pid):
            try:
                tasks += proc_status(each)["Threads"]
            except (OSError, KeyError):
                continue  # it ended meanwhile
        figures["tasks with children"] = tasks
        for key, value in figures.items():
            self.peak[key] = max(self.peak.get(key, 0), value)

    def show(self) -> str:
        rss, anon, files = (self.peak.get(k, 0) / 1024 for k in ("VmRSS", "RssAnon", "RssFile"))
        return (
            f"RSS {rss:.1f} MB ({anon:.1f} anonymous, {files:.1f} files), "
            f"{self.peak.get('Threads', 0)} threads, "
            f"{self.peak.get('tasks with children', 0)} tasks with children, "
            f"{self.peak.get('fds', 0)} fds"
        )


def unit_nofile() -> int:
    found = re.search(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.MULTILINE)
    return int(found[1]) if found else resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def idle_clients(path: Path, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(1.0)
        try:
            client.connect(str(path))
        except OSError:
            client.close()
            continue
        clients.append(client)
    return clients


async def run(minutes: float, tmp: Path) -> None:
    hook = tmp / "leds"
    hook.write_text("#!/bin/sh\nsleep 0.2\n")  # a hook that takes a moment, as LEDs do
    hook.chmod(0o755)
    with pulse_server(tmp / "pulse", echo_path=True) as pulse:
        async with Simulator(reply_speed=4.0) as sim, running_broker(tmp / "broker") as broker:
            config = write_cli_config(
                tmp,
                sim,
                audio={
                    "backend": "sounddevice",
                    "input_device": "pulse",
                    "output_device": "pulse",
                    "echo_cancellation": True,
                    "earcons": False,
                },
                wake={"word": "okay_nabu"},
                mqtt={"host": "127.0.0.1", "port": broker.port},
                hooks={"on_state": f"{hook} --ring"},
            )
            daemon = await start_cli("run", "-c", str(config))
            nofile = unit_nofile()
            resource.prlimit(daemon.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
            peaks = Peaks()
            output: list[str] = []

            async def read() -> None:
                assert daemon.stdout is not None
                while line := (await daemon.stdout.readline()).decode():
                    output.append(line)

            async def sample() -> None:
                while True:
                    peaks.sample(daemon.pid)
                    await asyncio.sleep(0.02)

            async def until(state: str, within: float, since: int) -> bool:
                end = time.monotonic() + within
                while time.monotonic() < end:
                    if any(f"state: {state}" in line for line in output[since:]):
                        return True
                    await asyncio.sleep(0.05)
                return False

            reading = asyncio.create_task(read())
            sampling = asyncio.create_task(sample())
            await until("idle", 30, 0)
            loud = louder(DATA / "utterance-weather.wav", tmp / "loud.wav", 3.0)
            turns = interrupted = 0
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                since = len(output)
                await asyncio.to_thread(pulse.play_into_mic(WAKE_AND_QUESTION).wait)
                if not await until("speaking", 15, since):
                    continue
                turns += 1
                if turns % 2 == 0:
                    await asyncio.sleep(1.0)
                    clip = WAKE if turns % 4 == 0 else loud
                    await asyncio.to_thread(pulse.play_into_mic(clip).wait)
                    interrupted += 1
                await (await start_cli("ctl", "-c", str(config), "status")).communicate()
                await until("idle", 30, since)
                await asyncio.sleep(0.5)
            talking = peaks
            peaks = Peaks()
            for _ in range(3):
                clients: list[socket.socket] = []
                for _ in range(15):
                    clients += await asyncio.to_thread(idle_clients, tmp / "state/ctl.sock", 100)
                await asyncio.sleep(0.5)
                for client in clients:
                    client.close()
            sampling.cancel()
            daemon.terminate()
            await daemon.wait()
            reading.cancel()
    problems = sum("Traceback" in line or "Too many" in line for line in output)
    print(f"  {minutes:g} min, {turns} turns, {interrupted} interrupted, LimitNOFILE={nofile}")
    print(f"  talking:  {talking.show()}")
    print(f"  flooded:  {peaks.show()}")
    print(f"  tracebacks or 'Too many open files' in the log: {problems}")


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(minutes, Path(tmp)))


if __name__ == "__main__":
    main()
