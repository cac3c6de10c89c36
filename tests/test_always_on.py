"""What listening all day costs the daemon: the driver lets the microphone batch its
hand-offs and the speaker run on long blocks while nothing is urgent, and a listening
daemon maps no numpy (the figures themselves are in scripts/bench always-on)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import coze_edge.conversation as conversation_module
from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.adapters.sound_devices import SoundDeviceSpeaker
from coze_edge.adapters.wakeword import REST_AFTER_S
from coze_edge.conversation import IDLE_OUTPUT_BLOCK_MS
from coze_edge.core.status import State
from coze_edge.simulator import Simulator
from tests.support.cli import running_cli, write_cli_config
from tests.support.daemon import daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.pulseaudio import PulseEnv


class HandoffWatcher(FileMicrophone):
    """A file microphone that notes what ``handoff_ms`` the driver asked for, and when."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, realtime=True)
        self.seen: list[tuple[float, int]] = []

    def _captured(self, block: bytes) -> bytes:
        self.seen.append((asyncio.get_running_loop().time(), self.handoff_ms))
        return super()._captured(block)


@pytest.mark.simulator(reply_speed=20.0)
async def test_the_microphone_may_batch_only_while_the_device_waits(
    sim: Simulator, tmp_path: Path
) -> None:
    """Idle: the driver allows IDLE_HANDOFF_MS per hand-off; from the turn's start to the
    end of the reply every block is asked for as it comes."""
    microphone = HandoffWatcher(DATA / "utterance-weather.wav")

    def audio() -> tuple[Microphone, Speaker]:
        return microphone, FileSpeaker(tmp_path / "out.wav", rate=24000, realtime=False)

    config = daemon_config(
        sim, tmp_path, audio={"backend": "file", "file_input": str(microphone.path)}
    )
    async with running_daemon(config, audio=audio) as run:
        await run.wait(lambda: any(e["type"] == "turn" for e in run.events), 30)
        listening = run.when(State.LISTENING)
        assert listening is not None
        idle_again = run.when(State.IDLE, after=listening)
        assert idle_again is not None
        await run.wait(lambda: microphone.seen[-1][0] > idle_again + 0.5, 5)

    during = {h for t, h in microphone.seen if listening + 0.1 < t < idle_again - 0.1}
    after = {h for t, h in microphone.seen if t > idle_again + 0.1}
    assert during == {0}
    assert after == {conversation_module.IDLE_HANDOFF_MS} != {0}


def mapped(pid: int, name: str) -> bool:
    """A file whose path contains ``name`` is mapped into process ``pid``."""
    return name in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize(
    ("wake_word", "speech"),
    [(None, "utterance-weather.wav"), ("okay_nabu", "wake-okay-nabu-then-question.wav")],
)
async def test_a_device_that_only_listens_does_not_load_numpy(
    pulse: PulseEnv, sim: Simulator, tmp_path: Path, wake_word: str | None, speech: str
) -> None:
    """``coze-edge run`` on PortAudio devices that take the rates it asks for maps no numpy
    (about 18 MB resident) while it listens, with the wake word too (its model runs
    without numpy); the first turn loads it (the earcon), and the turn works."""
    config = write_cli_config(
        tmp_path,
        sim,
        audio={"backend": "sounddevice", "input_device": "pulse", "output_device": "pulse",
               "echo_cancellation": False},
        wake={"word": wake_word},
    )  # fmt: skip
    async with running_cli(config) as run:
        await run.read_until("microphone:")
        # A few hand-offs through the VAD and the endpointer; long enough a silence for the
        # wake word's model to rest, so that the word below also wakes it.
        await asyncio.sleep(REST_AFTER_S + 1.0)
        pid = run.process.pid
        assert mapped(pid, "libportaudio")
        assert not mapped(pid, "numpy")
        assert not mapped(pid, "soxr")
        if wake_word is not None:
            assert mapped(pid, "libtensorflowlite_c")  # the model is loaded and running
        player = pulse.play_into_mic(DATA / speech)
        if wake_word is not None:
            await run.read_until(f"wake word {wake_word} detected")
        await run.read_until("state: speaking")
        await asyncio.to_thread(player.wait)
        assert mapped(pid, "numpy")


async def test_the_idle_speaker_runs_on_long_blocks_and_a_turn_gets_the_usual_ones(
    pulse: PulseEnv, sim: Simulator, tmp_path: Path
) -> None:
    """The speaker's stream stays open throughout; while the device only waits it runs on
    IDLE_OUTPUT_BLOCK_MS blocks, from the turn's start to the reply's end on 20 ms ones,
    and on long ones again once the device is idle."""
    config = daemon_config(
        sim,
        tmp_path,
        audio={"backend": "sounddevice", "input_device": "pulse", "output_device": "pulse",
               "echo_cancellation": False},
    )  # fmt: skip
    async with running_daemon(config) as run:

        def speaker_now() -> SoundDeviceSpeaker | None:
            # The conversation's speaker at this moment: when a microphone delivers nothing
            # for 2 s (seen once per full run, on the first stream a test process opens
            # after other tests restarted its sound server), the supervisor starts the
            # conversation again with new devices, as it should.
            conversation = run.daemon.conversation
            now = conversation.devices[1] if conversation is not None else None
            return now if isinstance(now, SoundDeviceSpeaker) else None

        def block_ms() -> int | None:
            now = speaker_now()
            return now.stream_block_ms if now is not None else None

        await run.wait(lambda: run.when(State.IDLE) is not None, 10)
        await run.wait(lambda: block_ms() == IDLE_OUTPUT_BLOCK_MS, 10)
        player = pulse.play_into_mic(DATA / "utterance-weather.wav")
        seen: list[tuple[State, int | None]] = []
        async with asyncio.timeout(40):
            while (speaking := run.when(State.SPEAKING)) is None or run.when(
                State.IDLE, after=speaking
            ) is None:
                seen.append((run.state, block_ms()))
                await asyncio.sleep(0.01)
        await asyncio.to_thread(player.wait)
        await run.wait(lambda: block_ms() == IDLE_OUTPUT_BLOCK_MS, 10)
        speaker = speaker_now()
        assert speaker is not None

    during = {block for state, block in seen if state in (State.THINKING, State.SPEAKING)}
    assert during == {20}
    assert speaker.opened >= 3  # idle, the turn, idle again: one stream at a time
