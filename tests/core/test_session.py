"""The conversation state machine: inputs and the time in, effects out."""

from __future__ import annotations

import math

from coze_edge.core import events as ev
from coze_edge.core.endpointer import Endpointer
from coze_edge.core.session import (
    Announce,
    DuckPlayback,
    Emit,
    FlushPlayback,
    Play,
    PlayEarcon,
    Reconnect,
    RememberConversation,
    Send,
    Session,
    SessionSettings,
    TokenRejected,
    WatchDrain,
)
from coze_edge.core.status import State
from tests.support.session import (
    CHAT,
    CONV,
    FRAME,
    SILENCE,
    SPEECH,
    LoudIsSpeech,
    appended,
    idle_session,
    new_session,
    sent,
    speaking_session,
    talk,
    thinking_session,
)


def test_connecting_configures_pcm_at_the_capture_rate() -> None:
    """A new connection sends chat.update for raw PCM in, 24 kHz PCM out, client turns."""
    session = new_session(voice_id="7426720361733046281", user_id="dev")

    [update] = sent(session.connected(0.0))

    assert isinstance(update, ev.ChatUpdate)
    assert update.data["input_audio"] == {
        "format": "pcm",
        "codec": "pcm",
        "sample_rate": 16000,
        "channel": 1,
        "bit_depth": 16,
    }
    assert update.data["output_audio"] == {
        "codec": "pcm",
        "pcm_config": {"sample_rate": 24000},
        "voice_id": "7426720361733046281",
    }
    assert update.data["turn_detection"] == {"type": "client_interrupt"}
    assert update.data["chat_config"]["user_id"] == "dev"


def test_an_opus_uplink_is_announced_as_raw_opus_packets() -> None:
    """With Opus the input is ``format: pcm, codec: opus`` (raw packets, as coze-js sends)."""
    session = new_session(input_codec="opus", chunk_ms=20)

    [update] = sent(session.connected(0.0))

    assert isinstance(update, ev.ChatUpdate)
    assert update.data["input_audio"]["format"] == "pcm"
    assert update.data["input_audio"]["codec"] == "opus"
    assert update.data["output_audio"]["codec"] == "pcm"


def test_nothing_is_appended_before_chat_updated() -> None:
    """Speech before Coze confirmed the configuration goes nowhere."""
    session = new_session()
    session.connected(0.0)

    assert talk(session, speech_ms=400, silence_ms=0, now=0.5) == []


def test_chat_updated_makes_the_device_idle() -> None:
    """Confirmation of chat.update announces IDLE."""
    session = new_session()
    session.connected(0.0)

    assert session.received(ev.ChatUpdated({}), 0.1) == [Announce(State.IDLE)]


def test_a_spoken_turn_streams_audio_then_completes_once() -> None:
    """Speech opens a turn, audio goes up in 60 ms chunks, silence commits it once."""
    session = idle_session()

    effects = talk(session, speech_ms=400, silence_ms=300, now=1.0)

    events = sent(effects)
    assert effects[0] == Announce(State.LISTENING)
    assert events.count(ev.AudioComplete()) == 1
    assert events[-1] == ev.AudioComplete()
    appends = [e for e in events if isinstance(e, ev.AudioAppend)]
    assert all(len(a.audio) == 1920 for a in appends[:-1])
    assert 0 < len(appends[-1].audio) <= 1920
    assert Announce(State.THINKING) in effects


def test_the_appended_audio_holds_all_the_speech() -> None:
    """Every speech frame goes upstream, with the pre-roll before it."""
    session = idle_session()

    audio = appended(talk(session, speech_ms=400, silence_ms=300, now=1.0))

    assert audio.count(SPEECH) == 20


