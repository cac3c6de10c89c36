"""
A broken or hostile Coze costs the real daemon a bounded amount: a reply streamed far faster
than it plays is held back by TCP, not hoarded; reply audio split at any byte plays as if it
were not; floods of bad frames and errors are logged a line per interval, not per frame.
The server is the tests' own (tests/support/hostile_coze.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.adapters.sound_devices import SoundDeviceSpeaker
from coze_edge.core.audio import apply_gain
from coze_edge.core.commands import Cancel, SetVolume
from coze_edge.core.floods import FLOOD_INTERVAL_S
from coze_edge.core.status import State
from tests.support.daemon import ONE_QUESTION, DaemonRun, daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.hostile_coze import (
    HostileCoze,
    flood,
    hostile_coze,
    pattern_pcm,
    split,
    stream_reply,
    unread_by_clients,
)
from tests.support.pulseaudio import PulseEnv
from tests.support.timing import MS

RATE = 24000
SILENCE = str(DATA / "silence-2s.wav")
HELD = re.compile(r"(\d+) more ")
LONG_REPLY_S = 20 * 60
MB = 1024 * 1024


def long_reply(delta_ms: int) -> Callable[[], Iterator[bytes]]:
    """Twenty minutes of reply audio in deltas of ``delta_ms``, made as they are sent."""

    def deltas() -> Iterator[bytes]:
        delta = pattern_pcm(delta_ms / 1000)
        for _ in range(LONG_REPLY_S * 1000 // delta_ms):
            yield delta

    return deltas


def rss() -> int:
    """This process's resident memory, in bytes."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The highest resident memory seen since :meth:`start` (sampled every 10 ms)."""

    def __init__(self) -> None:
        self.baseline = 0
        self.peak = 0

    def start(self) -> None:
        self.baseline = self.peak = rss()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                if self.baseline:
                    self.peak = max(self.peak, rss())
                await asyncio.sleep(0.01)

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def speaker_of(run: DaemonRun) -> FileSpeaker:
    conversation = run.daemon.conversation
    assert conversation is not None
    speaker = conversation.devices[1]
    assert isinstance(speaker, FileSpeaker)
    return speaker


@pytest.mark.parametrize(
    ("delta_ms", "max_growth_mb"),
    [
        pytest.param(200, 8, id="200-ms-deltas"),
        # 960 kB frames: websockets queues 16 of them, no more, while the socket is unread.
        pytest.param(15_000, 24, id="15-s-deltas"),
    ],
)
async def test_a_20_minute_reply_at_full_speed_is_held_back_and_cancel_silences_it(
    tmp_path: Path, delta_ms: int, max_growth_mb: float
) -> None:
    """A server streams a 20-minute reply as fast as it can: the daemon reads only as fast
    as it plays (its memory grows by a bounded amount, the kernel holds little for it, and
    pongs stuck behind the unread audio do not end the connection) while the microphone
    and commands keep working, and a cancel silences it at once while the rest is read
    and dropped."""
    memory = PeakRss()
    reply = stream_reply(long_reply(delta_ms))

    async def turn(coze: HostileCoze, ws: ServerConnection) -> None:
        memory.start()  # the device is connected and has committed its turn
        await reply(coze, ws)

    output = tmp_path / "played.wav"

    def audio() -> tuple[FileMicrophone, FileSpeaker]:
        question = FileMicrophone(DATA / "utterance-weather.wav", realtime=False)
        return question, FileSpeaker(output, rate=RATE, realtime=True)

    async with hostile_coze(turn) as coze, memory.sampling():
        # Pings every second: each one's pong waits behind the minute of audio the
        # server has sent ahead, unread.
        config = daemon_config(
            coze, tmp_path, audio={"earcons": False}, coze={"ping_interval_s": 1.0}
        )
        async with running_daemon(config, audio=audio) as run:
            await run.wait(lambda: run.state is State.SPEAKING, 10_000 * MS)
            speaker = speaker_of(run)
            await run.wait(lambda: speaker.played_ms() > 3000, 10_000 * MS)

            # Held back: the server got no further than a few seconds ahead of playback
            # (and what the socket buffers hold), nowhere near the whole reply.
            ahead_s = coze.sent_audio_bytes / (2 * RATE) - speaker.played_ms() / 1000
            unread = unread_by_clients(coze.port)
            print(f"the server got {ahead_s:.0f} s of audio ahead of playback;")
            print(f"the daemon's kernel holds {unread / 1024:.0f} kB of it")
            assert unread < 512 * 1024  # SO_RCVBUF, doubled by the kernel
            assert ahead_s < LONG_REPLY_S / 2, f"the server got {ahead_s:.0f} s ahead"
            # ... while the driver serves the microphone and commands.
            conversation = run.daemon.conversation
            assert conversation is not None
            assert conversation.audio_healthy(within_s=1.0)
            volume = run.daemon.submit(SetVolume(80))
            assert volume is not None
            async with asyncio.timeout(1000 * MS):
                await volume

            cancel = run.daemon.submit(Cancel())
            assert cancel is not None
            await cancel
            silenced_at = speaker.played_ms()
            assert run.state is State.IDLE
            await run.wait(lambda: coze.reply_sent, 60_000 * MS)  # the rest, read and dropped
            await asyncio.sleep(200 * MS)
            assert speaker.played_ms() == silenced_at
            assert run.state is State.IDLE
            assert coze.received.count("chat.update") == 1  # one connection throughout

    growth_mb = memory.growth / MB
    print(f"RSS grew by {growth_mb:.1f} MB while a {LONG_REPLY_S // 60}-minute reply streamed")
    assert growth_mb < max_growth_mb, f"RSS grew by {growth_mb:.1f} MB"


