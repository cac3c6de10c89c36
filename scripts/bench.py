"""
Benchmarks of the daemon against the bundled simulator (file audio backend), printed as
one table. Run through `scripts/bench`. Each figure is measured in this run:

  start->READY       process start to READY=1 (subprocess, sd_notify socket)
  idle CPU           CPU seconds per second while idle-listening to silence (subprocess)
  RSS steady/peak    resident memory after a turn / its high-water mark (subprocess)
  first audio        end of the user's turn (complete sent) to the first reply delta
  uplink             bytes sent upstream per second of audio appended, PCM and Opus
  PulseAudio run     the daemon on PortAudio streams through PulseAudio null sinks, asked
                     and interrupted like a kitchen device (scripts/audio_run.py): its own
                     delays from a captured block to the append / complete / playback flush
                     it causes, and from a reply's first delta to its first sample at the
                     device; microphone overruns and speaker underruns
  barge-in           talking over the reply (issue #21), on both PulseAudio echo paths of
                     scripts/aec-check (fixed and drifting delay) with echo cancellation
                     on (scripts/audio_run.py, ``BENCH_BARGE_IN_MINUTES`` each, default 2):
                     the user's onset to the reply ducked (its first ducked block handed to
                     the device, on the daemon's clock), to it silent and to it cut, both
                     recorded at the microphone and the speaker (a reply ducked by 40 dB,
                     -60 dBFS, counts as silent), beside the budgets; replies that cut
                     themselves off (no barge-in near) out of all replies played

  always-on          what listening all day costs (issue #21): the bare capture floor (a
                     sounddevice client capturing 16 kHz mono in 20 ms blocks that does
                     nothing), then the daemon (``coze-edge run``, sounddevice backend) in
                     a silent room, with the wake word in a silent room, and with the wake
                     word and talk-radio speech playing into the microphone: CPU s/s and
                     RSS from /proc, each case as a ratio to the floor measured in the same
                     window (both run side by side), median over the rounds

Groups: ``scripts/bench`` runs all; ``scripts/bench turn`` the first lines up to the
PulseAudio run, ``scripts/bench barge-in`` and ``scripts/bench always-on`` their groups.
``BENCH_ALWAYS_ON_SECONDS`` (default 20) and ``BENCH_ALWAYS_ON_ROUNDS`` (default 3) size
the always-on windows.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import yaml

from coze_edge.config import load_config
from coze_edge.simulator import Simulator
from scripts.audio_run import BUDGET, PATHS, measure
from scripts.audio_run import run as pulse_run
from tests.support.barge_in import p50_max
from tests.support.cli import cli_env, start_cli
from tests.support.daemon import SIM_PAT, daemon_settings, merged, running_daemon
from tests.support.data import DATA
from tests.support.pulseaudio import PulseEnv, pulse_server

ROOT = Path(__file__).resolve().parents[1]
IDLE_SECONDS = 10.0
PULSE_MINUTES = float(os.environ.get("BENCH_PULSE_MINUTES", "1"))
"""How long the PulseAudio part runs (latencies on real PortAudio streams); 0 = skip."""
TURNS = 5
PULSE_TURNS = 3
BARGE_IN_MINUTES = float(os.environ.get("BENCH_BARGE_IN_MINUTES", "2"))
"""How long the barge-in group runs on each echo path."""
ALWAYS_ON_SECONDS = float(os.environ.get("BENCH_ALWAYS_ON_SECONDS", "20"))
ALWAYS_ON_ROUNDS = int(os.environ.get("BENCH_ALWAYS_ON_ROUNDS", "3"))
ALWAYS_ON_SETTLE_S = 3.0
"""After the daemon's microphone opened, before a window starts (streams settle)."""
GROUPS = ("turn", "barge-in", "always-on")


