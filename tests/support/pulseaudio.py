"""A private PulseAudio server with null sinks, so PortAudio streams run for real (TESTING.md)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np


@dataclass
class Recording:
    process: subprocess.Popen[bytes]
    path: Path

    def stop(self) -> bytes:
        """End the recording; everything recorded, as raw 24 kHz mono s16le."""
        self.process.terminate()
        self.process.wait()
        return self.path.read_bytes()


@dataclass
class PulseEnv:
    root: Path
    server: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    recorders: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Every ``parec`` a test started, ended with the server even when the test failed
    before its own ``Recording.stop`` (a recorder left running fails the next test)."""
    _recordings: int = 0
    alsa_config: Path | None = None
    """XDG_CONFIG_HOME with an ALSA config naming devices after hardware (``hardware=``)."""

    def env(self) -> dict[str, str]:
        """The environment of a client of this server (a ``coze-edge`` subprocess): with
        ``hardware=``, ALSA (and so PortAudio) also lists the devices named after it."""
        extra = {"XDG_CONFIG_HOME": str(self.alsa_config)} if self.alsa_config else {}
        return {
            **os.environ,
            "PULSE_SERVER": self.server,
            "XDG_RUNTIME_DIR": str(_RUNTIME / "xdg"),
            "PULSE_CLIENTCONFIG": str(_RUNTIME / "client.conf"),
            **extra,
        }

    def start(self) -> None:
        """Run pulseaudio with the script in ``root``; return once it answers."""
        server = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "-n",
                "-F",
                str(self.root / "ci.pa"),
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                f"--log-target=file:{self.root}/pulse.log",
            ],
            env=self.env(),
        )
        self.processes.append(server)
        for _ in range(100):
            if (
                subprocess.run(["pactl", "info"], env=self.env(), capture_output=True).returncode
                == 0
            ):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("pulseaudio did not start: " + (self.root / "pulse.log").read_text())
        # Keep both null sinks ticking, else the first stream stalls (TESTING.md).
        for source in ("speaker.monitor", "micfeed.monitor"):
            self.processes.append(
                subprocess.Popen(
                    ["parec", "--latency-msec=10", "-d", source, "--raw"],
                    stdout=subprocess.DEVNULL,
                    env=self.env(),
                )
            )

    def stop(self) -> None:
        """Kill the server and its helpers (``pactl exit`` is refused with anonymous auth)."""
        for process in reversed(self.processes + self.recorders):
            process.kill()
            process.wait()
        self.processes.clear()
        self.recorders.clear()

    def restart(self) -> None:
        """The sound server dies and comes back (what a desktop session or an update does)."""
        self.stop()
        self.start()

    def pactl(self, *args: str) -> None:
        """Tell the server something (``suspend-sink micfeed 1``: the microphone goes dead)."""
        subprocess.run(["pactl", *args], env=self.env(), check=True, capture_output=True)

    def play_into_mic(self, wav: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", "-d", "micfeed", str(wav)], env=self.env())

    def record_speaker(self) -> Recording:
        """Record what the speaker plays: 24 kHz mono s16le, into a file (a pipe nobody reads
        while the test runs would fill after 1.3 s and stall parec)."""
        return self.record("speaker.monitor")

    def record_microphone(self) -> Recording:
        """Record what the microphone hears (the user and any echo), as ``record_speaker``."""
        return self.record("micfeed.monitor")

    def record(self, source: str) -> Recording:
        self._recordings += 1
        path = self.root / f"{source}-{self._recordings}.raw"
        with path.open("wb") as out:
            process = subprocess.Popen(
                [
                    "parec",
                    "-d",
                    source,
                    "--rate=24000",
                    "--channels=1",
                    "--format=s16le",
                    "--raw",
                    "--latency-msec=10",
                ],
                stdout=out,
                env=self.env(),
            )
        self.recorders.append(process)
        return Recording(process, path)


_SCRIPT = """
load-module module-native-protocol-unix auth-anonymous=1 socket={runtime}/native
load-module module-null-sink sink_name=speaker rate=48000 channels=2
load-module module-null-sink sink_name=micfeed rate=48000 channels=2
set-default-sink speaker
set-default-source micfeed.monitor
"""

ECHO_PATH = "load-module module-loopback source=speaker.monitor sink=micfeed latency_msec=40{}\n"
"""
An acoustic echo path: everything played on ``speaker`` also reaches the microphone.

TESTING.md's recipe leaves the loopback's rate control on: it re-adjusts its resampler
every 10 s to hold 40 ms, so the echo's delay wanders (measured: 109 samples at 16 kHz,
then 90, then 60 over 40 s, up to 150 ppm). A loudspeaker and a microphone a few
centimetres apart have a fixed delay, and so does any pair of streams on one sound card.
``adjust_time=0`` keeps the delay fixed (measured: 109 samples for the whole run); the
wandering variant (``drift=True``) models a microphone and a speaker on separate clocks.
"""


HardwareKind = Literal["input", "output", "both"]


def _hardware_script(hardware: Mapping[str, HardwareKind]) -> tuple[str, str]:
    """
    PulseAudio lines for a null sink per named device, and the ALSA config that shows each
    to PortAudio under that name (PortAudio lists the ``pcm`` entries of ALSA's config by
    their names, as it lists a Pi's cards by theirs). Names may hold letters, digits,
    spaces and dashes: ALSA takes a ``:`` or ``.`` in a device name for arguments.
    """
    script, alsa = [], []
    for number, (name, kind) in enumerate(hardware.items()):
        if not re.fullmatch(r"[A-Za-z0-9 -]+", name):
            raise ValueError(f"ALSA cannot name a device {name!r}")
        sink = f"hw{number}_" + re.sub(r"[^A-Za-z0-9]", "_", name)
        script.append(f"load-module module-null-sink sink_name={sink} rate=48000 channels=2")
        parts = []
        if kind in ("output", "both"):
            parts.append(f'playback.pcm {{ type pulse; device "{sink}" }}')
        if kind in ("input", "both"):
            parts.append(f'capture.pcm {{ type pulse; device "{sink}.monitor" }}')
        alsa.append(f'pcm."{name}" {{ type asym; {" ".join(parts)} }}')
    return "".join(line + "\n" for line in script), "".join(line + "\n" for line in alsa)


_RUNTIME = Path(tempfile.gettempdir()) / f"coze-edge-test-pulse-{os.getpid()}"
"""One socket address for every server this process starts, as on a real machine, where
the sound server restarts at the same address. (Servers at different addresses one after
another once left PortAudio's ALSA thread spinning on errors in this process.)"""
_running: list[PulseEnv] = []


@contextlib.contextmanager
def pulse_server(
    root: Path,
    *,
    echo_path: bool = False,
    drift: bool = False,
    hardware: Mapping[str, HardwareKind] | None = None,
) -> Iterator[PulseEnv]:
    """
    Start pulseaudio in ``root``; point this process's PortAudio at it; stop it after.
    ``hardware``: devices named after real ones (``{"seeed-2mic-voicecard": "both"}``),
    each a null sink; only clients started with ``env()`` see them under those names.
    """
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: scripts/test installs pulseaudio-utils")
    if _running:
        raise RuntimeError("a test PulseAudio server is already running: one at a time")
    (_RUNTIME / "xdg").mkdir(mode=0o700, parents=True, exist_ok=True)
    # No shared memory between the clients in this process and the server: when the server
    # is killed mid-stream, libpulse 16.1 (through ALSA's pulse plugin) can deadlock
    # releasing imported shared memory while PortAudio's thread waits on the same mutex,
    # and Pa_CloseStream then never returns (seen twice in 3 full runs on a loaded
    # machine). The audio is the same without it; only the transport differs.
    (_RUNTIME / "client.conf").write_text("enable-shm = no\nenable-memfd = no\nautospawn = no\n")
    script = _SCRIPT.format(runtime=_RUNTIME) + (
        ECHO_PATH.format("" if drift else " adjust_time=0") if echo_path else ""
    )
    root.mkdir(parents=True, exist_ok=True)
    pulse = PulseEnv(root, f"unix:{_RUNTIME}/native")
    if hardware:
        sinks, alsa = _hardware_script(hardware)
        script += sinks
        pulse.alsa_config = root / "config"
        (pulse.alsa_config / "alsa").mkdir(parents=True, exist_ok=True)
        (pulse.alsa_config / "alsa" / "asoundrc").write_text(alsa)
    (root / "ci.pa").write_text(script)
    saved = {
        k: os.environ.get(k) for k in ("PULSE_SERVER", "XDG_RUNTIME_DIR", "PULSE_CLIENTCONFIG")
    }
    os.environ.update({k: v for k, v in pulse.env().items() if k in saved})
    _running.append(pulse)
    try:
        pulse.start()
        yield pulse
    finally:
        _running.clear()
        pulse.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def louder(source: Path, target: Path, gain: float) -> Path:
    """A copy of a WAV with its samples scaled (the user standing closer to the device)."""
    with wave.open(str(source)) as w:
        params = w.getparams()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    with wave.open(str(target), "wb") as w:
        w.setparams(params)
        w.writeframes(np.clip(samples * gain, -32768, 32767).astype("<i2").tobytes())
    return target