async def nothing(coze: HostileCoze, ws: ServerConnection) -> None:
    """An ``on_turn`` that never answers."""


async def test_a_server_that_stops_answering_pings_is_left_for_a_new_one(tmp_path: Path) -> None:
    """A connection whose server hangs (no pong) is given up after the ping interval and
    timeout, and a new one is opened."""
    async with hostile_coze(nothing) as coze:
        coze.freeze = 1
        config = daemon_config(
            coze,
            tmp_path,
            audio={"backend": "file", "file_input": str(DATA / "silence-2s.wav")},
            coze={"ping_interval_s": 0.5},
        )
        async with running_daemon(config) as run:
            await run.wait(lambda: coze.received.count("chat.update") == 1, 5000 * MS)
            hung = asyncio.get_running_loop().time()
            await run.wait(lambda: coze.received.count("chat.update") == 2, 5000 * MS)
            elapsed = asyncio.get_running_loop().time() - hung
    print(f"a new connection {elapsed:.2f} s after the server hung")
    assert 0.9 < elapsed < 6000 * MS  # 1 s to notice, 2 s for the close handshake


async def test_talking_over_a_held_back_reply_silences_it_for_good(tmp_path: Path) -> None:
    """The user talks over a 20-minute reply while the daemon holds the server back: the
    microphone is heard, the reply stops at once and none of the rest of it plays."""
    first = stream_reply(long_reply(200))

    async def turn(coze: HostileCoze, ws: ServerConnection) -> None:
        if coze.turns == 1:
            await first(coze, ws)  # the second turn gets no answer

    output = tmp_path / "played.wav"
    async with hostile_coze(turn) as coze:
        config = daemon_config(
            coze,
            tmp_path,
            audio={
                "backend": "file",
                "file_input": str(DATA / "two-utterances.wav"),  # 2.5 s between them
                "file_output": str(output),
                "file_realtime": True,
                "earcons": False,
            },
        )
        async with running_daemon(config) as run:
            await run.wait(lambda: run.state is State.SPEAKING, 10_000 * MS)
            speaking = run.when(State.SPEAKING)
            assert speaking is not None
            await run.wait(lambda: run.when(State.LISTENING, speaking) is not None, 10_000 * MS)
            silenced_at = speaker_of(run).played_ms()
            assert coze.sent_audio_bytes < LONG_REPLY_S * 2 * RATE / 2  # held back till then
            await run.wait(lambda: coze.reply_sent, 60_000 * MS)  # the rest, read and dropped
            assert speaker_of(run).played_ms() == silenced_at
            assert 1000 < silenced_at < 4000
            assert "conversation.chat.cancel" in coze.received


SPLIT_REPLY = pattern_pcm(1.5)
VOLUME = 50
"""Gain is applied to what the speaker is given, chunk by chunk: half a sample in a chunk
would shift every sample after it (unity gain would hide that on PortAudio)."""
SPLITS = {
    "even": [4800],  # 100 ms deltas
    "odd": [4801, 3, 1, 9597, 7, 2399],  # mid-sample cuts, a 1-byte delta among them
}


