"""
Coze's server-side voice detection (``turn_detection.type: server_vad``), modelled with the
project's own VAD: webrtcvad decides each 20 ms frame, the endpointer
(coze_edge/core/endpointer.py) turns the decisions into where speech starts and where
``silence_duration_ms`` of silence ends it.

How the real server decides is not documented; the onset needed (60 ms of speech, the
device's default) and webrtcvad's aggressiveness are choices made here. The defaults
(``silence_duration_ms`` 500, ``prefix_padding_ms`` 600) are coze-protocol.md 4.4's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from coze_edge.adapters.resample import StreamResampler
from coze_edge.adapters.vad_webrtc import RATES, WebrtcVad
from coze_edge.core.audio import AudioFormat
from coze_edge.core.endpointer import Endpointer, SpeechEnded, SpeechStarted

SILENCE_DURATION_MS: Final = 500
PREFIX_PADDING_MS: Final = 600
START_MS: Final = 60
"""Speech needed before the server says speech started."""
AGGRESSIVENESS: Final = 2
VAD_RATE: Final = 16000
"""What the audio is converted to when webrtcvad does not take its rate."""


@dataclass(frozen=True, slots=True)
class Started:
    """``input_audio_buffer.speech_started``."""


@dataclass(frozen=True, slots=True)
class Stopped:
    """``input_audio_buffer.speech_stopped``: the turn ends here."""


VadEvent = Started | Stopped


def _ms(settings: dict[str, Any], key: str, default: int) -> int:
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return default
    return value


class ServerVad:
    """Speech edges in a session's appended audio (mono or stereo s16le at ``rate``)."""

    def __init__(self, rate: int, channels: int, turn_detection: dict[str, Any]) -> None:
        self.silence_duration_ms = _ms(turn_detection, "silence_duration_ms", SILENCE_DURATION_MS)
        vad_rate = rate if rate in RATES else VAD_RATE
        self._convert: StreamResampler | None = None
        if vad_rate != rate or channels != 1:
            self._convert = StreamResampler(rate, vad_rate, channels=channels, quality="QQ")
        self._endpointer = Endpointer(
            WebrtcVad(AGGRESSIVENESS, vad_rate),
            fmt=AudioFormat(vad_rate),
            frame_ms=20,
            pre_roll_ms=_ms(turn_detection, "prefix_padding_ms", PREFIX_PADDING_MS),
            start_ms=START_MS,
            end_silence_ms=self.silence_duration_ms,
        )

    @property
    def in_speech(self) -> bool:
        return self._endpointer.in_speech

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """The edges ``pcm`` (appended audio, any length) causes, in order."""
        if self._convert is not None:
            pcm = self._convert.process(pcm)
        events: list[VadEvent] = []
        for event in self._endpointer.feed(pcm):
            if isinstance(event, SpeechStarted):
                events.append(Started())
            elif isinstance(event, SpeechEnded):
                events.append(Stopped())
        return events