def test_reply_audio_plays_and_the_turn_ends_when_playback_drains() -> None:
    """Deltas play, completion waits for the speaker, then the device is idle again."""
    session = thinking_session()

    assert session.received(ev.ChatStarted(CHAT, CONV), 2.0) == [RememberConversation(CONV)]
    effects = session.received(ev.AudioDelta(CHAT, b"ab"), 2.1)
    assert effects == [Announce(State.SPEAKING), Play(b"ab")]
    assert session.received(ev.AudioCompleted(CHAT), 2.2) == [WatchDrain()]
    assert session.received(ev.ChatCompleted(CHAT, CONV), 2.3) == [WatchDrain()]

    done = session.playback_drained(3.0)

    assert done[-1] == Announce(State.IDLE)
    [turn] = [e for e in done if isinstance(e, Emit)]
    assert turn.type == "turn"
    assert turn.fields["chat_id"] == CHAT
    assert turn.fields["first_audio_ms"] == 1100


def test_reply_audio_split_mid_sample_plays_as_whole_samples() -> None:
    """Deltas of odd length are played as whole samples: together, the same bytes in the
    same order as the stream they split."""
    session = thinking_session()
    session.received(ev.ChatStarted(CHAT, CONV), 2.0)
    stream = bytes(range(1, 22))
    pieces = [stream[:3], stream[3:4], stream[4:9], stream[9:10], stream[10:]]

    played = [
        effect.pcm
        for piece in pieces
        for effect in session.received(ev.AudioDelta(CHAT, piece), 2.1)
        if isinstance(effect, Play)
    ]

    assert [len(pcm) for pcm in played] == [2, 2, 4, 2, 10]
    assert b"".join(played) == stream[:20]


def test_the_odd_byte_of_ended_audio_never_plays() -> None:
    """A byte left over when a piece of audio completes, or when the reply is talked over,
    is dropped, not put before the next audio (here spoken text: every piece is chat "0")."""
    session = idle_session()
    session.say(["One.", "Two."], 1.0)
    session.received(ev.AudioDelta("0", b"\x01\x02\x03"), 1.1)
    session.received(ev.AudioCompleted("0"), 1.2)  # the first piece ended mid-sample

    assert session.received(ev.AudioDelta("0", b"\x04\x05"), 1.3) == [Play(b"\x04\x05")]

    session.received(ev.AudioDelta("0", b"\x06"), 1.4)
    talk(session, speech_ms=400, silence_ms=0, now=1.5)  # the user talks over it
    assert session.state is State.LISTENING
    session.cancel(1.6)
    assert session.say(["Again."], 2.0)

    assert session.received(ev.AudioDelta("0", b"\x07\x08"), 2.1)[-1] == Play(b"\x07\x08")


def test_transcript_and_reply_text_are_emitted() -> None:
    """The user's words and the bot's answer come out as events."""
    session = thinking_session()

    assert session.received(ev.TranscriptCompleted("hello"), 1.5) == [
        Emit("transcript", {"text": "hello"})
    ]
    answer = ev.MessageCompleted(CHAT, "assistant", "answer", "hi there", "text")
    question = ev.MessageCompleted(CHAT, "user", "question", "hello", "text")
    assert session.received(question, 1.6) == []
    assert session.received(answer, 1.7) == [Emit("reply", {"text": "hi there", "chat_id": CHAT})]


def test_speech_while_speaking_interrupts_the_reply() -> None:
    """Talking over the device cancels the chat, silences the speaker, and listens."""
    session = speaking_session()

    effects = talk(session, speech_ms=400, silence_ms=0, now=3.0)

    assert effects[:3] == [Send(ev.ChatCancel()), FlushPlayback(), Announce(State.LISTENING)]
    assert session.received(ev.AudioDelta(CHAT, b"late"), 3.1) == []
    assert session.dropped_deltas == 1


def test_late_deltas_of_a_cancelled_chat_are_dropped_in_the_next_turn() -> None:
    """After barge-in, the old chat's audio never plays, even once the new turn waits."""
    session = speaking_session()
    talk(session, speech_ms=300, silence_ms=300, now=3.0)
    assert session.state is State.THINKING

    assert session.received(ev.AudioDelta(CHAT, b"late"), 3.5) == []
    assert session.received(ev.ChatCompleted(CHAT, CONV), 3.6) == []
    assert session.state is State.THINKING


