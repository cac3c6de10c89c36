"""
The daemon on real PortAudio streams through a private PulseAudio server for a while
(default 10 minutes), talked to like a kitchen device: a question, its reply, and every
other time a barge-in 1 s into the reply, with echo cancellation on and everything the
speaker plays reaching the microphone (the fixed-delay echo path, or with
``drifting-delay`` the one whose delay wanders, as on separate clocks). Prints the
daemon's own latencies (p50/p99), the barge-in onset to silence (recorded from the
microphone and the speaker) and its parts (tests/support/barge_in.py), the replies that
cut themselves off, and the overruns and underruns.

Run through `scripts/audio-run [MINUTES] [fixed-delay|drifting-delay] [SECTION.KEY=VALUE ...]`;
the settings (YAML values) go into the daemon's config, to measure one before changing it.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coze_edge.adapters.vad_webrtc import WebrtcVad
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.core.status import State
from coze_edge.daemon import session_settings
from coze_edge.simulator import Simulator
from tests.support.barge_in import (
    CUT_RMS,
    Parts,
    Probe,
    echo_alone,
    onset_to_silence,
    p50_max,
    percentile,
)
from tests.support.daemon import daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.pulseaudio import louder, pulse_server

UTTERANCE = DATA / "utterance-weather.wav"
PATHS = ("fixed-delay", "drifting-delay")
BUDGET = "(budget <= 150 / 250)"
BARGED_S = 3.0
"""A reply cut this soon after the user began talking over it was cut by the user."""


def settings(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["vad.barge_in_start_ms=120"]`` as config sections."""
    sections: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        if not (section and name and value):
            raise SystemExit(f"audio-run: expected SECTION.KEY=VALUE, got {pair!r}")
        sections.setdefault(section, {})[name] = yaml.safe_load(value)
    return sections


@dataclass
class Measured:
    """What a run measured (milliseconds unless said otherwise)."""

    minutes: float
    path: str
    overrides: dict[str, dict[str, Any]]
    turns: int
    barge_ins: int
    silences: list[float]
    """Onset to silence per barge-in, from the recordings (a reply ducked by 40 dB and then
    cut is silent from the duck on: -60 dBFS is below the recordings' silence level)."""
    cut_heard: list[float]
    """Onset to the digital silence of the cut, from the recordings."""
    parts: list[Parts]
    self_cut: list[str]
    """When a reply cut itself off (seconds into the run, and since the last xrun)."""
    reach: list[int]
    """Per reply, the longest ``barge_in_start_ms`` its echo alone met."""
    false_ducks: int
    false_talk: int
    """Blocks of double-talk evidence with the echo alone (each may duck the reply)."""
    latency: dict[str, list[float]]
    overruns: int
    underruns: int

    @property
    def echo_ducks(self) -> str:
        """The ducks with the echo alone, and the double-talk evidence among them."""
        return f"{self.false_ducks} ({self.false_talk} blocks of double-talk evidence)"

    @property
    def ducks(self) -> list[float]:
        """Onset to the first ducked block handed to the device, where there was a duck."""
        return [p.onset_to_duck for p in self.parts if p.onset_to_duck is not None]


async def run(
    minutes: float,
    tmp: Path,
    *,
    path: str = "fixed-delay",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, str]:
    """The figures of a run of ``minutes``, by name, formatted."""
    return figures(await measure(minutes, tmp, path=path, overrides=overrides))


async def measure(
    minutes: float,
    tmp: Path,
    *,
    path: str = "fixed-delay",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Measured:
    """A run of ``minutes`` on ``path`` with the config's ``overrides``."""
    overrides = overrides or {}
    with pulse_server(tmp / "pulse", echo_path=True, drift=path == "drifting-delay") as pulse:
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
                    **overrides.get("audio", {}),
                },
                log={"level": "warning"},
                **{k: v for k, v in overrides.items() if k != "audio"},
            )
            async with running_daemon(config) as daemon:
                loud = louder(UTTERANCE, tmp / "loud.wav", 3.0)
                user = read_wav_as(loud, AudioFormat(24000))
                user_captured = read_wav_as(loud, AudioFormat(config.audio.capture_rate))

                async def until(wanted: State, within: float) -> bool:
                    try:
                        await daemon.wait(lambda: daemon.state is wanted, within)
                    except TimeoutError:
                        return False
                    return True

                def cuts(after: float, before: float) -> list[float]:
                    """When a reply was talked over (SPEAKING, then LISTENING)."""
                    return [
                        t
                        for (_, s0, _), (t, s1, _) in itertools.pairwise(daemon.states)
                        if s0 is State.SPEAKING and s1 is State.LISTENING and after <= t < before
                    ]

                turns = barge_ins = 0
                self_cut: list[str] = []
                silences: list[float] = []
                cut_heard: list[float] = []
                parts: list[Parts] = []
                users: list[float] = []
                await until(State.IDLE, 15)
                conversation = daemon.daemon.conversation
                assert conversation is not None
                microphone, speaker = conversation.devices
                loop = asyncio.get_running_loop()
                probe = Probe(
                    microphone,
                    speaker,
                    loop.time,
                    config.audio.capture_rate,
                    vad=WebrtcVad(config.vad.aggressiveness, config.audio.capture_rate),
                    min_rms=session_settings(config, None, echo_cancelled=True).barge_in_min_rms,
                )
                talked: list[float] = []  # when the canceller reported double talk
                processor = daemon.daemon.audio_processor
                assert processor is not None
                assert processor.on_double_talk is not None
                report = processor.on_double_talk

                def talked_over() -> None:
                    talked.append(loop.time())
                    report()

                processor.on_double_talk = talked_over
                started = loop.time()
                end = time.monotonic() + minutes * 60
                while time.monotonic() < end:
                    await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
                    if not await until(State.SPEAKING, 15):
                        continue
                    turns += 1
                    barged = loop.time() + 3600.0
                    if turns % 2 == 0:
                        await asyncio.sleep(1.0)
                        heard, played = pulse.record_microphone(), pulse.record_speaker()
                        probe.mark()
                        barged = loop.time()
                        users.append(barged)
                        await asyncio.to_thread(pulse.play_into_mic(loud).wait)
                        barge_ins += 1
                        mic, out = heard.stop(), played.stop()
                        silent_after = onset_to_silence(mic, out, user)
                        if silent_after is not None:
                            silences.append(silent_after)
                        cut_after = onset_to_silence(mic, out, user, level=CUT_RMS)
                        if cut_after is not None:
                            cut_heard.append(cut_after)
                        cut = cuts(barged, loop.time())
                        taken = probe.parts(user_captured, cut[0]) if cut else None
                        if taken is not None:
                            parts.append(taken)
                    await until(State.IDLE, 30)
                    await asyncio.sleep(0.5)
                latency: dict[str, Any] = conversation.metrics.latency
                # Every reply is watched, also the one answering a barge-in: a cut that is not
                # the user's (within BARGED_S of talking over a reply) is the reply's own echo.
                for t in cuts(started, loop.time()):
                    if any(u <= t < u + BARGED_S for u in users):
                        continue
                    xrun = probe.since_xrun(t)
                    self_cut.append(
                        f"{t - started:.1f} s"
                        + ("" if xrun is None else f", {xrun:.1f} s after an xrun")
                    )
                spans = echo_alone(daemon.states, users, loop.time())
                reach = [probe.echo_reach_ms([span]) for span in spans]
                false_ducks = probe.ducks(spans)
                false_talk = sum(1 for t in talked for a, b in spans if a <= t < b)
    return Measured(
        minutes,
        path,
        overrides,
        turns,
        barge_ins,
        silences,
        cut_heard,
        parts,
        self_cut,
        reach,
        false_ducks,
        false_talk,
        {name: list(values) for name, values in latency.items()},
        microphone.overruns,
        speaker.underruns,
    )


def figures(measured: Measured) -> dict[str, str]:
    """A run's figures, by name, formatted."""
    m = measured
    silences, parts, reach, self_cut = m.silences, m.parts, m.reach, m.self_cut
    figures = {
        "PulseAudio run": f"{m.minutes:g} min, {m.path} echo path, {m.turns} turns, "
        f"{m.barge_ins} barge-ins",
    }
    if m.overrides:
        figures["settings"] = " ".join(
            f"{section}.{k}={v}"
            for section, values in m.overrides.items()
            for k, v in values.items()
        )
    for name, samples in m.latency.items():
        values = [v * 1000 for v in samples]
        if values:
            figures[f"{name.replace('_', ' ')} p50 / p99 (n={len(values)})"] = (
                f"{statistics.median(values):.1f} / {percentile(values, 0.99):.1f} ms"
            )
    if silences:
        figures[f"barge-in onset to silence p50 / max (n={len(silences)}) {BUDGET}"] = p50_max(
            silences
        )
    if m.cut_heard:
        figures[f"  onset to the cut heard p50 / max (n={len(m.cut_heard)})"] = p50_max(m.cut_heard)
    if parts:
        n = len(parts)
        figures[f"  user's onset to the cut p50 / max (n={n})"] = p50_max(
            [p.onset_to_cut for p in parts]
        )
        figures[f"  the cut to silence handed to the device p50 / max (n={n})"] = p50_max(
            [p.cut_to_device for p in parts]
        )
        ducks = m.ducks
        if ducks:
            figures[
                f"  user's onset to the duck handed to the device p50 / max (n={len(ducks)})"
            ] = p50_max(ducks)
    if reach:
        figures["echo alone, the most barge_in_start_ms it met (replies)"] = (
            f"{max(reach)} ms ({len(reach)} replies; "
            f"over 0 ms: {', '.join(map(str, sorted(r for r in reach if r))) or 'none'})"
        )
    figures["ducks with the echo alone"] = m.echo_ducks
    figures["replies that cut themselves off"] = f"{len(self_cut)}" + (
        f" (at {', '.join(self_cut)})" if self_cut else ""
    )
    # PortAudio's overflows / underflows, plus blocks dropped when the reader fell behind.
    figures["microphone overruns, speaker underruns"] = f"{m.overruns}, {m.underruns}"
    return figures


def main() -> None:
    args = sys.argv[1:]
    minutes = float(args.pop(0)) if args and "=" not in args[0] else 10.0
    path = args.pop(0) if args and args[0] in PATHS else PATHS[0]
    overrides = settings(args)
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(minutes, Path(tmp), path=path, overrides=overrides))
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