async def reply_as_played(
    tmp_path: Path, sizes: list[int], speaker: Callable[[Path], Speaker]
) -> bytes:
    """The daemon's turn, at :data:`VOLUME`, against a server that sends
    :data:`SPLIT_REPLY` in deltas of ``sizes``: what the speaker ``speaker(tmp_path)``
    played."""
    made: list[Speaker] = []
    volume_set = asyncio.Event()

    def audio() -> tuple[Microphone, Speaker]:
        made.append(speaker(tmp_path))
        return FileMicrophone(DATA / "utterance-weather.wav", realtime=False), made[-1]

    stream = stream_reply(lambda: split(SPLIT_REPLY, sizes))

    async def reply(coze: HostileCoze, ws: ServerConnection) -> None:
        await volume_set.wait()
        await stream(coze, ws)

    async with hostile_coze(reply) as coze:
        config = daemon_config(coze, tmp_path, audio={**ONE_QUESTION, "earcons": False})
        async with running_daemon(config, audio=audio) as run:
            await run.wait(lambda: run.daemon.conversation is not None, 10_000 * MS)
            volume = run.daemon.submit(SetVolume(VOLUME))
            assert volume is not None
            await volume
            volume_set.set()
            await run.wait(lambda: any(e["type"] == "turn" for e in run.events), 10_000 * MS)
            await made[-1].wait_drained()
    [played] = made
    if isinstance(played, FileSpeaker):
        return wav_pcm(played.path)
    assert isinstance(played, RenderedSpeaker)
    return played.rendered()


class RenderedSpeaker(SoundDeviceSpeaker):
    """The PortAudio speaker, keeping what it handed to the device."""

    def __init__(self) -> None:
        super().__init__(None, rate=RATE)
        self.chunks: list[bytes] = []
        self.on_render = self._rendered

    def _rendered(self, pcm: bytes, rate: int) -> None:
        assert rate == RATE, "the sink resamples: the bytes could not be compared"
        self.chunks.append(pcm)

    def rendered(self) -> bytes:
        """The reply's samples, without the device's silence (the reply has no zeros)."""
        samples = np.frombuffer(b"".join(self.chunks), dtype="<i2")
        return bytes(samples[samples != 0].tobytes())


def wav_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


@pytest.mark.parametrize("split_name", sorted(SPLITS))
async def test_reply_audio_split_anywhere_plays_its_bytes_on_a_file(
    tmp_path: Path, split_name: str
) -> None:
    """Deltas cut mid-sample play the same bytes as whole-sample ones (file speaker)."""
    played = await reply_as_played(
        tmp_path, SPLITS[split_name], lambda tmp: FileSpeaker(tmp / "played.wav", rate=RATE)
    )

    assert played == apply_gain(SPLIT_REPLY, VOLUME)


@pytest.mark.parametrize("split_name", sorted(SPLITS))
async def test_reply_audio_split_anywhere_plays_its_bytes_on_portaudio(
    tmp_path: Path, pulse: PulseEnv, split_name: str
) -> None:
    """Deltas cut mid-sample hand the device the same bytes as whole-sample ones
    (PortAudio on PulseAudio)."""
    played = await reply_as_played(tmp_path, SPLITS[split_name], lambda _: RenderedSpeaker())

    assert played == apply_gain(SPLIT_REPLY, VOLUME)  # no sample of it is 0


FLOOD_PER_S = 1000
FLOOD_S = 2.0
ERROR_FRAME = json.dumps({"event_type": "error", "data": {"code": 5000, "msg": "boom"}})


@pytest.mark.parametrize(
    ("frame", "logger", "kind"),
    [
        pytest.param("{this is not json", "coze_edge.adapters.coze_ws", "bad frame", id="bad"),
        pytest.param(ERROR_FRAME, "coze_edge.daemon", "error event", id="errors"),
    ],
)
async def test_a_flood_from_the_server_is_a_line_per_interval_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, frame: str, logger: str, kind: str
) -> None:
    """A thousand bad frames (or error events) a second: a line for the first, one per
    interval after it, and one with the count of the rest when the flood ends."""
    async with hostile_coze(nothing, on_configured=flood(frame, FLOOD_PER_S, FLOOD_S)) as coze:
        config = daemon_config(coze, tmp_path, audio={**ONE_QUESTION, "file_input": SILENCE})
        with caplog.at_level(logging.WARNING, logger=logger):
            async with running_daemon(config) as run:
                await run.wait(lambda: coze.received.count("chat.update") >= 2, 20_000 * MS)
    records = [r for r in caplog.records if r.name == logger and r.levelno >= logging.WARNING]
    print(f"{len(records)} log lines for {coze.flooded} {kind}s in {FLOOD_S:g} s")
    for record in records:
        print(f"  {record.getMessage()}")
    assert len(records) <= 2 + FLOOD_S / FLOOD_INTERVAL_S
    messages = [r.getMessage() for r in records]
    tails = [m for m in messages if m.endswith(" since the last such line")]
    held = sum(int(n) for m in messages for n in HELD.findall(m))
    assert len(messages) - len(tails) + held == coze.flooded  # each one logged or counted