def test_without_barge_in_speech_during_the_reply_is_ignored() -> None:
    """barge_in off: the reply plays on over the user's voice."""
    session = idle_session(barge_in=False)
    talk(session, speech_ms=400, silence_ms=300, now=1.0)
    session.received(ev.AudioDelta(CHAT, b"ab"), 2.0)

    assert talk(session, speech_ms=200, silence_ms=0, now=2.5) == []
    assert session.state is State.SPEAKING


def test_no_reply_in_time_gives_an_error_and_idle() -> None:
    """A silent server: the turn is cancelled, an error earcon plays, the device idles."""
    session = thinking_session()
    deadline = session.next_deadline()
    assert deadline is not None

    assert session.handle_timer(deadline - 0.01) == []
    effects = session.handle_timer(deadline)

    assert effects[0] == Send(ev.ChatCancel())
    assert PlayEarcon("error") in effects
    assert effects[-1] == Announce(State.IDLE)
    assert [e.type for e in effects if isinstance(e, Emit)] == ["error"]


def test_an_endless_utterance_is_committed_at_the_limit() -> None:
    """Speech that never stops is committed after max_utterance_s."""
    session = idle_session(max_utterance_s=2.0)
    talk(session, speech_ms=200, silence_ms=0, now=1.0)
    assert session.next_deadline() == 3.0

    effects = session.handle_timer(3.0)

    assert Send(ev.AudioComplete()) in effects
    assert session.state is State.THINKING


def test_an_unanswered_chat_update_reconnects() -> None:
    """chat.update without chat.updated in time asks for a new connection."""
    session = new_session(configure_timeout_s=5.0)
    session.connected(0.0)

    assert session.handle_timer(5.0) == [Reconnect("chat.update went unanswered")]


def test_a_drop_mid_reply_flushes_and_reconfigures_with_the_conversation() -> None:
    """Losing the socket while speaking stops the audio; the next session keeps context."""
    session = speaking_session()

    effects = session.disconnected(3.0)

    assert effects[0] == FlushPlayback()
    assert effects[-1] == Announce(State.CONNECTING)
    [update] = sent(session.connected(3.1))
    assert isinstance(update, ev.ChatUpdate)
    assert update.data["chat_config"]["conversation_id"] == CONV


def test_token_errors_ask_for_a_refresh() -> None:
    """Error 4100 on an open session means: refresh the token and reconnect."""
    session = idle_session()

    effects = session.received(ev.ServerError(4100, "token expired", "L"), 1.0)

    assert effects[-1] == TokenRejected()


def test_an_error_while_configuring_reconnects() -> None:
    """A refused chat.update starts over on a new connection."""
    session = new_session()
    session.connected(0.0)

    effects = session.received(ev.ServerError(4000, "bad config", "L"), 0.1)

    assert isinstance(effects[-1], Reconnect)


def test_an_error_mid_turn_ends_the_turn_with_its_logid() -> None:
    """A server error while thinking is reported with its logid and hint, and idles."""
    session = thinking_session()

    effects = session.received(ev.ServerError(4015, "not published", "LOG1"), 2.0)

    [error] = [e for e in effects if isinstance(e, Emit)]
    assert error.fields["logid"] == "LOG1"
    assert "publish" in error.fields["hint"]
    assert session.state is State.IDLE


def test_say_sends_each_piece_and_plays_proactive_audio() -> None:
    """say() asks Coze to speak; chat id "0" audio plays from IDLE and ends on drain."""
    session = idle_session()

    effects = session.say(["One.", "Two."], 1.0)

    assert sent(effects) == [ev.GenerateAudio("One."), ev.GenerateAudio("Two.")]
    assert session.received(ev.AudioDelta("0", b"xy"), 1.2) == [
        Announce(State.SPEAKING),
        Play(b"xy"),
    ]
    assert session.received(ev.AudioCompleted("0"), 1.3) == [WatchDrain()]
    assert session.playback_drained(1.4) == [Announce(State.IDLE)]


