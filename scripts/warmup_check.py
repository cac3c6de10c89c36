"""
What ``audio.output_keep_open_s`` and ``output_warmup_ms`` do on real PortAudio streams
through a private PulseAudio server: for the speaker's stream kept open (the default),
closed after silence, and closed with 100 and 200 ms of warm-up, over RUNS replies each
(default 5) after a second of silence:

* how much of each reply's first 100 ms reaches the sink (speaker.monitor, in 5 ms slots);
* how much later the reply's first sample reaches the microphone through a fixed-delay
  echo path than with the stream kept open (the cost of opening the stream, and of the
  warm-up), from the microphone's capture times;
* how long ``play_nowait`` holds the event loop when it has to open the stream;

and then the cost of keeping it open: CPU seconds per second of this process and of the
sound server with the speaker idle, stream open and closed (no microphone open). Run
through `scripts/warmup-check [RUNS]`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coze_edge.adapters.sound_devices import SoundDeviceMicrophone, SoundDeviceSpeaker
from tests.support.pulseaudio import PulseEnv, pulse_server
from tests.support.reply_start import RATE, arrival, process_cpu_s, reply

MODES: list[tuple[str, float | None, int]] = [
    ("kept open (default)", None, 0),
    ("closed after 0.3 s, no warm-up", 0.3, 0),
    ("closed after 0.3 s, 100 ms warm-up", 0.3, 100),
    ("closed after 0.3 s, 200 ms warm-up", 0.3, 200),
]
IDLE_S = 1.0
CPU_S = 20.0


@dataclass
class Run:
    start_ms: int | None
    """None: the reply was not found at the sink (a glitch on a busy machine)."""
    heard_at_s: float | None
    """From play_nowait to the reply's first sample in the microphone."""
    play_call_ms: float
    reopened: bool


async def one_reply(pulse: PulseEnv, keep_open_s: float | None, warmup_ms: int) -> Run:
    played = reply()
    recorder = pulse.record_speaker()
    await asyncio.sleep(0.3)
    blocks: list[tuple[float, bytes]] = []
    microphone = SoundDeviceMicrophone("pulse", capture_rate=RATE, block_ms=20)
    speaker = SoundDeviceSpeaker("pulse", rate=RATE, keep_open_s=keep_open_s, warmup_ms=warmup_ms)

    async def listen() -> None:
        async for block in microphone.frames():
            assert microphone.captured_at is not None
            blocks.append((microphone.captured_at, block))

    async with microphone, speaker:
        listening = asyncio.create_task(listen())
        await asyncio.sleep(IDLE_S)
        reopened = not speaker.stream_open
        called = time.monotonic()
        speaker.play_nowait(played)
        play_call_ms = (time.monotonic() - called) * 1000
        await speaker.wait_drained()
        await asyncio.sleep(0.5)
        listening.cancel()
    sink = await asyncio.to_thread(recorder.stop)
    at_sink = arrival(sink, played)
    at_mic = arrival(b"".join(block for _, block in blocks), played)
    heard_at = None
    if at_mic is not None:
        # The block holding the onset was captured at its end: go back to the onset.
        ends = np.cumsum([len(block) // 2 for _, block in blocks])
        index = int(np.searchsorted(ends, at_mic.onset, side="right"))
        heard_at = blocks[index][0] - (ends[index] - at_mic.onset) / RATE - called
    return Run(at_sink.start_ms if at_sink else None, heard_at, play_call_ms, reopened)


async def idle_cpu(pulse: PulseEnv, keep_open_s: float | None) -> tuple[float, float]:
    """CPU s/s of this process and of the sound server, the speaker idle for CPU_S."""
    server = pulse.processes[0].pid
    async with SoundDeviceSpeaker("pulse", rate=RATE, keep_open_s=keep_open_s) as speaker:
        await asyncio.sleep(1.0)
        assert speaker.stream_open == (keep_open_s is None)
        ours, theirs = os.times(), process_cpu_s(server)
        await asyncio.sleep(CPU_S)
        after = os.times()
        server_cpu = process_cpu_s(server) - theirs
    own = after.user + after.system - ours.user - ours.system
    return max(0.0, own / CPU_S), max(0.0, server_cpu / CPU_S)


async def main(runs: int, pulse: PulseEnv) -> None:
    print(f"coze-edge warm-up check: {runs} replies per mode, each after {IDLE_S:g} s of silence")
    baseline: float | None = None
    for name, keep_open_s, warmup_ms in MODES:
        results = [await one_reply(pulse, keep_open_s, warmup_ms) for _ in range(runs)]
        heard = statistics.median(r.heard_at_s for r in results if r.heard_at_s is not None)
        heard *= 1000
        baseline = heard if baseline is None else baseline
        starts = ", ".join("?" if r.start_ms is None else str(r.start_ms) for r in results)
        calls = statistics.median(r.play_call_ms for r in results)
        print(
            f"  {name:36} first 100 ms at the sink: {starts} ms; first sample "
            f"{heard - baseline:+.0f} ms (median); play_nowait {calls:.1f} ms"
            + ("" if all(r.reopened == (keep_open_s is not None) for r in results) else " (!)")
        )
    for name, keep_open_s in (("open", None), ("closed", 0.3)):
        own, server = await idle_cpu(pulse, keep_open_s)
        print(
            f"  idle CPU, stream {name:6}  coze-edge {own:.4f} s/s, sound server {server:.4f} s/s"
        )


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with (
        tempfile.TemporaryDirectory(prefix="coze-edge-warmup-") as root,
        pulse_server(Path(root), echo_path=True) as env,
    ):
        asyncio.run(main(count, env))
