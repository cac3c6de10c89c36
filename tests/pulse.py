"""A private PulseAudio server with null sinks, so PortAudio streams run for real (TESTING.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PulseEnv:
    root: Path
    server: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PULSE_SERVER": self.server,
            "XDG_RUNTIME_DIR": str(self.root / "xdg"),
        }

    def play_into_mic(self, wav: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["paplay", "-d", "micfeed", str(wav)], env=self.env())

    def record_speaker(self) -> subprocess.Popen[bytes]:
        """parec of what the speaker plays: 24 kHz mono s16le on stdout."""
        return subprocess.Popen(
            [
                "parec",
                "-d",
                "speaker.monitor",
                "--rate=24000",
                "--channels=1",
                "--format=s16le",
                "--raw",
                "--latency-msec=10",
            ],
            stdout=subprocess.PIPE,
            env=self.env(),
        )


_SCRIPT = """
load-module module-native-protocol-unix auth-anonymous=1 socket={root}/native
load-module module-null-sink sink_name=speaker rate=48000 channels=2
load-module module-null-sink sink_name=micfeed rate=48000 channels=2
set-default-sink speaker
set-default-source micfeed.monitor
"""


@contextlib.contextmanager
def pulse_server(root: Path) -> Iterator[PulseEnv]:
    """Start pulseaudio in ``root``; point this process's PortAudio at it; stop it after."""
    for tool in ("pulseaudio", "pactl", "paplay", "parec"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: scripts/test installs pulseaudio-utils")
    (root / "xdg").mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / "ci.pa").write_text(_SCRIPT.format(root=root))
    pulse = PulseEnv(root, f"unix:{root}/native")
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "XDG_RUNTIME_DIR")}
    os.environ.update({k: v for k, v in pulse.env().items() if k in saved})
    server = subprocess.Popen(
        [
            "pulseaudio",
            "--daemonize=no",
            "-n",
            "-F",
            str(root / "ci.pa"),
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
            f"--log-target=file:{root}/pulse.log",
        ],
        env=pulse.env(),
    )
    pulse.processes.append(server)
    try:
        for _ in range(100):
            if (
                subprocess.run(["pactl", "info"], env=pulse.env(), capture_output=True).returncode
                == 0
            ):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("pulseaudio did not start: " + (root / "pulse.log").read_text())
        # Keep both null sinks ticking, else the first stream stalls (TESTING.md).
        for source in ("speaker.monitor", "micfeed.monitor"):
            pulse.processes.append(
                subprocess.Popen(
                    ["parec", "--latency-msec=10", "-d", source, "--raw"],
                    stdout=subprocess.DEVNULL,
                    env=pulse.env(),
                )
            )
        yield pulse
    finally:
        for process in reversed(pulse.processes):
            process.kill()
            process.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
