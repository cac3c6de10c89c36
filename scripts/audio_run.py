"""
The daemon on real PortAudio streams through a private PulseAudio server for a while
(default 10 minutes), talked to like a kitchen device: a question, its reply, and every
other time a barge-in 1 s into the reply. Prints the daemon's own latencies (p50/p99) and
the overruns and underruns. Run through `scripts/audio-run [MINUTES]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coze_edge.config import config_from_mapping  # noqa: E402
from coze_edge.core.status import DeviceStatus, State  # noqa: E402
from coze_edge.credentials import StaticToken  # noqa: E402
from coze_edge.daemon import Daemon  # noqa: E402
from coze_edge.simulator import Simulator  # noqa: E402
from coze_edge.supervisor import supervise  # noqa: E402
from tests.pulse import louder, pulse_server  # noqa: E402

UTTERANCE = ROOT / "tests" / "data" / "utterance-weather.wav"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(minutes: float, tmp: Path) -> dict[str, str]:
    """The figures of a run of ``minutes``, by name, formatted."""
    with pulse_server(tmp / "pulse") as pulse:
        async with Simulator(reply_speed=4.0) as sim:
            config = config_from_mapping(
                {
                    "coze": {"api_base": sim.api_base, "ws_base": sim.ws_base, "bot_id": "7"},
                    "auth": {"method": "pat"},
                    "device": {"id": "42"},
                    "state_dir": str(tmp),
                    "audio": {
                        "backend": "sounddevice",
                        "input_device": "pulse",
                        "output_device": "pulse",
                        "echo_cancellation": False,
                    },
                    "vad": {"barge_in_level_dbfs": -30},
                    "log": {"level": "warning"},
                },
                env={},
            )
            state: list[State] = [State.STARTING]

            def on_status(status: DeviceStatus) -> None:
                state[0] = status.state

            daemon = Daemon(config, tokens=StaticToken("sim-pat"), on_status=on_status, env={})
            stop = asyncio.Event()
            task = asyncio.create_task(supervise(daemon.services(), stop=stop, signals=()))
            loud = louder(UTTERANCE, tmp / "loud.wav", 3.0)

            async def until(wanted: State, within: float) -> bool:
                deadline = time.monotonic() + within
                while state[0] is not wanted:
                    if time.monotonic() > deadline:
                        return False
                    await asyncio.sleep(0.02)
                return True

            turns = barge_ins = 0
            await until(State.IDLE, 15)
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
                if not await until(State.SPEAKING, 15):
                    continue
                turns += 1
                if turns % 2 == 0:
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(pulse.play_into_mic(loud).wait)
                    barge_ins += 1
                await until(State.IDLE, 30)
                await asyncio.sleep(0.5)
            conversation = daemon.conversation
            assert conversation is not None
            microphone, speaker = conversation.devices
            latency: dict[str, Any] = conversation.metrics.latency
            stop.set()
            await task
    figures = {"PulseAudio run": f"{minutes:g} min, {turns} turns, {barge_ins} barge-ins"}
    for name, samples in latency.items():
        values = [v * 1000 for v in samples]
        if values:
            figures[f"{name.replace('_', ' ')} p50 / p99 (n={len(values)})"] = (
                f"{statistics.median(values):.1f} / {percentile(values, 0.99):.1f} ms"
            )
    # PortAudio's overflows / underflows, plus blocks dropped when the reader fell behind.
    figures["microphone overruns, speaker underruns"] = (
        f"{microphone.overruns}, {speaker.underruns}"
    )
    return figures


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(minutes, Path(tmp)))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
