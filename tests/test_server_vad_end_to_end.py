"""The daemon with ``coze.turn_detection: server_vad`` against the simulator: it streams
everything, Coze's voice detection ends each turn, and Coze's barge-in silences it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.adapters.wav import read_wav_as
from coze_edge.core.audio import CAPTURE, AudioFormat
from coze_edge.core.status import State
from coze_edge.simulator import Faults, Simulator
from tests.support.daemon import ONE_QUESTION, DaemonRun, daemon_config, running_daemon
from tests.support.data import DATA, trace_audio
from tests.support.timing import MS

SERVER_VAD = {"turn_detection": "server_vad"}
TWO_UTTERANCES = {"backend": "file", "file_input": str(DATA / "two-utterances.wav")}
"""The question, 2.5 s of silence, then "Tell me a joke." (realtime_audio plays them)."""


def states(run: DaemonRun) -> list[State]:
    return [state for _, state, _ in run.states]


def sent_types(sim: Simulator) -> list[str]:
    return [json.loads(frame)["event_type"] for frame in sim.connections[0].sent]


def realtime_audio(
    wav: Path, output: Path
) -> tuple[Callable[[], tuple[Microphone, Speaker]], list[FileSpeaker]]:
    """A microphone that plays ``wav`` in real time, then silence, and a speaker that
    plays in real time into ``output``; the speakers made are kept for the test."""
    speakers: list[FileSpeaker] = []

    def make() -> tuple[Microphone, Speaker]:
        speaker = FileSpeaker(output, rate=24000, realtime=True)
        speakers.append(speaker)
        return FileMicrophone(wav, realtime=True), speaker

    return make, speakers


async def test_cozes_vad_ends_the_turn_and_the_reply_plays(tmp_path: Path) -> None:
    """The daemon streams the microphone from the first block on and never commits; Coze's
    speech_stopped ends the turn, and the reply plays byte for byte."""
    output = tmp_path / "played.wav"
    async with Simulator(reply_speed=6.0) as sim:
        audio = {**ONE_QUESTION, "file_output": str(output)}
        config = daemon_config(sim, tmp_path, audio=audio, coze=SERVER_VAD)
        async with running_daemon(config) as run:
            await run.wait(lambda: any(e["type"] == "turn" for e in run.events), 20)
        [conn] = sim.connections

    update = conn.received[0]["data"]
    assert update["turn_detection"] == {"type": "server_vad", "silence_duration_ms": 700}
    assert "input_audio_buffer.complete" not in conn.event_types()
    question = read_wav_as(DATA / "utterance-weather.wav", CAPTURE)
    assert bytes(conn.heard).startswith(question)  # leading silence and all
    assert states(run)[:6] == [
        State.CONNECTING,
        State.IDLE,
        State.LISTENING,
        State.THINKING,
        State.SPEAKING,
        State.IDLE,
    ]
    assert read_wav_as(output, AudioFormat(24000)) == trace_audio("websocket_chat_success")


async def test_a_server_barge_in_flushes_playback(tmp_path: Path) -> None:
    """Talking over the reply: Coze sends speech_started and cancels its chat (code 1);
    the daemon silences the speaker at once, listens, and plays the new turn's reply."""
    make_audio, speakers = realtime_audio(DATA / "two-utterances.wav", tmp_path / "out.wav")
    async with Simulator(reply_speed=2.0, record_sent=True) as sim:
        config = daemon_config(sim, tmp_path, audio=TWO_UTTERANCES, coze=SERVER_VAD)
        async with running_daemon(config, audio=make_audio) as run:
            await run.wait(lambda: run.when(State.SPEAKING) is not None, 10)
            spoke = run.when(State.SPEAKING)
            assert spoke is not None
            await run.wait(lambda: run.when(State.LISTENING, after=spoke) is not None, 10)
            speaker = speakers[-1]
            interrupted_after_ms = speaker.played_ms()
            # Flushed: what is left is at most the block being played (20 ms), where the
            # reply, arriving twice as fast as it plays, had about 2 s queued.
            async with asyncio.timeout(100 * MS):
                await speaker.wait_drained()
            barge_in = run.when(State.LISTENING, after=spoke)
            assert barge_in is not None
            await run.wait(lambda: run.when(State.SPEAKING, after=barge_in) is not None, 15)

    cancel = sent_types(sim).index("conversation.chat.canceled")
    assert sent_types(sim)[cancel - 1] == "input_audio_buffer.speech_started"
    assert [
        json.loads(f)["data"]["code"]
        for f in sim.connections[0].sent
        if '"conversation.chat.canceled"' in f
    ] == [1]
    assert 500 < interrupted_after_ms < 4000  # of a 9.7 s reply
    assert "conversation.chat.cancel" not in sim.connections[0].event_types()


async def test_speech_before_the_reply_audio_gets_its_own_reply(tmp_path: Path) -> None:
    """The user speaks again while the device waits for the first reply's audio: Coze
    cancels that chat and answers the new turn; that chat is played, not dropped."""
    make_audio, _ = realtime_audio(DATA / "two-utterances.wav", tmp_path / "out.wav")
    async with Simulator(reply_speed=6.0, record_sent=True) as sim:
        sim.faults = Faults(delay_s=0.2)  # the first audio comes about 3 s after the turn
        config = daemon_config(sim, tmp_path, audio=TWO_UTTERANCES, coze=SERVER_VAD)
        async with running_daemon(config, audio=make_audio) as run:
            await run.wait(lambda: run.when(State.SPEAKING) is not None, 20)

    seen = states(run)
    assert seen[:7] == [
        State.CONNECTING,
        State.IDLE,
        State.LISTENING,
        State.THINKING,
        State.LISTENING,
        State.THINKING,
        State.SPEAKING,
    ]
    assert "conversation.chat.canceled" in sent_types(sim)
    assert "conversation.chat.cancel" not in sim.connections[0].event_types()
