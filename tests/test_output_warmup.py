"""
The speaker's stream on real PortAudio streams through PulseAudio: kept open by default,
closed after ``keep_open_s`` of silence and opened again for the next sound, with
``warmup_ms`` of silence first; and what reaches the sink of a reply's first 100 ms.
(PulseAudio's null sink does not sleep as a USB speakerphone does: scripts/warmup-check
measures the rest, and the README has its figures.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from coze_edge.adapters.sound_devices import SoundDeviceSpeaker
from tests.support.pulseaudio import PulseEnv
from tests.support.reply_start import RATE, arrival, reply
from tests.support.timing import MS


async def until(condition: Callable[[], bool], within_ms: float = 5000) -> None:
    async with asyncio.timeout(within_ms * MS):
        while not condition():  # noqa: ASYNC110 - the stream is closed on the speaker's timer
            await asyncio.sleep(0.02)


async def reply_start_ms(pulse: PulseEnv, speaker: SoundDeviceSpeaker) -> int:
    """Play a reply on ``speaker`` (open) and return how much of its first 100 ms the sink
    got."""
    recorder = pulse.record_speaker()
    await asyncio.sleep(0.3)
    speaker.play_nowait(reply())
    async with asyncio.timeout(5000 * MS):
        await speaker.wait_drained()
    await asyncio.sleep(0.3)
    found = arrival(await asyncio.to_thread(recorder.stop), reply())
    assert found is not None, "the reply never reached the sink"
    return found.start_ms


async def test_the_stream_closes_after_silence_and_opens_again_for_sound(
    pulse: PulseEnv,
) -> None:
    """With keep_open_s, the stream closes once silent that long; a sound opens it again,
    its warm-up plays first, and the whole start of the reply arrives."""
    speaker = SoundDeviceSpeaker("pulse", rate=RATE, keep_open_s=0.3, warmup_ms=100)
    async with speaker:
        await until(lambda: not speaker.stream_open)
        starts = []
        for _ in range(3):
            starts.append(await reply_start_ms(pulse, speaker))
            await until(lambda: not speaker.stream_open)

    print(f"first 100 ms at the sink after the stream was opened again: {starts} ms")
    assert speaker.opened == 4
    assert starts == [100, 100, 100]


async def test_by_default_the_stream_stays_open(pulse: PulseEnv) -> None:
    """Without keep_open_s, one stream serves every reply and stays open in between."""
    async with SoundDeviceSpeaker("pulse", rate=RATE) as speaker:
        starts = [await reply_start_ms(pulse, speaker) for _ in range(2)]
        await asyncio.sleep(0.5)
        assert speaker.stream_open

    print(f"first 100 ms at the sink, stream kept open: {starts} ms")
    assert speaker.opened == 1
    assert starts == [100, 100]


async def test_an_echo_canceller_keeps_the_stream_open(pulse: PulseEnv) -> None:
    """The canceller needs every block the speaker plays: keep_open_s gives way."""
    rendered: list[int] = []
    speaker = SoundDeviceSpeaker("pulse", rate=RATE, keep_open_s=0.1)
    speaker.on_render = lambda pcm, rate: rendered.append(len(pcm))
    async with speaker:
        await until(lambda: len(rendered) >= 25)  # half a second of 20 ms blocks
        assert speaker.stream_open

    assert speaker.opened == 1
