"""
A core ``Session`` driven into each state by its inputs, for the core's tests: a detector
that calls any non-zero sample speech, and Coze's ids from the recorded traces.
"""

from __future__ import annotations

from coze_edge.core import events as ev
from coze_edge.core.endpointer import Endpointer
from coze_edge.core.session import Effect, Send, Session, SessionSettings
from coze_edge.core.status import State

FRAME = 640  # 20 ms at 16 kHz mono s16le
SPEECH = b"\x10\x01" * (FRAME // 2)
SILENCE = bytes(FRAME)
CHAT = "7526821559890198568"
CONV = "7526821722323025972"


class LoudIsSpeech:
    """A detector for tests: any non-zero sample is speech."""

    def is_speech(self, frame: bytes) -> bool:
        return any(frame)


def new_session(**settings: object) -> Session:
    endpointer = Endpointer(LoudIsSpeech(), pre_roll_ms=100, start_ms=60, end_silence_ms=200)
    return Session(SessionSettings(**settings), endpointer)  # type: ignore[arg-type]


def idle_session(**settings: object) -> Session:
    session = new_session(**settings)
    session.connected(0.0)
    session.received(ev.ChatUpdated({}), 0.0)
    return session


def sent(effects: list[Effect]) -> list[ev.ClientEvent]:
    return [e.event for e in effects if isinstance(e, Send)]


def appended(effects: list[Effect]) -> bytes:
    return b"".join(e.audio for e in sent(effects) if isinstance(e, ev.AudioAppend))


def talk(session: Session, *, speech_ms: int, silence_ms: int, now: float) -> list[Effect]:
    """Speech then silence, fed in 60 ms blocks like a microphone would."""
    audio = SPEECH * (speech_ms // 20) + SILENCE * (silence_ms // 20)
    effects: list[Effect] = []
    for i in range(0, len(audio), 3 * FRAME):
        effects += session.audio_captured(audio[i : i + 3 * FRAME], now)
    return effects


def thinking_session() -> Session:
    session = idle_session()
    talk(session, speech_ms=400, silence_ms=300, now=1.0)
    assert session.state is State.THINKING
    return session


def speaking_session(now: float = 2.0) -> Session:
    session = thinking_session()
    session.received(ev.ChatStarted(CHAT, CONV), now)
    session.received(ev.AudioDelta(CHAT, b"\x01\x02" * 2400), now)
    assert session.state is State.SPEAKING
    return session