def test_muted_microphone_sends_nothing() -> None:
    """While muted no audio goes upstream, and the state is announced again."""
    session = idle_session()

    assert session.set_muted(True, 1.0) == [Announce(State.IDLE)]
    assert talk(session, speech_ms=400, silence_ms=300, now=1.1) == []
    assert session.set_muted(False, 2.0) == [Announce(State.IDLE)]
    assert talk(session, speech_ms=400, silence_ms=300, now=2.1) != []


def test_muting_mid_utterance_clears_it() -> None:
    """Mute while listening drops the half-sent utterance."""
    session = idle_session()
    talk(session, speech_ms=200, silence_ms=0, now=1.0)

    effects = session.set_muted(True, 1.2)

    assert effects[0] == Send(ev.AudioClear())
    assert session.state is State.IDLE


def test_listen_opens_a_turn_without_speech() -> None:
    """The listen command plays the earcon and streams from the pre-roll at once."""
    session = idle_session()

    effects = session.listen(1.0)

    assert effects[0] == PlayEarcon("listening")
    assert Announce(State.LISTENING) in effects
    assert session.state is State.LISTENING


def test_cancel_stops_listening_and_replies() -> None:
    """cancel clears an utterance, or cancels a reply, and idles."""
    listening = idle_session()
    talk(listening, speech_ms=200, silence_ms=0, now=1.0)
    assert listening.cancel(1.1) == [Send(ev.AudioClear()), Announce(State.IDLE)]

    speaking = speaking_session()
    assert speaking.cancel(3.0) == [Send(ev.ChatCancel()), FlushPlayback(), Announce(State.IDLE)]


def test_client_plugins_are_answered_so_the_chat_goes_on() -> None:
    """Without tools, a requires_action chat gets an error output for each call at once."""
    session = thinking_session()
    action = ev.ChatRequiresAction(CHAT, CONV, (ev.ToolCall("t1", "lamp", "{}"),))

    [effect] = session.received(action, 2.0)

    assert isinstance(effect, Send)
    assert isinstance(effect.event, ev.SubmitToolOutputs)
    assert effect.event.outputs[0][0] == "t1"


def test_a_failed_chat_ends_the_turn() -> None:
    """conversation.chat.failed reports the error and idles."""
    session = thinking_session()
    session.received(ev.ChatStarted(CHAT, CONV), 2.0)

    effects = session.received(ev.ChatFailed(CHAT, CONV, 5000, "boom"), 2.1)

    assert PlayEarcon("error") in effects
    assert session.state is State.IDLE


def test_a_stalled_reply_gives_up_after_the_queued_audio_played() -> None:
    """Mid-reply silence from the server ends the turn only after what was queued."""
    session = speaking_session(now=2.0)  # 0.1 s of audio queued at t=2.0
    deadline = session.next_deadline()

    assert deadline is not None
    assert abs(deadline - (2.0 + 0.1 + 15.0)) < 1e-9
    effects = session.handle_timer(deadline)
    assert session.state is State.IDLE
    assert [e.type for e in effects if isinstance(e, Emit)] == ["error"]


def test_server_vad_streams_everything_and_follows_the_server() -> None:
    """With server_vad, audio streams continuously and Coze's speech events drive turns."""
    session = new_session(server_vad=True)
    [update] = sent(session.connected(0.0))
    assert isinstance(update, ev.ChatUpdate)
    assert update.data["turn_detection"] == {"type": "server_vad", "silence_duration_ms": 700}
    session.received(ev.ChatUpdated({}), 0.1)

    assert sent(session.audio_captured(SILENCE, 0.2)) == [ev.AudioAppend(SILENCE)]
    assert session.received(ev.ServerSpeechStarted(), 0.3) == [Announce(State.LISTENING)]
    assert session.received(ev.ServerSpeechStopped(), 1.0) == [Announce(State.THINKING)]
    session.received(ev.ChatStarted(CHAT, CONV), 1.1)
    session.received(ev.AudioDelta(CHAT, b"ab"), 1.2)

    effects = session.received(ev.ServerSpeechStarted(), 1.5)

    assert effects == [FlushPlayback(), Announce(State.LISTENING)]


