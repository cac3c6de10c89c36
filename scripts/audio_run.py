"""
The daemon on real PortAudio streams through a private PulseAudio server for a while
(default 10 minutes), talked to like a kitchen device: a question, its reply, and every
other time a barge-in 1 s into the reply, with echo cancellation on and everything the
speaker plays reaching the microphone (a fixed-delay echo path). Prints the daemon's
own latencies (p50/p99), the barge-in onset to silence (recorded from the microphone and
the speaker), and the overruns and underruns. Run through `scripts/audio-run [MINUTES]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.core.status import State
from coze_edge.simulator import Simulator
from tests.support.daemon import daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.pulseaudio import louder, pulse_server

UTTERANCE = DATA / "utterance-weather.wav"


def loud_windows(raw: bytes, threshold: float = 300.0) -> npt.NDArray[np.bool_]:
    """Which 10 ms windows of a 24 kHz recording carry sound."""
    samples = np.frombuffer(raw[: len(raw) // 480 * 480], dtype="<i2").astype(np.float64)
    loud: npt.NDArray[np.bool_] = (
        np.sqrt(np.mean(samples.reshape(-1, 240) ** 2, axis=1)) > threshold
    )
    return loud


def onset_to_silence(
    heard: bytes, played: bytes, user: bytes, quiet_s: float = 1.0
) -> float | None:
    """
    Milliseconds from the user's first sound at the microphone to the reply going silent
    (and staying so for ``quiet_s``: the next reply waits for the user to finish). The
    microphone also hears the reply's echo, so the user is found by correlating with
    ``user`` (what was played into it; all 24 kHz mono s16le). Both recordings start
    together; each is a few milliseconds late, by its own latency.
    """
    mic = np.frombuffer(heard[: len(heard) // 2 * 2], dtype="<i2").astype(np.float64)
    voice = np.frombuffer(user, dtype="<i2").astype(np.float64)
    if len(mic) < len(voice) // 2:
        return None
    size = 1 << int(np.ceil(np.log2(len(mic) + len(voice))))
    scores = np.fft.irfft(np.fft.rfft(mic, size) * np.conj(np.fft.rfft(voice, size)), size)
    start = int(np.argmax(scores[: len(mic)]))  # where the user's audio begins in the recording
    onset = start // 240 + int(np.flatnonzero(loud_windows(user))[0])
    speaker, quiet = loud_windows(played), int(quiet_s * 100)
    for window in range(onset, len(speaker) - quiet):
        if not speaker[window : window + quiet].any():
            return (window - onset) * 10.0
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(minutes: float, tmp: Path) -> dict[str, str]:
    """The figures of a run of ``minutes``, by name, formatted."""
    with pulse_server(tmp / "pulse", echo_path=True) as pulse:
        async with Simulator(reply_speed=4.0) as sim:
            config = daemon_config(
                sim,
                tmp,
                audio={
                    "backend": "sounddevice",
                    "input_device": "pulse",
                    "output_device": "pulse",
                    "echo_cancellation": True,
                    "earcons": False,  # the listening tone would end the silence
                },
                log={"level": "warning"},
            )
            async with running_daemon(config) as daemon:
                loud = louder(UTTERANCE, tmp / "loud.wav", 3.0)
                user = read_wav_as(loud, AudioFormat(24000))

                async def until(wanted: State, within: float) -> bool:
                    try:
                        await daemon.wait(lambda: daemon.state is wanted, within)
                    except TimeoutError:
                        return False
                    return True

                turns = barge_ins = 0
                silences: list[float] = []
                await until(State.IDLE, 15)
                end = time.monotonic() + minutes * 60
                while time.monotonic() < end:
                    await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
                    if not await until(State.SPEAKING, 15):
                        continue
                    turns += 1
                    if turns % 2 == 0:
                        await asyncio.sleep(1.0)
                        heard, played = pulse.record_microphone(), pulse.record_speaker()
                        await asyncio.to_thread(pulse.play_into_mic(loud).wait)
                        barge_ins += 1
                        silent_after = onset_to_silence(heard.stop(), played.stop(), user)
                        if silent_after is not None:
                            silences.append(silent_after)
                    await until(State.IDLE, 30)
                    await asyncio.sleep(0.5)
                conversation = daemon.daemon.conversation
                assert conversation is not None
                microphone, speaker = conversation.devices
                latency: dict[str, Any] = conversation.metrics.latency
    figures = {"PulseAudio run": f"{minutes:g} min, {turns} turns, {barge_ins} barge-ins"}
    for name, samples in latency.items():
        values = [v * 1000 for v in samples]
        if values:
            figures[f"{name.replace('_', ' ')} p50 / p99 (n={len(values)})"] = (
                f"{statistics.median(values):.1f} / {percentile(values, 0.99):.1f} ms"
            )
    if silences:
        figures[f"barge-in onset to silence p50 / max (n={len(silences)})"] = (
            f"{statistics.median(silences):.0f} / {max(silences):.0f} ms"
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
