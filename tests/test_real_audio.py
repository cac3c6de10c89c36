"""
The daemon on real PortAudio streams through a private PulseAudio server (TESTING.md):
the user is a WAV played into the virtual microphone, the reply is recorded from the
speaker's monitor, and Coze is the bundled simulator.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coze_edge.adapters.vad_webrtc import WebrtcVad
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import AudioFormat
from coze_edge.core.status import State
from coze_edge.daemon import session_settings
from coze_edge.simulator import Simulator
from tests.support.barge_in import CUT_RMS, Probe, echo_alone, onset_to_silence
from tests.support.daemon import DaemonRun, daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.pulseaudio import PulseEnv, Recording, louder, pulse_server

UTTERANCE = DATA / "utterance-weather.wav"
REPLY_S = 9.7  # the simulator's reply (coze_edge/simulator/data/reply.wav)
REPLY_LOUD_S = 7.18  # how much of it loud_seconds() counts (measured on the WAV)


@dataclass
class Live:
    """The daemon on the PulseAudio devices, and the simulator it talks to."""

    sim: Simulator
    run: DaemonRun

    def when(self, state: State, after: float = 0.0) -> float | None:
        return self.run.when(state, after)

    async def wait(self, predicate: Callable[[], bool], within_s: float) -> None:
        await self.run.wait(predicate, within_s)

    def story(self) -> str:
        """The states with their times, and what Coze received (appends counted): for
        failure messages."""
        states = self.run.states
        start = states[0][0] if states else 0.0
        told = " ".join(f"{t - start:.2f}:{s.value}" for t, s, _ in states)
        received: list[str] = []
        for conn in self.sim.connections:
            for kind in conn.event_types():
                if kind == "input_audio_buffer.append" and received and received[-1][0] == "+":
                    received[-1] = f"+{int(received[-1][1:]) + 1}"
                else:
                    received.append("+1" if kind == "input_audio_buffer.append" else kind)
        return f"states {told}; received {' '.join(received)}"

    def barge_ins(self) -> int:
        """How many times a reply was talked over (speaking, then listening). Whether that
        also sends ``chat.cancel`` depends on whether Coze still streams the reply."""
        return sum(
            1
            for (_, before, _), (_, after, _) in itertools.pairwise(self.run.states)
            if before is State.SPEAKING and after is State.LISTENING
        )

    def probe(self) -> Probe:
        """Taps on the daemon's microphone and speaker (tests/support/barge_in.py)."""
        conversation = self.run.daemon.conversation
        assert conversation is not None
        microphone, speaker = conversation.devices
        config = self.run.daemon.config
        return Probe(
            microphone,
            speaker,
            asyncio.get_running_loop().time,
            config.audio.capture_rate,
            vad=WebrtcVad(config.vad.aggressiveness, config.audio.capture_rate),
            min_rms=session_settings(config, None, echo_cancelled=True).barge_in_min_rms,
        )

    def sent(self, event_type: str) -> int:
        """How many events of this type the simulator received, over all connections."""
        return sum(c.event_types().count(event_type) for c in self.sim.connections)

    async def reply_played(self, after: float = 0.0) -> float:
        """Wait for a reply that starts after ``after`` to play to its end; when it started."""
        await self.wait(lambda: self.when(State.SPEAKING, after) is not None, 10)
        speaking = self.when(State.SPEAKING, after)
        assert speaking is not None
        await self.wait(lambda: self.when(State.IDLE, after=speaking) is not None, REPLY_S + 8)
        return speaking


@asynccontextmanager
async def live_daemon(
    pulse: PulseEnv,
    tmp_path: Path,
    *,
    audio: dict[str, Any] | None = None,
    vad: dict[str, Any] | None = None,
) -> AsyncIterator[Live]:
    """The daemon in this process on ``pulse``'s devices (PortAudio), once it is idle."""
    async with Simulator(reply_speed=4.0) as sim:
        config = daemon_config(
            sim,
            tmp_path,
            audio={
                "backend": "sounddevice",
                "input_device": "pulse",
                "output_device": "pulse",
                "earcons": False,
                **(audio or {}),
            },
            vad=vad or {},
        )
        async with running_daemon(config) as run:
            live = Live(sim, run)
            await live.wait(lambda: live.when(State.IDLE) is not None, 10)
            yield live


