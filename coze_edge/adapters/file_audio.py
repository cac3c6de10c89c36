"""
WAV files as microphone and speaker (``audio.backend: file``): tests, the demo, headless
checks (CONTRACT.md, "File audio backend").

The microphone plays a WAV file into the daemon in real time, then silence for ever. The
speaker consumes what it is given in real time, as a device would, and writes what it
played to a WAV file as it goes, so a barge-in cuts the file short and the file grows while a
reply plays. ``realtime=False`` skips the waiting (soaks, fast tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final, Self

from coze_edge.adapters.wav import WavFormatError, read_wav_as
from coze_edge.core.audio import CAPTURE, DUCK_RAMP_MS, AudioFormat, Ducking, apply_gain
from coze_edge.errors import ConfigError

log = logging.getLogger(__name__)

HEADER_BYTES: Final = 44


class FileMicrophone:
    """
    Delivers a WAV file (any rate and channel count, converted to ``fmt`` up front) in
    blocks of ``block_ms``, then silence blocks for ever.

    Real time is kept against the loop clock from the moment ``frames()`` is first
    iterated: block k arrives at ``start + (k + 1) * block_ms``, when its last sample would
    have been captured, so lateness never accumulates. With ``realtime=False`` the file's
    blocks come as fast as they are read, and the silence after them in real time (a
    daemon waiting for speech must not spin).
    """

    def __init__(
        self,
        path: Path,
        *,
        fmt: AudioFormat = CAPTURE,
        block_ms: int = 60,
        realtime: bool = True,
    ) -> None:
        self.path = path
        self.fmt = fmt
        self.realtime = realtime
        self.overruns = 0
        self.on_capture: Callable[[bytes], bytes] | None = None
        self.captured_at: float | None = None
        self.handoff_ms = 0  # ignored: reading a block costs no wake-up worth saving
        self.block_bytes = fmt.frame_bytes(block_ms)
        if self.block_bytes <= 0:
            raise ValueError(f"block_ms must be positive, got {block_ms}")
        self._block_s = fmt.duration_ms(self.block_bytes) / 1000
        try:
            self._pcm = read_wav_as(path, fmt)
        except OSError as exc:
            raise ConfigError(
                [("audio.file_input", f"cannot read {path}: {exc.strerror or exc}")]
            ) from exc
        except WavFormatError as exc:
            raise ConfigError([("audio.file_input", str(exc))]) from exc
        self._position = 0  # bytes of the file delivered so far
        log.debug("= microphone: %s, %.1f s of audio", path, fmt.duration_ms(len(self._pcm)) / 1000)

    @property
    def duration_ms(self) -> float:
        """Length of the file's audio."""
        return self.fmt.duration_ms(len(self._pcm))

    @property
    def exhausted(self) -> bool:
        """All of the file was delivered; only silence follows."""
        return self._position >= len(self._pcm)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        return None

    async def frames(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        silence = bytes(self.block_bytes)
        start = loop.time()
        count = 0  # blocks delivered on the clock that began at `start`
        while True:
            if self._position < len(self._pcm):
                block = self._pcm[self._position : self._position + self.block_bytes]
                self._position += len(block)
                block += bytes(self.block_bytes - len(block))  # pad the file's last block
                if self._position >= len(self._pcm):
                    log.debug("= microphone: end of %s; silence from now on", self.path)
                if not self.realtime:
                    await asyncio.sleep(0)  # let others run; a flood must not starve the loop
                    start, count = loop.time(), 0  # the silence clock starts after the file
                    yield self._captured(block)
                    continue
            else:
                block = silence
            count += 1
            await asyncio.sleep(max(0.0, start + count * self._block_s - loop.time()))
            yield self._captured(block)

    def _captured(self, block: bytes) -> bytes:
        self.captured_at = time.monotonic()
        return block if self.on_capture is None else self.on_capture(block)


class FileSpeaker:
    """
    Writes what it plays to a mono 16-bit WAV file at ``rate``.

    ``realtime=True``: queued audio is consumed in ``block_ms`` blocks at the pace a device
    would play it, each block written as it plays; the WAV header is brought up to date
    whenever the queue drains and at close. Only played audio is written, never idle
    silence. ``realtime=False``: ``play_nowait`` writes at once.
    """

    def __init__(
        self,
        path: Path,
        *,
        rate: int = 24000,
        realtime: bool = True,
        block_ms: int = 20,
    ) -> None:
        self.path = path
        self.rate = rate
        self.realtime = realtime
        self.underruns = 0  # a file is never starved: idle time is simply not written
        self._fmt = AudioFormat(rate)
        self._block_bytes = self._fmt.frame_bytes(block_ms)
        if self._block_bytes <= 0:
            raise ValueError(f"block_ms must be positive, got {block_ms}")
        self._volume = 100
        self._ducking = Ducking(rate * DUCK_RAMP_MS // 1000)
        self.on_render: Callable[[bytes, int], None] | None = None
        self.burst_started_at: float | None = None
        self.ducked_at: float | None = None
        self._queue = bytearray()
        self._queued = asyncio.Event()  # the queue holds audio: wakes the player
        self._drained = asyncio.Event()  # nothing queued or playing
        self._drained.set()
        self._shrunk = asyncio.Event()  # the queue got shorter: wakes wait_queued_below
        self._in_block = False  # the player is in the middle of a block's time
        self._played_bytes = 0
        self._file: BinaryIO | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            self._file = stack.enter_context(_open_for_writing(self.path))
            self._file.write(_wav_header(self.rate, 0))
            self._file.flush()
            stack.callback(self._close)
            if self.realtime:
                tasks = await stack.enter_async_context(asyncio.TaskGroup())
                player = tasks.create_task(self._play(), name=f"file-speaker:{self.path.name}")
                stack.callback(player.cancel)  # runs before the group waits for it
            self._stack = stack.pop_all()
        log.debug("= speaker: writing %s at %d Hz", self.path, self.rate)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    # ------------------------------------------------------------------ Speaker

    def play_nowait(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError(f"s16le audio has an even length, got {len(pcm)} bytes")
        if not pcm:
            return
        if not self.realtime:
            self.burst_started_at = time.monotonic()
            self._write(self._ducking.apply(apply_gain(pcm, self._volume)))
            self._fix_header()
            return
        self._queue += pcm
        self._drained.clear()
        self._queued.set()

    def flush(self) -> None:
        dropped = len(self._queue)
        self._queue.clear()
        self._shrunk.set()
        if dropped:
            log.debug("= speaker: flushed %.0f ms", self._fmt.duration_ms(dropped))
        if not self._in_block:
            self._drained.set()

    async def wait_drained(self) -> None:
        await self._drained.wait()

    async def wait_queued_below(self, ms: float) -> None:
        limit = ms * self.rate * 2 / 1000
        while len(self._queue) >= limit and self._file is not None:
            self._shrunk.clear()
            await self._shrunk.wait()

    idle = False  # ignored: writing a file costs no wake-up worth saving

    def set_volume(self, percent: int) -> None:
        self._volume = min(max(percent, 0), 100)

    def duck(self, db: float) -> None:
        if db < 0 and self._ducking.gain == 1.0:
            self.ducked_at = time.monotonic()
        self._ducking.set_db(db)

    @property
    def playing(self) -> bool:
        return not self._drained.is_set()

    def played_ms(self) -> float:
        return self._fmt.duration_ms(self._played_bytes)

    # ------------------------------------------------------------------ internals

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._queued.wait()
            clock = loop.time()  # when the block being played ends
            self.burst_started_at = clock
            while self._queue:
                block = bytes(self._queue[: self._block_bytes])
                del self._queue[: self._block_bytes]
                self._shrunk.set()
                self._in_block = True
                self._write(self._ducking.apply(apply_gain(block, self._volume)))
                clock += self._fmt.duration_ms(len(block)) / 1000
                await asyncio.sleep(max(0.0, clock - loop.time()))
                self._in_block = False
            self._queued.clear()
            self._fix_header()
            self._drained.set()

    def _write(self, pcm: bytes) -> None:
        if self._file is None:
            raise RuntimeError("FileSpeaker is used outside 'async with'")
        self._file.write(pcm)
        self._file.flush()  # the file grows as it plays, for whoever watches it
        self._played_bytes += len(pcm)
        if self.on_render is not None:
            self.on_render(pcm, self.rate)

    def _fix_header(self) -> None:
        file = self._file
        if file is None or not file.seekable():
            return
        data = self._played_bytes
        end = file.tell()
        file.seek(4)
        file.write(struct.pack("<I", 36 + data))
        file.seek(40)
        file.write(struct.pack("<I", data))
        file.seek(end)
        file.flush()

    def _close(self) -> None:
        self._queue.clear()
        self._drained.set()
        self._shrunk.set()
        self._fix_header()
        log.debug("= speaker: %s closed, %.1f s played", self.path, self.played_ms() / 1000)
        self._file = None


def _open_for_writing(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write audio output {path}: {exc.strerror}") from exc


def _wav_header(rate: int, data_bytes: int) -> bytes:
    """A 44-byte RIFF/WAVE header for mono 16-bit PCM."""
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )
