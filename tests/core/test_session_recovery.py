"""The session on the paths a device meets alone: our own late cancel, a conversation Coze
forgot, and Coze refusing the bot or account."""

from __future__ import annotations

from coze_edge.core import events as ev
from coze_edge.core.session import (
    Announce,
    Emit,
    FlushPlayback,
    PlayEarcon,
    Reconnect,
    ReconnectAfter,
    RememberConversation,
    Send,
    Session,
    refusal,
)
from coze_edge.core.status import State
from tests.support.session import (
    CHAT,
    CONV,
    SPEECH,
    idle_session,
    new_session,
    sent,
    speaking_session,
    talk,
    thinking_session,
)

CANCEL = ev.ChatCancel()


def played_out(session: Session, now: float = 3.0) -> Session:
    """The reply's chat completed; its audio is still playing."""
    session.received(ev.AudioCompleted(CHAT), now)
    session.received(ev.ChatCompleted(CHAT, CONV), now)
    assert session.state is State.SPEAKING
    return session


def test_talking_over_a_reply_whose_chat_completed_sends_no_cancel() -> None:
    """The chat is over (only playback remains): a barge-in flushes, cancels nothing."""
    session = played_out(speaking_session(), now=3.0)

    effects = session.audio_captured(SPEECH * 20, 4.0)

    assert session.state is State.LISTENING
    assert FlushPlayback() in effects
    assert CANCEL not in sent(effects)


def test_talking_over_a_running_chat_cancels_it_once() -> None:
    """While Coze still produces the reply, the barge-in cancels it, exactly once."""
    session = speaking_session()

    effects = session.audio_captured(SPEECH * 20, 3.0)

    assert sent(effects).count(CANCEL) == 1
    assert session.cancel(3.1).count(Send(CANCEL)) == 0  # listening: nothing left to cancel


def test_a_cancel_command_after_the_chat_completed_only_silences() -> None:
    session = played_out(speaking_session())

    effects = session.cancel(4.0)

    assert sent(effects) == []
    assert FlushPlayback() in effects
    assert session.state is State.IDLE


def test_an_error_about_our_cancel_never_ends_the_users_new_turn() -> None:
    """4104 (nothing to cancel), or any error whose origin is our cancel, is ignored."""
    for error in (
        ev.ServerError(4104, "chat cannot be cancelled in its current status", "L1"),
        ev.ServerError(4000, "invalid", "L2", origin=ev.CHAT_CANCEL),
    ):
        session = speaking_session()
        session.audio_captured(SPEECH * 20, 3.0)  # talked over it: cancel sent, listening
        assert session.state is State.LISTENING

        assert session.received(error, 3.1) == []
        assert session.state is State.LISTENING


def test_an_error_about_the_turn_itself_still_ends_it() -> None:
    session = thinking_session()

    effects = session.received(
        ev.ServerError(4000, "bad audio", "L3", origin="input_audio_buffer.complete"), 2.0
    )

    assert session.state is State.IDLE
    assert PlayEarcon("error") in effects


def test_a_chat_that_starts_after_the_user_gave_up_on_it_is_cancelled() -> None:
    """The user talked over the pending reply before its chat began: once it begins it is
    cancelled (it runs now), and its audio is dropped."""
    session = thinking_session()
    session.audio_captured(SPEECH * 20, 2.0)
    assert session.state is State.LISTENING

    effects = session.received(ev.ChatStarted(CHAT, CONV), 2.1)

    assert sent(effects) == [CANCEL]
    assert session.received(ev.AudioDelta(CHAT, b"\x01\x00" * 100), 2.2) == []


def test_our_own_canceled_echo_changes_nothing() -> None:
    """``chat.canceled`` code 2 answers our cancel: everything was done when we sent it."""
    session = speaking_session()
    session.audio_captured(SPEECH * 20, 3.0)

    assert session.received(ev.ChatCanceled(2, "canceled by client"), 3.1) == []
    assert session.state is State.LISTENING


def test_a_forgotten_conversation_is_dropped_and_a_new_one_started() -> None:
    """Coze refuses the remembered conversation (4002): forget it, say so once, and
    reconnect at once without it."""
    session = new_session(conversation_id="7000000000000000001")
    session.connected(0.0)

    effects = session.received(ev.ServerError(4002, "conversation not found", "L4"), 0.1)

    assert session.conversation_id is None
    assert RememberConversation(None) in effects
    assert Reconnect("the remembered conversation is unknown to Coze", ReconnectAfter.NOW) in (
        effects
    )
    [error] = [e for e in effects if isinstance(e, Emit)]
    assert error.fields["code"] == 4002
    [update] = sent(session.connected(0.2))
    assert isinstance(update, ev.ChatUpdate)
    assert "conversation_id" not in update.data["chat_config"]


def test_a_forgotten_conversation_mid_turn_ends_the_turn_quietly() -> None:
    session = new_session(conversation_id="7000000000000000001")
    session.connected(0.0)
    session.received(ev.ChatUpdated({}), 0.0)
    talk(session, speech_ms=400, silence_ms=300, now=1.0)

    effects = session.received(ev.ChatFailed(CHAT, CONV, code=4002, msg="no such"), 2.0)

    assert session.state is State.IDLE
    assert [e.type for e in effects if isinstance(e, Emit)] == ["error"]
    assert any(isinstance(e, Reconnect) and e.after is ReconnectAfter.NOW for e in effects)


def test_a_refused_bot_is_a_fault_retried_later_not_a_reconnect_loop() -> None:
    """4015 when configuring: the session has a fault to show and reconnects only later."""
    session = new_session()
    session.connected(0.0)

    effects = session.received(ev.ServerError(4015, "bot not published", "LOGID"), 0.1)

    assert session.fault == refusal(4015, "bot not published", "LOGID")
    assert "publish it as API in Coze" in session.fault
    assert "LOGID" in session.fault
    [reconnect] = [e for e in effects if isinstance(e, Reconnect)]
    assert reconnect.after is ReconnectAfter.LATER


def test_a_refusal_mid_reply_stops_the_reply_and_the_fault_clears_when_coze_accepts() -> None:
    session = speaking_session()

    effects = session.received(ev.ServerError(4101, "no permission", "L5"), 3.0)

    assert FlushPlayback() in effects
    assert Announce(State.IDLE) in effects
    assert session.fault is not None
    session.disconnected(3.1)
    session.connected(300.0)
    session.received(ev.ChatUpdated({}), 300.1)
    assert session.fault is None
    assert session.state is State.IDLE


def test_new_conversation_reconnects_at_once() -> None:
    session = idle_session()

    assert Reconnect("new conversation", ReconnectAfter.NOW) in session.new_conversation(1.0)


def test_interrupting_spoken_text_cancels_it_and_drops_its_late_audio() -> None:
    """``say`` output has chat id "0" and no chat events: while it streams a barge-in
    cancels it; once its audio completed, nothing is cancelled."""
    session = idle_session()
    session.say(["hello"], 1.0)
    session.received(ev.AudioDelta("0", b"\x01\x00" * 2400), 1.1)
    assert session.state is State.SPEAKING

    effects = session.audio_captured(SPEECH * 20, 1.2)

    assert sent(effects).count(CANCEL) == 1
    assert session.received(ev.AudioDelta("0", b"\x01\x00" * 100), 1.3) == []

    session = idle_session()
    session.say(["hello"], 1.0)
    session.received(ev.AudioDelta("0", b"\x01\x00" * 2400), 1.1)
    session.received(ev.AudioCompleted("0"), 1.2)
    assert CANCEL not in sent(session.cancel(1.3))