def config_file(
    tmp: Path, sim: Simulator, wav: Path, *, realtime: bool = True, codec: str = "pcm"
) -> Path:
    (tmp / "pat").write_text(SIM_PAT)
    (tmp / "pat").chmod(0o600)  # else the daemon warns that everyone can read it
    (tmp / "state").mkdir(exist_ok=True)
    config = daemon_settings(
        sim,
        tmp / "state",
        auth={"pat_file": str(tmp / "pat")},
        audio={
            "backend": "file",
            "file_input": str(wav),
            "file_realtime": realtime,
            "codec": codec,
        },
        log={"level": "warning"},
    )
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
    started = time.monotonic()
    proc = await start_cli(
        "run",
        "-c",
        str(config),
        env={"NOTIFY_SOCKET": str(notify)},
        stdout=asyncio.subprocess.DEVNULL,
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
    first_audio: list[float] = []
    uplink: dict[str, list[float]] = {"pcm": [], "opus": []}
    for turn in range(TURNS * 2):
        codec = "opus" if turn % 2 else "pcm"
        config = load_config(
            config_file(tmp, sim, DATA / "utterance-weather.wav", realtime=False, codec=codec),
            env={},
        )
        async with asyncio.timeout(60), running_daemon(config) as daemon:
            await daemon.wait(lambda: any(e["type"] == "turn" for e in daemon.events), 60)
        if codec == "pcm":
            done = next(e for e in daemon.events if e["type"] == "turn")
            first_audio.append(float(str(done["first_audio_ms"])))
        conn = sim.connections[-1]
        audio_s = len(conn.heard) / 32000  # what Coze decoded: PCM, 16 kHz, 16-bit
        sent = sum(
            len(json.dumps(f, separators=(",", ":")))
            for f in conn.received
            if f["event_type"] == "input_audio_buffer.append"
        )
        uplink[codec].append(sent / audio_s)
    latency = statistics.median(first_audio)
    pcm, opus = (statistics.median(uplink[codec]) for codec in ("pcm", "opus"))
    return {
        f"complete->first reply audio (p50 of {TURNS}, simulator)": f"{latency:.0f} ms",
        "uplink, PCM 16 kHz as JSON+base64": f"{pcm / 1000:.1f} kB/audio s",
        "uplink, Opus 24 kbit/s, 20 ms packets": (
            f"{opus / 1000:.1f} kB/audio s ({opus / pcm:.2f}x PCM)"
        ),
    }


async def cpu_between(
    proc: asyncio.subprocess.Process, first: str, second: str, *, skip: int = 0
) -> tuple[float, float]:
    """CPU seconds and wall seconds of ``proc`` from the line containing ``first`` to the
    line containing ``second`` (after ``skip`` earlier ones), read from its merged output."""
    assert proc.stdout is not None
    cpu0 = wall0 = 0.0
    seen = 0
    while True:
        line = (await proc.stdout.readline()).decode()
        if not line:
            raise RuntimeError(f"process {proc.pid} ended before {second!r}")
        if not wall0 and first in line:
            cpu0, _, _ = proc_stat(proc.pid)
            wall0 = time.monotonic()
        elif wall0 and second in line:
            seen += 1
            if seen > skip:
                cpu1, _, _ = proc_stat(proc.pid)
                return cpu1 - cpu0, time.monotonic() - wall0


async def reference_figures(sim: Simulator, tmp: Path) -> dict[str, str]:
    """The same turn, in real time, by the daemon and by a minimal cozepy client."""
    wav = DATA / "utterance-weather.wav"
    ours: dict[str, tuple[float, float]] = {}
    for codec in ("pcm", "opus"):
        config = config_file(tmp, sim, wav, codec=codec).read_text()
        (tmp / "turn.yaml").write_text(config.replace("level: warning", "level: info"))
        daemon = await start_cli("run", "-c", str(tmp / "turn.yaml"))
        try:
            async with asyncio.timeout(90):
                ours[codec] = await cpu_between(daemon, "state: idle", "state: idle")
        finally:
            daemon.send_signal(signal.SIGTERM)
            await daemon.communicate()
    reference = await reference_client(sim.ws_base, str(wav))
    try:
        async with asyncio.timeout(90):
            theirs, theirs_wall = await cpu_between(reference, "ready", "done")
    finally:
        await reference.communicate()
    (pcm, pcm_wall), (opus, opus_wall) = ours["pcm"], ours["opus"]
    return {
        "CPU for one turn, real time: coze-edge": f"{pcm * 1000:.0f} ms over {pcm_wall:.1f} s",
        "CPU for the same turn, Opus uplink": (
            f"{opus * 1000:.0f} ms over {opus_wall:.1f} s ({opus / pcm:.2f}x PCM)"
        ),
        "CPU for the same turn: cozepy 0.20.0 client": (
            f"{theirs * 1000:.0f} ms over {theirs_wall:.1f} s"
        ),
        "CPU ratio coze-edge / cozepy (budget <= 0.5)": f"{pcm / theirs:.2f}",
    }


async def reference_client(*args: str) -> asyncio.subprocess.Process:
    """scripts/reference_client.py with ``args``, its output on one pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.reference_client", *args,
        cwd=ROOT, env=cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def read_to(proc: asyncio.subprocess.Process, marker: str) -> None:
    assert proc.stdout is not None
    while marker not in (line := (await proc.stdout.readline()).decode()):
        if not line:
            raise RuntimeError(f"process {proc.pid} ended before {marker!r}")


async def pulse_reference_figures(tmp: Path) -> dict[str, str]:
    """
    Like for like: the daemon (sounddevice backend, no echo canceller, no earcons) and the
    cozepy client with sounddevice, each on PortAudio streams through the same PulseAudio
    null sinks; the question is played into the virtual microphone, CPU is counted from
    then until the reply has played.
    """
    wav = DATA / "utterance-weather.wav"
    with pulse_server(tmp / "pulse-cpu") as pulse, tempfile.TemporaryDirectory() as state:
        async with Simulator(reply_speed=50.0) as sim:
            config = yaml.safe_load(config_file(tmp, sim, wav).read_text())
            config["audio"] = {
                "backend": "sounddevice",
                "input_device": "pulse",
                "output_device": "pulse",
                "echo_cancellation": False,
                "earcons": False,
            }
            config["state_dir"] = state
            config["log"]["level"] = "info"
            (tmp / "pulse.yaml").write_text(yaml.safe_dump(config))
            daemon = await start_cli("run", "-c", str(tmp / "pulse.yaml"))
            ours: list[tuple[float, float]] = []
            try:
                async with asyncio.timeout(60 * PULSE_TURNS):
                    await read_to(daemon, "state: idle")
                    for _ in range(PULSE_TURNS):
                        await asyncio.sleep(1.0)
                        cpu0, _, _ = proc_stat(daemon.pid)
                        wall0 = time.monotonic()
                        player = pulse.play_into_mic(wav)
                        await read_to(daemon, "state: speaking")
                        await read_to(daemon, "state: idle")
                        ours.append((proc_stat(daemon.pid)[0] - cpu0, time.monotonic() - wall0))
                        await asyncio.to_thread(player.wait)
            finally:
                daemon.send_signal(signal.SIGTERM)
                await daemon.communicate()
            with wave.open(str(wav)) as w:
                seconds = w.getnframes() / w.getframerate()
            theirs: list[tuple[float, float]] = []
            for _ in range(PULSE_TURNS):
                reference = await reference_client(
                    sim.ws_base, "--device", "pulse", "--seconds", f"{seconds + 1.7:.2f}"
                )
                try:
                    async with asyncio.timeout(60):
                        await read_to(reference, "ready")
                        await asyncio.sleep(1.0)  # streams settle, as for the daemon
                        cpu0, _, _ = proc_stat(reference.pid)
                        wall0 = time.monotonic()
                        player = pulse.play_into_mic(wav)
                        await read_to(reference, "done")
                        cpu = proc_stat(reference.pid)[0] - cpu0
                        theirs.append((cpu, time.monotonic() - wall0))
                        await asyncio.to_thread(player.wait)
                finally:
                    await reference.communicate()
    ours_cpu, ours_wall = sorted(ours)[len(ours) // 2]
    theirs_cpu, theirs_wall = sorted(theirs)[len(theirs) // 2]
    turns = f"median of {PULSE_TURNS}"
    return {
        f"PulseAudio turn CPU ({turns}): coze-edge": (
            f"{ours_cpu * 1000:.0f} ms over {ours_wall:.1f} s (all: "
            + ", ".join(f"{cpu * 1000:.0f}" for cpu, _ in ours)
            + ")"
        ),
        f"PulseAudio turn CPU ({turns}): cozepy + sounddevice": (
            f"{theirs_cpu * 1000:.0f} ms over {theirs_wall:.1f} s (all: "
            + ", ".join(f"{cpu * 1000:.0f}" for cpu, _ in theirs)
            + ")"
        ),
        "PulseAudio CPU ratio coze-edge / cozepy (budget <= 0.5)": f"{ours_cpu / theirs_cpu:.2f}",
    }


async def barge_in_figures(tmp: Path) -> dict[str, str]:
    """The barge-in group (see the module's docstring)."""
    figures: dict[str, str] = {}
    for path in PATHS:
        m = await measure(BARGE_IN_MINUTES, tmp / path, path=path)
        replies = len(m.reach)
        ducks = m.ducks
        tag = path.split("-")[0]  # fixed, drifting: each line names its path
        figures[f"barge-in, {path} echo path"] = (
            f"{m.minutes:g} min: {m.barge_ins} barge-ins, {replies} replies; "
            f"overruns, underruns {m.overruns}, {m.underruns}"
        )
        figures[f"  {tag}: onset -> duck handed to the device p50 / max (n={len(ducks)})"] = (
            p50_max(ducks) if ducks else "no duck"
        )
        figures[f"  {tag}: onset -> silence heard p50 / max (n={len(m.silences)}) {BUDGET}"] = (
            p50_max(m.silences) if m.silences else "not measured"
        )
        figures[f"  {tag}: onset -> cut heard p50 / max (n={len(m.cut_heard)})"] = (
            p50_max(m.cut_heard) if m.cut_heard else "not measured"
        )
        figures[f"  {tag}: replies that cut themselves off (budget 0)"] = (
            f"{len(m.self_cut)} of {replies}"
            + (f" (at {'; '.join(m.self_cut)})" if m.self_cut else "")
        )
        figures[f"  {tag}: ducks with the echo alone"] = m.echo_ducks
    return figures


BARE_CAPTURE = """
import sys, time
import sounddevice as sd
def callback(indata, frames, when, status):
    pass
with sd.RawInputStream(samplerate=16000, channels=1, dtype="int16", blocksize=320,
                       device="pulse", callback=callback):
    print("ready", flush=True)
    while True:
        time.sleep(3600)
"""
"""The floor: a bare sounddevice client that captures 16 kHz mono in 20 ms blocks and does
nothing with them."""

ALWAYS_ON_CASES: dict[str, tuple[dict[str, Any], bool, float]] = {
    # name: (config sections, talk radio in the room, CPU budget as a ratio to the floor)
    "listening, silent room": ({}, False, 1.5),
    "wake word, silent room": ({"wake": {"word": "okay_nabu"}}, False, 2.5),
    "wake word, talk radio": ({"wake": {"word": "okay_nabu"}}, True, 2.5),
}
RSS_BUDGET_MB = 55.0


def talk_radio(path: Path, seconds: float) -> Path:
    """A WAV of speech with short pauses, at least ``seconds`` long: the replies Coze
    recorded (tests/data, 24 kHz mono), one after another, as a radio talking in the room."""
    pieces = []
    for name in ("websocket_chat_success.wav", "websocket_chat_generate_audio_success.wav"):
        with wave.open(str(DATA / name)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
            pieces.append(w.readframes(w.getnframes()))
    pause = b"\x00\x00" * (24000 * 3 // 10)
    audio = b""
    while len(audio) < seconds * 24000 * 2:
        audio += b"".join(piece + pause for piece in pieces)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(audio)
    return path


async def always_on_window(
    sim: Simulator, tmp: Path, pulse: PulseEnv, floor: asyncio.subprocess.Process,
    sections: dict[str, Any], radio: Path | None,
) -> tuple[float, float, float, int]:  # fmt: skip
    """One window: the daemon with ``sections`` started, settled, then measured side by
    side with the floor process. CPU s/s of each, the daemon's RSS (MB), its turns."""
    settings = yaml.safe_load(config_file(tmp, sim, DATA / "silence-2s.wav").read_text())
    settings = merged(
        settings,
        {
            "audio": {"backend": "sounddevice", "input_device": "pulse",
                      "output_device": "pulse", "echo_cancellation": False},
            "log": {"level": "info"},
            **sections,
        },
    )  # fmt: skip
    for key in ("file_input", "file_realtime", "codec"):
        settings["audio"].pop(key, None)
    (tmp / "always-on.yaml").write_text(yaml.safe_dump(settings))
    output = (tmp / "always-on.log").open("wb")
    daemon = await start_cli(
        "run", "-c", str(tmp / "always-on.yaml"), stdout=output.fileno()
    )  # fmt: skip
    player = None
    try:
        async with asyncio.timeout(30):
            while "microphone:" not in (tmp / "always-on.log").read_text():
                if daemon.returncode is not None:
                    raise RuntimeError((tmp / "always-on.log").read_text())
                await asyncio.sleep(0.1)
        if radio is not None:
            player = pulse.play_into_mic(radio)
        await asyncio.sleep(ALWAYS_ON_SETTLE_S)
        ours0, floor0 = proc_stat(daemon.pid)[0], proc_stat(floor.pid)[0]
        wall0 = time.monotonic()
        await asyncio.sleep(ALWAYS_ON_SECONDS)
        (ours1, rss, _), floor1 = proc_stat(daemon.pid), proc_stat(floor.pid)[0]
        wall = time.monotonic() - wall0
    finally:
        if player is not None:
            player.kill()
            player.wait()
        daemon.send_signal(signal.SIGTERM)
        await daemon.wait()
        output.close()
    turns = (tmp / "always-on.log").read_text().count("state: listening")
    return (ours1 - ours0) / wall, (floor1 - floor0) / wall, rss / 1024, turns


async def always_on_figures(tmp: Path) -> dict[str, str]:
    """The always-on group (see the module's docstring)."""
    radio = talk_radio(tmp / "talk-radio.wav", ALWAYS_ON_SETTLE_S + ALWAYS_ON_SECONDS + 5)
    results: dict[str, list[tuple[float, float, float, int]]] = {n: [] for n in ALWAYS_ON_CASES}
    with pulse_server(tmp / "pulse-always-on") as pulse:
        async with Simulator() as sim:
            floor = await asyncio.create_subprocess_exec(
                sys.executable, "-c", BARE_CAPTURE, env=cli_env(),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                await read_to(floor, "ready")
                for _ in range(ALWAYS_ON_ROUNDS):
                    for name, (sections, talking, _) in ALWAYS_ON_CASES.items():
                        results[name].append(
                            await always_on_window(
                                sim, tmp, pulse, floor, sections, radio if talking else None
                            )
                        )
            finally:
                floor.kill()
                await floor.wait()
    floors = [f for runs in results.values() for _, f, _, _ in runs]
    figures = {
        f"always-on: bare capture floor (median of {len(floors)} x {ALWAYS_ON_SECONDS:g} s)": (
            f"{statistics.median(floors):.4f} s/s"
        )
    }
    for name, (_, _, budget) in ALWAYS_ON_CASES.items():
        runs = results[name]
        ratio = statistics.median(ours / floor for ours, floor, _, _ in runs)
        cpu = statistics.median(ours for ours, _, _, _ in runs)
        rss = statistics.median(mb for _, _, mb, _ in runs)
        turns = sum(t for _, _, _, t in runs)
        figures[f"always-on: {name}"] = (
            f"{cpu:.4f} s/s = {ratio:.2f}x floor (budget <= {budget}x, "
            f"{'met' if ratio <= budget else 'missed'}); RSS {rss:.1f} MB (budget <= "
            f"{RSS_BUDGET_MB:g}, {'met' if rss <= RSS_BUDGET_MB else 'missed'})"
            + (f"; {turns} turns opened" if turns else "")
            + " [ratios: "
            + ", ".join(f"{o / f:.2f}" for o, f, _, _ in runs)
            + "]"
        )
    return figures


async def main(groups: list[str]) -> None:
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="coze-edge-bench-") as tmp:
        if "turn" in groups:
            async with Simulator(reply_speed=50.0) as sim:
                figures |= await daemon_figures(sim, Path(tmp))
                figures |= await turn_figures(sim, Path(tmp))
                figures |= await reference_figures(sim, Path(tmp))
        pulse = bool(shutil.which("pulseaudio") and shutil.which("paplay"))
        if "turn" in groups and PULSE_MINUTES and pulse:
            figures |= await pulse_reference_figures(Path(tmp))
            figures |= await pulse_run(PULSE_MINUTES, Path(tmp))
        elif "turn" in groups and PULSE_MINUTES:
            figures["PulseAudio run"] = "skipped: needs pulseaudio and pulseaudio-utils (apt)"
        if "barge-in" in groups and pulse:
            figures |= await barge_in_figures(Path(tmp))
        elif "barge-in" in groups:
            figures["barge-in"] = "skipped: needs pulseaudio and pulseaudio-utils (apt)"
        if "always-on" in groups and pulse:
            figures |= await always_on_figures(Path(tmp))
        elif "always-on" in groups:
            figures["always-on"] = "skipped: needs pulseaudio and pulseaudio-utils (apt)"
    width = max(map(len, figures))
    machine = f"{os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    print(f"coze-edge bench ({machine})")
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(GROUPS)
    unknown = [g for g in wanted if g not in GROUPS]
    if unknown:
        sys.exit(f"usage: scripts/bench [{' | '.join(GROUPS)}]... (unknown: {' '.join(unknown)})")
    asyncio.run(main(wanted))