def test_chat_canceled_by_the_server_silences_the_speaker() -> None:
    """A server-side cancel while speaking flushes playback and idles."""
    session = speaking_session()

    assert session.received(ev.ChatCanceled(1, "user speech"), 3.0) == [
        FlushPlayback(),
        Announce(State.IDLE),
    ]


def test_chat_updated_remembers_the_conversation() -> None:
    """The conversation id Coze confirms is kept and persisted."""
    session = new_session()
    session.connected(0.0)

    effects = session.received(ev.ChatUpdated({"chat_config": {"conversation_id": "42"}}), 0.1)

    assert effects == [RememberConversation("42"), Announce(State.IDLE)]


def test_new_conversation_forgets_the_id_and_reconnects() -> None:
    """new_conversation drops the id; the next chat.update carries none."""
    session = speaking_session()

    effects = session.new_conversation(3.0)

    assert effects[0] == RememberConversation(None)
    assert isinstance(effects[1], Reconnect)
    session.disconnected(3.1)
    [update] = sent(session.connected(3.2))
    assert isinstance(update, ev.ChatUpdate)
    assert "conversation_id" not in update.data["chat_config"]


WAKE = b"\x7f\x7f" * (FRAME // 2)  # a frame the fake spotter takes for the wake word


class FakeSpotter:
    """Detects the wake word at the end of any block that contains a WAKE frame."""

    def __init__(self) -> None:
        self.audio_s = 0.0
        self.last_detection_s: float | None = None

    def process(self, pcm: bytes) -> bool:
        at = pcm.rfind(WAKE)
        self.audio_s += len(pcm) / 32000
        if at < 0:
            return False
        self.last_detection_s = self.audio_s - (len(pcm) - at - len(WAKE)) / 32000
        return True


def wake_session(**settings: object) -> Session:
    endpointer = Endpointer(LoudIsSpeech(), pre_roll_ms=100, start_ms=60, end_silence_ms=200)
    session = Session(SessionSettings(**settings), endpointer, wake=FakeSpotter())  # type: ignore[arg-type]
    session.connected(0.0)
    session.received(ev.ChatUpdated({}), 0.0)
    return session


def test_with_a_wake_word_speech_alone_opens_no_turn() -> None:
    """Other speech in the room never goes upstream."""
    session = wake_session()

    assert talk(session, speech_ms=600, silence_ms=300, now=1.0) == []
    assert session.state is State.IDLE


def test_the_wake_word_opens_a_turn_with_only_the_audio_after_it() -> None:
    """After the wake word, the earcon plays and only what follows is appended."""
    session = wake_session()
    block = SPEECH * 2 + WAKE + SPEECH * 2  # the wake word, then the question begins

    effects = session.audio_captured(block, 1.0)
    effects += talk(session, speech_ms=300, silence_ms=300, now=1.1)

    assert effects[0] == PlayEarcon("wake")
    assert session.state is State.THINKING
    audio = appended(effects)
    assert WAKE not in audio
    assert audio.startswith(SPEECH * 2)


def test_a_follow_up_inside_the_window_needs_no_wake_word() -> None:
    """After a reply, speech opens a turn for follow_up_s, and not after."""
    session = wake_session(follow_up_s=5.0)
    session.audio_captured(WAKE, 1.0)
    talk(session, speech_ms=300, silence_ms=300, now=1.1)
    session.received(ev.ChatStarted(CHAT, CONV), 2.0)
    session.received(ev.AudioDelta(CHAT, b"ab"), 2.0)
    session.received(ev.ChatCompleted(CHAT, CONV), 2.1)
    session.playback_drained(3.0)
    assert session.next_deadline() == 8.0

    effects = talk(session, speech_ms=300, silence_ms=0, now=4.0)

    assert Announce(State.LISTENING) in effects


def test_after_the_window_a_wake_word_is_needed_again() -> None:
    """Once the follow-up window closed, speech alone opens nothing."""
    session = wake_session(follow_up_s=5.0)
    session.audio_captured(WAKE, 1.0)
    talk(session, speech_ms=300, silence_ms=300, now=1.1)
    session.received(ev.ChatStarted(CHAT, CONV), 2.0)
    session.received(ev.AudioDelta(CHAT, b"ab"), 2.0)
    session.received(ev.ChatCompleted(CHAT, CONV), 2.1)
    session.playback_drained(3.0)

    session.handle_timer(8.0)

    assert talk(session, speech_ms=300, silence_ms=0, now=8.5) == []


def test_spoken_text_opens_no_follow_up_window() -> None:
    """After `say` has played, speech alone opens no turn: only a reply may be answered."""
    session = wake_session(follow_up_s=5.0)
    session.say(["Dinner is ready."], 1.0)
    session.received(ev.AudioDelta("0", b"ab"), 1.1)
    session.received(ev.AudioCompleted("0"), 1.2)
    assert session.playback_drained(2.0) == [Announce(State.IDLE)]

    assert session.next_deadline() is None
    assert talk(session, speech_ms=300, silence_ms=0, now=2.5) == []
    assert session.state is State.IDLE


def test_the_wake_word_during_a_reply_cancels_it() -> None:
    """Saying the wake word over the reply stops it, even though speech alone would not."""
    session = wake_session()
    session.audio_captured(WAKE, 1.0)
    talk(session, speech_ms=300, silence_ms=300, now=1.1)
    session.received(ev.ChatStarted(CHAT, CONV), 2.0)
    session.received(ev.AudioDelta(CHAT, b"ab" * 4800), 2.0)
    assert talk(session, speech_ms=300, silence_ms=0, now=2.2) == []

    effects = session.audio_captured(WAKE, 2.5)

    assert effects[:3] == [PlayEarcon("wake"), Send(ev.ChatCancel()), FlushPlayback()]
    assert session.state is State.LISTENING


def test_while_speaking_a_short_sound_does_not_interrupt() -> None:
    """The echo-safe fallback: barge-in needs barge_in_start_ms of speech, not start_ms."""
    session = new_session(start_ms=60, barge_in_start_ms=200)
    session.connected(0.0)
    session.received(ev.ChatUpdated({}), 0.0)
    talk(session, speech_ms=400, silence_ms=300, now=1.0)
    session.received(ev.AudioDelta(CHAT, b"ab" * 4800), 2.0)
    assert session.state is State.SPEAKING

    assert talk(session, speech_ms=100, silence_ms=200, now=2.2) == []
    effects = talk(session, speech_ms=300, silence_ms=0, now=2.5)

    assert Send(ev.ChatCancel()) in effects
    talk(session, speech_ms=0, silence_ms=300, now=3.0)
    session.received(ev.ChatStarted("2", CONV), 3.1)
    session.received(ev.AudioDelta("2", b"ab"), 3.1)
    session.received(ev.ChatCompleted("2", CONV), 3.2)
    session.playback_drained(3.3)
    assert Announce(State.LISTENING) in talk(session, speech_ms=100, silence_ms=0, now=4.0)


def replying_session(**settings: object) -> Session:
    """A session with ``settings`` that has heard a turn and now plays its reply."""
    session = new_session(**settings)
    session.connected(0.0)
    session.received(ev.ChatUpdated({}), 0.0)
    talk(session, speech_ms=400, silence_ms=300, now=1.0)
    session.received(ev.AudioDelta(CHAT, b"ab" * 4800), 2.0)
    assert session.state is State.SPEAKING
    return session


def gated_speaking_session(**settings: object) -> Session:
    return replying_session(start_ms=60, barge_in_start_ms=100, **settings)


def test_while_speaking_only_speech_above_the_level_gate_interrupts() -> None:
    """barge_in_min_rms: quieter audio (the device's own echo) counts as silence."""
    session = gated_speaking_session(barge_in_min_rms=1000.0)  # SPEECH has an RMS of 272
    assert talk(session, speech_ms=600, silence_ms=0, now=2.2) == []
    assert session.state is State.SPEAKING

    loud = b"\x00\x10" * (3 * FRAME // 2)  # RMS 4096
    effects = session.audio_captured(loud, 2.9) + session.audio_captured(loud, 2.96)
    assert Send(ev.ChatCancel()) in effects
    assert Announce(State.LISTENING) in effects


def test_half_duplex_nothing_said_interrupts_the_reply() -> None:
    """An infinite gate (no echo canceller): the reply plays on, however loud the room."""
    session = gated_speaking_session(barge_in_min_rms=math.inf)
    loud = b"\xff\x7f" * (3 * FRAME // 2)
    assert all(session.audio_captured(loud, 2.2 + i / 10) == [] for i in range(10))
    assert session.state is State.SPEAKING


def test_the_level_gate_does_not_apply_while_the_device_is_quiet() -> None:
    """A quiet voice still opens a turn when no reply plays."""
    session = idle_session(barge_in_min_rms=1000.0)
    effects = talk(session, speech_ms=200, silence_ms=0, now=1.0)
    assert Announce(State.LISTENING) in effects


def ducking_session(**settings: object) -> Session:
    """Speaking, with 40 ms of speech ducking the reply and 200 ms cutting it."""
    return replying_session(
        **{"barge_in_start_ms": 200, "barge_in_duck_ms": 40, "barge_in_min_rms": 100.0} | settings
    )


def test_the_first_speech_over_the_reply_ducks_it() -> None:
    """40 ms of speech lower the reply by 40 dB at once; nothing is cancelled yet."""
    session = ducking_session()

    effects = talk(session, speech_ms=60, silence_ms=0, now=2.2)

    assert effects == [DuckPlayback(-40.0)]
    assert session.state is State.SPEAKING


def test_a_ducked_reply_is_cut_once_the_speech_is_certain() -> None:
    """The user goes on talking: the reply is cancelled and flushed, the ducking undone."""
    session = ducking_session()
    talk(session, speech_ms=60, silence_ms=0, now=2.2)

    effects = talk(session, speech_ms=180, silence_ms=0, now=2.4)

    assert effects[:4] == [
        Send(ev.ChatCancel()),
        FlushPlayback(),
        DuckPlayback(0.0),
        Announce(State.LISTENING),
    ]


def test_a_ducked_reply_plays_on_at_its_volume_when_no_speech_follows() -> None:
    """A short sound (the device's own echo, say) costs a dip: the reply is restored."""
    session = ducking_session()
    talk(session, speech_ms=60, silence_ms=0, now=2.2)

    effects = talk(session, speech_ms=0, silence_ms=420, now=2.6)

    assert effects == [DuckPlayback(0.0)]
    assert session.state is State.SPEAKING
    assert talk(session, speech_ms=60, silence_ms=0, now=3.0) == [DuckPlayback(-40.0)]


def test_a_reply_that_ends_while_ducked_is_restored() -> None:
    """The next reply plays at the volume, whatever happened to this one."""
    session = ducking_session()
    talk(session, speech_ms=60, silence_ms=0, now=2.2)
    session.received(ev.ChatCompleted(CHAT, CONV), 2.3)

    effects = session.playback_drained(2.4)

    assert effects[-2:] == [DuckPlayback(0.0), Announce(State.IDLE)]


def test_muting_restores_a_ducked_reply() -> None:
    """A muted microphone hears nobody talking over the reply."""
    session = ducking_session()
    talk(session, speech_ms=60, silence_ms=0, now=2.2)

    assert session.set_muted(True, 2.3) == [DuckPlayback(0.0), Announce(State.SPEAKING)]


def test_nothing_ducks_the_reply_where_speech_may_not_interrupt_it() -> None:
    """Half-duplex (an infinite level gate), or barge-in off: the reply keeps its volume."""
    for session in (
        ducking_session(barge_in_min_rms=math.inf),
        ducking_session(barge_in=False),
    ):
        assert talk(session, speech_ms=600, silence_ms=0, now=2.2) == []
        assert session.state is State.SPEAKING


def test_with_a_wake_word_speech_does_not_duck_the_reply() -> None:
    """Only the wake word interrupts a reply then, so only it may lower it."""
    session = wake_session(barge_in_duck_ms=40, barge_in_start_ms=200)
    session.audio_captured(WAKE, 1.0)
    talk(session, speech_ms=400, silence_ms=300, now=1.1)
    session.received(ev.AudioDelta(CHAT, b"ab" * 4800), 2.0)
    assert session.state is State.SPEAKING

    assert talk(session, speech_ms=600, silence_ms=0, now=2.2) == []


def test_double_talk_ducks_the_reply_before_the_speech_is_heard() -> None:
    """The canceller's evidence lowers the reply at once (its cleaned audio would say
    speech only later); more evidence while ducked changes nothing."""
    session = ducking_session()

    assert session.double_talk(2.2) == [DuckPlayback(-40.0)]
    assert session.double_talk(2.22) == []
    assert session.state is State.SPEAKING
    assert session.next_deadline() == 2.22 + 0.3


def test_a_duck_on_double_talk_alone_ends_after_the_hold() -> None:
    """No speech follows the evidence: the reply is restored double_talk_hold_s after the
    last of it, and may be ducked again."""
    session = ducking_session()
    session.double_talk(2.2)
    session.double_talk(2.3)

    assert session.handle_timer(2.55) == []
    assert session.handle_timer(2.6) == [DuckPlayback(0.0)]
    assert (session.next_deadline() or math.inf) > 10.0  # only the reply's own
    assert session.double_talk(3.0) == [DuckPlayback(-40.0)]


def test_a_duck_on_double_talk_stays_while_the_speech_is_likely() -> None:
    """The endpointer took over: the hold's end restores nothing; the cut or the speech
    fading decides, as for a duck the speech made."""
    session = ducking_session()
    session.double_talk(2.2)
    assert talk(session, speech_ms=60, silence_ms=0, now=2.25) == []  # likely: ducked already

    assert session.handle_timer(2.5) == []
    effects = talk(session, speech_ms=180, silence_ms=0, now=2.6)
    assert effects[:3] == [Send(ev.ChatCancel()), FlushPlayback(), DuckPlayback(0.0)]


def test_speech_fading_while_double_talk_is_fresh_leaves_the_duck_to_the_hold() -> None:
    """The canceller still hears someone: the duck lasts until its hold ends."""
    session = ducking_session()
    talk(session, speech_ms=60, silence_ms=0, now=2.2)
    session.double_talk(2.5)

    assert talk(session, speech_ms=0, silence_ms=420, now=2.6) == []
    assert session.handle_timer(2.8) == [DuckPlayback(0.0)]


def test_double_talk_ducks_only_a_reply_that_may_be_talked_over() -> None:
    """Not while idle or listening, not while muted, not without ducking, not half-duplex,
    not with barge-in off, not when only the wake word interrupts."""
    assert idle_session().double_talk(1.0) == []
    muted = ducking_session()
    muted.set_muted(True, 2.1)
    assert muted.double_talk(2.2) == []
    for session in (
        ducking_session(barge_in_duck_ms=0),
        ducking_session(barge_in_min_rms=math.inf),
        ducking_session(barge_in=False),
    ):
        assert session.double_talk(2.2) == []
    session = wake_session(barge_in_duck_ms=40, barge_in_start_ms=200)
    session.audio_captured(WAKE, 1.0)
    talk(session, speech_ms=400, silence_ms=300, now=1.1)
    session.received(ev.AudioDelta(CHAT, b"ab" * 4800), 2.0)
    assert session.state is State.SPEAKING
    assert session.double_talk(2.2) == []


def test_captured_audio_can_wait_only_while_nobody_waits_on_the_device() -> None:
    """Batched microphone audio is allowed while connecting, muted or idle, never during a
    turn or a reply, nor with server_vad (Coze's VAD hears the stream as it comes)."""
    session = new_session()
    assert session.audio_can_wait  # CONNECTING: the audio is dropped
    session = idle_session()
    assert session.audio_can_wait
    talk(session, speech_ms=200, silence_ms=0, now=1.0)
    assert session.state is State.LISTENING
    assert not session.audio_can_wait
    session.set_muted(True, 1.5)
    assert session.audio_can_wait
    assert not thinking_session().audio_can_wait
    assert not speaking_session().audio_can_wait
    assert not idle_session(server_vad=True).audio_can_wait
