"""
Benchmarks of the daemon against the bundled simulator (file audio backend), printed as
one table. Run through `scripts/bench`. Each figure is measured in this run:

  start->READY       process start to READY=1 (subprocess, sd_notify socket)
  idle CPU           CPU seconds per second while idle-listening to silence (subprocess)
  RSS steady/peak    resident memory after a turn / its high-water mark (subprocess)
  first audio        end of the user's turn (complete sent) to the first reply delta
  uplink             bytes sent upstream per second of audio appended
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coze_edge.simulator import Simulator  # noqa: E402

DATA = ROOT / "tests" / "data"
IDLE_SECONDS = 10.0
TURNS = 5


def config_file(tmp: Path, sim: Simulator, wav: Path, *, realtime: bool = True) -> Path:
    (tmp / "pat").write_text("sim-pat")
    (tmp / "state").mkdir(exist_ok=True)
    config = {
        "coze": {"api_base": sim.api_base, "ws_base": sim.ws_base, "bot_id": "7"},
        "auth": {"method": "pat", "pat_file": str(tmp / "pat")},
        "device": {"id": "42"},
        "state_dir": str(tmp / "state"),
        "audio": {"backend": "file", "file_input": str(wav), "file_realtime": realtime},
        "log": {"level": "warning"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def proc_stat(pid: int) -> tuple[float, int, int]:
    """CPU seconds, RSS and peak RSS (kB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return cpu, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


async def daemon_figures(sim: Simulator, tmp: Path) -> dict[str, str]:
    notify = tmp / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.setblocking(False)
    config = config_file(tmp, sim, DATA / "silence-2s.wav")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COZE_EDGE_")}
    env["NOTIFY_SOCKET"] = str(notify)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coze_edge",
        "run",
        "-c",
        str(config),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    loop = asyncio.get_running_loop()
    while (await loop.sock_recv(sock, 4096)) != b"READY=1":
        pass
    ready = time.monotonic() - started
    await asyncio.sleep(2.0)  # settle: the microphone is running, the session open
    cpu0, _, _ = proc_stat(proc.pid)
    await asyncio.sleep(IDLE_SECONDS)
    cpu1, rss, peak = proc_stat(proc.pid)
    proc.send_signal(signal.SIGTERM)
    await proc.wait()
    sock.close()
    return {
        "start->READY": f"{ready * 1000:.0f} ms",
        "idle CPU (file backend)": f"{(cpu1 - cpu0) / IDLE_SECONDS:.4f} s/s",
        "RSS idle / peak": f"{rss / 1024:.1f} MB / {peak / 1024:.1f} MB",
    }


async def turn_figures(sim: Simulator, tmp: Path) -> dict[str, str]:
    from coze_edge.config import load_config
    from coze_edge.credentials import StaticToken
    from coze_edge.daemon import Daemon
    from coze_edge.supervisor import supervise

    first_audio: list[float] = []
    uplink: list[float] = []
    for _ in range(TURNS):
        config = load_config(
            config_file(tmp, sim, DATA / "utterance-weather.wav", realtime=False), env={}
        )
        stop = asyncio.Event()

        def on_event(event: dict[str, object], stop: asyncio.Event = stop) -> None:
            if event["type"] == "turn":
                first_audio.append(float(str(event["first_audio_ms"])))
                stop.set()

        daemon = Daemon(config, tokens=StaticToken("sim-pat"), on_event=on_event, env={})
        async with asyncio.timeout(60):
            await supervise(daemon.services(), stop=stop, signals=())
        conn = sim.connections[-1]
        audio = len(conn.appended_audio())
        sent = sum(
            len(json.dumps(f, separators=(",", ":")))
            for f in conn.received
            if f["event_type"] == "input_audio_buffer.append"
        )
        uplink.append(sent / (audio / 32000))
    latency = statistics.median(first_audio)
    return {
        f"complete->first reply audio (p50 of {TURNS}, simulator)": f"{latency:.0f} ms",
        "uplink, PCM 16 kHz as JSON+base64": f"{statistics.median(uplink) / 1000:.1f} kB/audio s",
    }


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="coze-edge-bench-") as tmp:
        async with Simulator(reply_speed=50.0) as sim:
            figures = await daemon_figures(sim, Path(tmp))
            figures |= await turn_figures(sim, Path(tmp))
    width = max(map(len, figures))
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(f"coze-edge bench ({machine})")
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    asyncio.run(main())
