"""
The two seams between the conversation driver and sound: a microphone and a speaker.

Adapters: ``file_audio`` (WAV files; tests, demo, headless checks) and the PortAudio ones.
Both are async context managers; audio flows only between ``__aenter__`` and
``__aexit__``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Protocol, Self


class Microphone(Protocol):
    """Captured audio, in the capture format (16 kHz mono s16le)."""

    overruns: int
    """Blocks dropped because the reader fell behind."""

    captured_at: float | None
    """When the block ``frames()`` last yielded was captured (``time.monotonic()``, the
    event loop's clock); for latency figures."""

    on_capture: Callable[[bytes], bytes] | None
    """Applied to every block, in capture order, as soon as it is captured (before any
    queue, so the echo canceller sees all of it even when the reader falls behind); returns
    as many bytes as it is given. Set before ``__aenter__``."""

    handoff_ms: int
    """Captured blocks may be held back until this much audio is waiting and handed over
    joined, in one wake-up of the event loop (the driver raises it while the device only
    waits for speech); 0 = each block as soon as it is captured. A microphone whose blocks
    cost no wake-up (a file) may ignore it. May change at any time."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

    def frames(self) -> AsyncIterator[bytes]:
        """Blocks of ``block_ms`` each, as they are captured; never ends by itself."""


class Speaker(Protocol):
    """Plays mono s16le at ``rate``."""

    rate: int
    underruns: int
    """Times the device wanted audio mid-stream and the queue was empty."""

    burst_started_at: float | None
    """When the first sample after a silence was handed to the device (``time.monotonic()``);
    for latency figures."""

    ducked_at: float | None
    """When the first ducked block was handed to the device (``time.monotonic()``); for
    latency figures."""

    on_render: Callable[[bytes, int], None] | None
    """Called on the event loop with each chunk (and its rate) as it is handed to the
    device: the echo canceller's reference. Set before ``__aenter__``."""

    idle: bool
    """The device only waits (the driver sets it with the microphone's ``handoff_ms``):
    nothing but an earcon or an announcement will play before a turn starts, and no reply
    is under way. A speaker whose idle wake-ups cost something may then serve them
    coarser (longer device blocks). May change at any time."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...

    def play_nowait(self, pcm: bytes) -> None:
        """Queue audio after whatever is queued; never blocks."""

    def flush(self) -> None:
        """Drop everything queued; the speaker is silent within one block."""

    async def wait_drained(self) -> None:
        """Return once nothing is queued or playing."""

    async def wait_queued_below(self, ms: float) -> None:
        """Return once less than ``ms`` of audio is queued (at once if so already, and when
        the device is lost): how the driver lets playback catch up before reading more."""

    def set_volume(self, percent: int) -> None:
        """Software gain 0..100 for audio played from now on (100 leaves samples unchanged)."""

    def duck(self, db: float) -> None:
        """Play ``db`` dB (0 or less) below the volume from the next block on, queued audio
        included; 0 plays at the volume again. Ramps over a few milliseconds (no click)."""

    @property
    def playing(self) -> bool:
        """Audio is queued or playing."""

    def played_ms(self) -> float:
        """Milliseconds of audio actually played so far (metrics, tests)."""