async def stop_recording(recording: Recording) -> bytes:
    return await asyncio.to_thread(recording.stop)


def loud_seconds(raw: bytes, rate: int = 24000, threshold: float = 300.0) -> float:
    """How much of the recording carries sound (10 ms windows above ``threshold`` RMS)."""
    samples = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float64)
    step = rate // 100
    windows = samples[: len(samples) // step * step].reshape(-1, step)
    return float(np.sum(np.sqrt(np.mean(windows**2, axis=1)) > threshold)) / 100


async def test_an_utterance_into_the_microphone_gives_a_spoken_reply(
    pulse: PulseEnv, tmp_path: Path
) -> None:
    """Speech played into the virtual mic: one turn upstream, the whole reply on the speaker."""
    async with live_daemon(pulse, tmp_path) as live:
        recorder = pulse.record_speaker()
        player = pulse.play_into_mic(UTTERANCE)
        await live.wait(lambda: live.sent("input_audio_buffer.complete") == 1, 15)
        spoke = await asyncio.to_thread(player.wait)
        assert spoke == 0
        await live.reply_played()
        recorded = await stop_recording(recorder)
        appended = live.sim.connections[-1].appended_audio()
        conversation = live.run.daemon.conversation
        assert conversation is not None
        latency = conversation.metrics.latency

    # The daemon's own delays: a captured block to its append on the socket, the end of the
    # user's turn to the complete, the reply's first delta to its first sample at the device.
    assert len(latency["capture_to_append"]) >= 30
    assert len(latency["capture_to_complete"]) == 1
    assert len(latency["delta_to_device"]) == 1
    assert all(0 <= value < 0.5 for values in latency.values() for value in values)
    print({name: f"{max(values) * 1000:.1f} ms" for name, values in latency.items() if values})

    heard = loud_seconds(recorded)
    print(f"appended {len(appended) / 32000:.2f} s of speech; {heard:.2f} s of reply heard")
    assert 2.0 <= len(appended) / 32000 <= 5.0  # the utterance, pre-roll and end silence
    assert live.sent("conversation.chat.cancel") == 0
    assert REPLY_LOUD_S - 0.3 <= heard <= REPLY_LOUD_S + 0.3


async def test_talking_over_the_reply_cancels_it_and_starts_a_new_turn(
    pulse: PulseEnv, tmp_path: Path
) -> None:
    """
    A second utterance during the reply: the speaker goes quiet, a new turn starts (and
    Coze is told to cancel if it still streams the reply). (No echo canceller here: a voice
    above the configured level interrupts.)
    """
    audio = {"echo_cancellation": False}
    async with live_daemon(pulse, tmp_path, audio=audio, vad={"barge_in_level_dbfs": -30}) as live:
        recorder = pulse.record_speaker()
        await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
        await live.wait(lambda: live.when(State.SPEAKING) is not None, 10)
        await asyncio.sleep(1.0)
        loud = louder(UTTERANCE, tmp_path / "loud.wav", 3.0)  # above -30 dBFS
        player = pulse.play_into_mic(loud)
        await live.wait(lambda: live.barge_ins() == 1, 8)
        await live.wait(lambda: live.sent("input_audio_buffer.complete") == 2, 10)
        recorded = await stop_recording(recorder)
        assert await asyncio.to_thread(player.wait) == 0
        conversation = live.run.daemon.conversation
        assert conversation is not None
        [flush] = conversation.metrics.latency["capture_to_flush"]
        assert 0 <= flush < 0.5

    heard = loud_seconds(recorded)
    print(f"{heard:.2f} s of the {REPLY_S} s reply heard before the barge-in")
    assert 0.8 <= heard <= 3.5


async def test_the_sound_server_restarting_is_survived(pulse: PulseEnv, tmp_path: Path) -> None:
    """PulseAudio dies and returns: the state says error, then the device listens again."""
    async with live_daemon(pulse, tmp_path) as live:
        await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
        await live.reply_played()
        await asyncio.to_thread(pulse.restart)
        await live.wait(lambda: live.when(State.ERROR) is not None, 8)
        failed = live.when(State.ERROR)
        assert failed is not None
        detail = next(d for t, s, d in live.run.states if s is State.ERROR)
        assert detail is not None
        assert "audio" in detail
        await live.wait(lambda: live.when(State.IDLE, after=failed) is not None, 10)
        back = live.when(State.IDLE, after=failed)
        assert back is not None
        print(f"audio back {back - failed:.2f} s after the loss was reported")
        await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
        await live.wait(lambda: live.sent("input_audio_buffer.complete") == 2, 10)


async def test_without_echo_cancellation_the_device_is_half_duplex(
    echoing_pulse: PulseEnv, tmp_path: Path
) -> None:
    """The echo-safe fallback: with no canceller, the reply's echo never interrupts it."""
    pulse = echoing_pulse
    async with live_daemon(pulse, tmp_path, audio={"echo_cancellation": False}) as live:
        recorder = pulse.record_speaker()
        await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
        await live.reply_played()
        whole = await stop_recording(recorder)
    assert live.barge_ins() == 0
    assert live.sent("conversation.chat.cancel") == 0
    assert live.sent("input_audio_buffer.complete") == 1
    assert loud_seconds(whole) >= REPLY_LOUD_S - 0.3


@pytest.mark.parametrize("drift", [False, True], ids=["fixed-delay", "drifting-delay"])
async def test_with_echo_cancellation_the_reply_does_not_interrupt_itself(
    drift: bool, tmp_path: Path
) -> None:
    """
    The reply reaches the microphone through the echo path and still plays to its end;
    the user talking over it (at the same loudness as the echo) still barges in. The echo
    path has a fixed delay (one sound card), or is TESTING.md's loopback as it is, whose
    delay wanders by a few samples (separate clocks). ``scripts/aec-check`` runs this
    many times over.
    """
    with pulse_server(tmp_path / "pulse", echo_path=True, drift=drift) as pulse:
        await reply_echo_is_cancelled(pulse, tmp_path)


async def reply_echo_is_cancelled(pulse: PulseEnv, tmp_path: Path) -> None:
    """Two replies through the echo path: the first is heard whole, the user cuts the second."""
    async with live_daemon(pulse, tmp_path, audio={"echo_cancellation": True}) as live:
        probe = live.probe()
        recorder = pulse.record_speaker()
        await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
        speaking = await live.reply_played()
        assert live.barge_ins() == 0, live.story()
        assert live.sent("input_audio_buffer.complete") == 1, live.story()
        whole = await stop_recording(recorder)

        # The same reply again, and this time the user talks over it.
        await asyncio.sleep(1.0)
        recorder = pulse.record_speaker()
        await asyncio.to_thread(pulse.play_into_mic(UTTERANCE).wait)
        await live.wait(lambda: live.when(State.SPEAKING, after=speaking + 1) is not None, 10)
        await asyncio.sleep(1.5)
        assert live.barge_ins() == 0, live.story()  # 1.5 s of echo
        heard, played = pulse.record_microphone(), pulse.record_speaker()  # together
        user_at = asyncio.get_running_loop().time()
        player = pulse.play_into_mic(UTTERANCE)
        await live.wait(lambda: live.barge_ins() == 1, 8)
        await asyncio.sleep(1.3)  # the silence after the cut for as long as it is judged
        cut = await stop_recording(recorder)
        mic, out = await stop_recording(heard), await stop_recording(played)
        user = read_wav_as(UTTERANCE, AudioFormat(24000))
        yielded = onset_to_silence(mic, out, user)  # ducked or cut
        stopped = onset_to_silence(mic, out, user, level=CUT_RMS)
        assert await asyncio.to_thread(player.wait) == 0
        echo = echo_alone(live.run.states, [user_at], user_at)
        reach, ducks = probe.echo_reach_ms(echo), probe.ducks(echo)
        processor = live.run.daemon.audio_processor
        assert processor is not None
        talked_over = processor.double_talk_blocks

    # How close the echo came to barging in, how fast the reply yielded to the user:
    # scripts/aec-check collects these figures.
    print(
        f"heard {loud_seconds(whole):.2f} s uninterrupted, {loud_seconds(cut):.2f} s cut; "
        f"echo alone reached {reach} ms and ducked the reply {ducks} times; "
        f"barge-in onset to silence {yielded} ms, to the cut {stopped} ms; "
        f"{talked_over} blocks of double talk"
    )
    assert talked_over > 0  # the user over the reply: the canceller's evidence reached the daemon
    assert loud_seconds(whole) >= REPLY_LOUD_S - 0.3
    assert 1.0 <= loud_seconds(cut) <= 3.5
