"""A microphone whose audio goes through WebRTC's audio processing module first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from coze_edge.adapters.apm import AudioProcessor
from coze_edge.adapters.audio_io import Microphone


class CleanedMicrophone:
    """Noise suppression, high-pass and AGC applied before VAD and the wake word."""

    def __init__(self, microphone: Microphone, processor: AudioProcessor) -> None:
        self._microphone = microphone
        self._processor = processor
        self.overruns = 0  # the wrapped microphone counts its own

    async def __aenter__(self) -> Self:
        await self._microphone.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        await self._microphone.__aexit__(exc_type, exc, tb)

    async def frames(self) -> AsyncIterator[bytes]:
        async for block in self._microphone.frames():
            yield self._processor.process_capture(block)
