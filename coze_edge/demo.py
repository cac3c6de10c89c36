"""
``coze-edge demo``: one full voice turn, offline.

The bundled Coze simulator runs in this process on loopback; the daemon runs with the file
audio backend, hearing a bundled spoken question as its microphone, and writes everything
its speaker plays to a WAV file. The states, the transcript, the reply and the file are
printed as they happen.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import wave
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from coze_edge.core.status import DeviceStatus
from coze_edge.errors import UsageError

DEMO_BOT_ID = "7496347519799787557"
DEMO_TIMEOUT_S = 90.0
DEMO_DEVICE_ID = "1234567890123456789"


def bundled_utterance() -> Path:
    return Path(str(resources.files("coze_edge") / "data" / "demo-utterance.wav"))


def _seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def _check_files(output: Path, microphone: Path | None) -> None:
    """UsageError unless ``microphone`` is a WAV file and ``output`` a file that can be
    written (its folder is created)."""
    from coze_edge.adapters.wav import wav_problem

    if microphone is not None:
        if not microphone.is_file():
            what = "is a directory" if microphone.is_dir() else "does not exist"
            raise UsageError(f"--input {microphone} {what}: name a WAV file")
        if (problem := wav_problem(microphone)) is not None:
            raise UsageError(f"--input {problem}")
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder: name a file, e.g. {output}/reply.wav")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        in_the_way = next(p for p in output.parents if p.exists())
        raise UsageError(
            f"--output {output}: cannot create its folder, {in_the_way} is a file"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"--output {output}: cannot create its folder: {exc.strerror or exc}"
        ) from None
    if not os.access(output.parent, os.W_OK | os.X_OK) or (
        output.exists() and not os.access(output, os.W_OK)
    ):
        raise UsageError(f"--output {output}: this user may not write it")


async def run_demo(
    *,
    output: Path | None = None,
    microphone: Path | None = None,
    out: TextIO = sys.stdout,
) -> int:
    from coze_edge.config import config_from_mapping
    from coze_edge.credentials import StaticToken
    from coze_edge.daemon import Daemon
    from coze_edge.simulator import Simulator

    output = (output or Path("demo-output") / "reply.wav").resolve()
    _check_files(output, microphone)
    microphone = (microphone or bundled_utterance()).resolve()
    stop = asyncio.Event()
    result: dict[str, Any] = {}

    def on_status(status: DeviceStatus) -> None:
        if result.get("state") is not status.state:
            result["state"] = status.state
            print(f"  state      {status.state.value}", file=out, flush=True)

    def on_event(event: dict[str, Any]) -> None:
        match event.get("type"):
            case "transcript":
                print(f"  heard      {event['text']!r}  (the simulator does no ASR)", file=out)
            case "reply":
                print(f"  reply      {event['text']}", file=out)
            case "turn":
                result["turn"] = event
                print(
                    f"  turn       first reply audio {event.get('first_audio_ms')} ms after "
                    f"the end of speech; {event.get('reply_audio_ms')} ms of reply",
                    file=out,
                )
                stop.set()
            case "error":
                result["error"] = event
                print(f"  error      {event.get('message')}", file=out)
                stop.set()

    print(f"coze-edge demo: microphone = {microphone}", file=out)
    # The simulator does no speech recognition: tell it what the bundled question says.
    async with Simulator(pats=("demo-pat",), transcript="What is the weather like today?") as sim:
        print(f"  simulator  {sim.api_base} (REST) and {sim.ws_base}/v1/chat", file=out)
        with tempfile.TemporaryDirectory(prefix="coze-edge-demo-") as state_dir:
            config = config_from_mapping(
                {
                    "coze": {
                        "api_base": sim.api_base,
                        "ws_base": sim.ws_base,
                        "bot_id": DEMO_BOT_ID,
                    },
                    "auth": {"method": "pat"},
                    "device": {"id": DEMO_DEVICE_ID, "name": "coze-edge demo"},
                    "state_dir": state_dir,
                    "audio": {
                        "backend": "file",
                        "file_input": str(microphone),
                        "file_output": str(output),
                    },
                },
                env={},
                source="demo",
            )
            daemon = Daemon(
                config,
                tokens=StaticToken("demo-pat"),
                on_status=on_status,
                on_event=on_event,
                env={},
            )
            from coze_edge.supervisor import supervise

            loop = asyncio.get_running_loop()
            timer = loop.call_later(DEMO_TIMEOUT_S, stop.set)
            try:
                await supervise(daemon.services(), stop=stop, signals=())
            finally:
                timer.cancel()
    if "turn" not in result:
        reason = result.get("error", {}).get("message", f"no turn within {DEMO_TIMEOUT_S:.0f} s")
        print(f"demo failed: {reason}", file=out)
        return 1
    print(f"reply audio: {output} ({_seconds(output):.1f} s, 24 kHz mono WAV)", file=out)
    return 0
