"""
The bot's reply: the real Coze reply recorded in coze-go's test data, and its pacing.

``data/reply.json`` is the reply of ``websocket_chat_success.txt`` as a script (text
deltas, sentence starts, the byte size of each audio delta, and where the answer's and the
verbose ``conversation.message.completed`` came, in the trace's order and uneven sizes):
the real server completes the answer's text message while its audio is still streaming,
not after it. ``data/reply.wav`` is the trace's audio, 24 kHz mono s16le.
"""

from __future__ import annotations

import asyncio
import functools
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Final

RATE: Final = 24000
"""The recorded audio's sample rate, and Coze's default output rate."""


@dataclass(frozen=True, slots=True)
class Text:
    """A ``conversation.message.delta``: a piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class Sentence:
    """A ``conversation.audio.sentence_start``: the sentence the next audio speaks."""

    text: str


@dataclass(frozen=True, slots=True)
class Audio:
    """A ``conversation.audio.delta``: PCM at the session's output rate."""

    pcm: bytes


@dataclass(frozen=True, slots=True)
class Completed:
    """A ``conversation.message.completed`` of the answer's ``kind``: ``answer`` (its
    whole text) or ``verbose`` (the ``generate_answer_finish`` note)."""

    kind: str


ReplyItem = Text | Sentence | Completed | Audio


@dataclass(frozen=True)
class RecordedReply:
    script: tuple[Text | Sentence | Completed | int, ...]
    """Text, sentence starts, completions, and audio deltas as their size in bytes at 24 kHz."""
    audio: bytes
    """All of the reply's audio, 24 kHz mono s16le."""

    @staticmethod
    @functools.cache
    def load() -> RecordedReply:
        """The reply of data/, read once per process (it is never changed)."""
        data = resources.files(__package__) / "data"
        raw = json.loads((data / "reply.json").read_text(encoding="utf-8"))["script"]
        script: list[Text | Sentence | Completed | int] = []
        for kind, value in raw:
            match kind:
                case "text":
                    script.append(Text(value))
                case "sentence":
                    script.append(Sentence(value))
                case "completed" if value in ("answer", "verbose"):
                    script.append(Completed(value))
                case "audio":
                    script.append(int(value))
                case _:
                    raise ValueError(f"reply.json: unknown script item {kind!r}")
        with resources.as_file(data / "reply.wav") as path, wave.open(str(path), "rb") as wav:
            audio = wav.readframes(wav.getnframes())
        return RecordedReply(tuple(script), audio)

    async def paced(self, rate: int, speed: float) -> AsyncIterator[ReplyItem]:
        """The reply with its audio at ``rate``, each delta due ``speed`` times faster than
        real time (the real server sends about 6 times faster, coze-protocol.md 4.6)."""
        audio = _resampled(self.audio, rate)
        offset = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for item in self.script:
            if not isinstance(item, int):
                yield item
                continue
            size = max(2, int(item * rate / RATE) // 2 * 2)
            chunk = audio[offset : offset + size]
            offset += size
            if not chunk:
                continue
            due = started + offset / (2 * rate) / speed
            await asyncio.sleep(max(0.0, due - loop.time()))
            yield Audio(chunk)
        if offset < len(audio):
            yield Audio(audio[offset:])

    async def spoken(self, text: str, rate: int, speed: float) -> AsyncIterator[bytes]:
        """``input_text.generate_audio``: a stretch of the reply's audio as long as ``text``
        (0.1 s per byte), at ``rate``, in 250 ms chunks paced ``speed`` times real time."""
        audio = _resampled(self.audio[: len(text.encode()) * 4800], rate)
        step = rate // 4 * 2  # 250 ms
        for start in range(0, len(audio), step):
            await asyncio.sleep(0.25 / speed)
            yield audio[start : start + step]


def _resampled(audio: bytes, rate: int) -> bytes:
    if rate == RATE:
        return audio
    # Imported here: soxr is only needed by sessions that ask for another rate.
    from coze_edge.adapters.resample import StreamResampler

    return StreamResampler(RATE, rate).process(audio, last=True)
