"""The session with ``server_vad``: Coze's voice detection drives the turns."""

from __future__ import annotations

from coze_edge.core import events as ev
from coze_edge.core.session import (
    Announce,
    Emit,
    FlushPlayback,
    Play,
    Session,
    WatchDrain,
)
from coze_edge.core.status import State
from tests.support.session import CHAT, CONV, SILENCE, SPEECH, idle_session, sent

OTHER_CHAT = "7526821559890198999"
REPLY = b"\x01\x02" * 2400  # 0.1 s at 24 kHz


def vad_session() -> Session:
    return idle_session(server_vad=True)


def thinking(now: float = 1.0) -> Session:
    session = vad_session()
    session.received(ev.ServerSpeechStarted(), now - 0.8)
    session.received(ev.ServerSpeechStopped(), now)
    assert session.state is State.THINKING
    return session


def speaking(now: float = 2.0) -> Session:
    session = thinking()
    session.received(ev.ChatStarted(CHAT, CONV), now)
    session.received(ev.AudioDelta(CHAT, REPLY), now)
    assert session.state is State.SPEAKING
    return session


def test_a_turn_follows_cozes_speech_events_and_never_commits() -> None:
    """speech_started opens the turn, speech_stopped ends it; no complete is ever sent."""
    session = vad_session()
    effects = session.audio_captured(SPEECH, 0.1)
    effects += session.received(ev.ServerSpeechStarted(), 0.2)
    effects += session.audio_captured(SILENCE * 40, 0.3)
    effects += session.received(ev.ServerSpeechStopped(), 1.2)

    assert session.state is State.THINKING
    assert not [e for e in sent(effects) if isinstance(e, ev.AudioComplete)]
    assert [e for e in effects if isinstance(e, Announce)] == [
        Announce(State.LISTENING),
        Announce(State.THINKING),
    ]


def test_a_chat_created_while_idle_is_played() -> None:
    """A chat Coze starts on its own (its VAD ended a turn, or it speaks first) plays."""
    session = vad_session()

    started = session.received(ev.ChatStarted(CHAT, CONV), 1.0)
    audio = session.received(ev.AudioDelta(CHAT, REPLY), 1.1)

    assert sent(started) == []
    assert Announce(State.THINKING) in started
    assert audio == [Announce(State.SPEAKING), Play(REPLY)]
    assert session.received(ev.ChatCompleted(CHAT, CONV), 1.2) == [WatchDrain()]
    assert session.playback_drained(1.5) == [Announce(State.IDLE)]


def test_speech_while_thinking_opens_a_new_turn_whose_chat_plays() -> None:
    """The user talks again before the reply's audio came: a new turn; Coze's cancel of the
    old chat (code 1) changes nothing, and the chat of the new turn plays."""
    session = thinking()
    session.received(ev.ChatStarted(CHAT, CONV), 1.1)

    assert session.received(ev.ServerSpeechStarted(), 1.5) == [Announce(State.LISTENING)]
    assert session.received(ev.ChatCanceled(1, "interrupted by user speech"), 1.5) == []
    assert session.received(ev.AudioDelta(CHAT, REPLY), 1.6) == []  # the old chat's
    session.received(ev.ServerSpeechStopped(), 2.5)
    session.received(ev.ChatStarted(OTHER_CHAT, CONV), 2.6)

    assert session.received(ev.AudioDelta(OTHER_CHAT, REPLY), 2.7) == [
        Announce(State.SPEAKING),
        Play(REPLY),
    ]


def test_a_server_barge_in_flushes_playback_and_drops_the_old_chat() -> None:
    """speech_started while the reply plays: the speaker is flushed at once, late audio of
    that chat is dropped, and the cancel that follows changes nothing."""
    session = speaking()

    assert session.received(ev.ServerSpeechStarted(), 2.5) == [
        FlushPlayback(),
        Announce(State.LISTENING),
    ]
    assert session.received(ev.ChatCanceled(1, "interrupted by user speech"), 2.5) == []
    assert session.received(ev.AudioDelta(CHAT, REPLY), 2.6) == []
    assert sent(session.received(ev.ServerSpeechStopped(), 3.0)) == []
    assert session.state is State.THINKING


def test_a_cancel_with_no_speech_event_still_silences_the_speaker() -> None:
    """chat.canceled code 1 alone while speaking: flush and idle."""
    session = speaking()

    assert session.received(ev.ChatCanceled(1, "interrupted by user speech"), 2.5) == [
        FlushPlayback(),
        Announce(State.IDLE),
    ]


def test_the_chat_of_a_turn_cancelled_while_listening_is_cancelled() -> None:
    """cancel while Coze hears the user: Coze still answers that turn; that chat is
    cancelled, not played, and the next one plays again."""
    session = vad_session()
    session.received(ev.ServerSpeechStarted(), 0.2)
    session.cancel(0.5)
    session.received(ev.ServerSpeechStopped(), 1.0)

    unwanted = session.received(ev.ChatStarted(CHAT, CONV), 1.1)

    assert sent(unwanted) == [ev.ChatCancel()]
    assert session.received(ev.AudioDelta(CHAT, REPLY), 1.2) == []
    assert session.state is State.IDLE
    assert Announce(State.THINKING) in session.received(ev.ChatStarted(OTHER_CHAT, CONV), 5.0)


def test_a_chat_later_than_the_reply_timeout_is_cancelled() -> None:
    """The device gave up waiting (error, idle): the chat that comes after is not played."""
    session = thinking()
    deadline = session.next_deadline()
    assert deadline is not None
    effects = session.handle_timer(deadline)
    assert [e.type for e in effects if isinstance(e, Emit)] == ["error"]

    late = session.received(ev.ChatStarted(CHAT, CONV), deadline + 1)

    assert ev.ChatCancel() in sent(late)
    assert session.state is State.IDLE


def test_a_reply_without_audio_leaves_the_next_chat_wanted() -> None:
    """A turn answered with text only ends normally; Coze's next chat still plays."""
    session = thinking()
    session.received(ev.ChatStarted(CHAT, CONV), 1.1)
    session.received(ev.ChatCompleted(CHAT, CONV), 1.2)
    assert session.state is State.IDLE

    assert Announce(State.THINKING) in session.received(ev.ChatStarted(OTHER_CHAT, CONV), 3.0)
