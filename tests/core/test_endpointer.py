"""The endpointer, driven by a scripted detector: exact events, exact audio bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coze_edge.core.endpointer import (
    Endpointer,
    EndpointEvent,
    SpeechContinues,
    SpeechEnded,
    SpeechLikely,
    SpeechStarted,
    SpeechUnlikely,
)

FRAME = 640  # 20 ms at 16 kHz mono s16le


def frame(i: int) -> bytes:
    """Frame number ``i``, recognisable by its content."""
    return i.to_bytes(2, "little") * (FRAME // 2)


def frames(start: int, stop: int) -> bytes:
    return b"".join(frame(i) for i in range(start, stop))


class Scripted:
    """A detector that answers from a script, one decision per frame, and checks the order."""

    def __init__(self, script: str) -> None:
        self.script = script  # "#" speech, "." silence
        self.seen = 0

    def is_speech(self, data: bytes) -> bool:
        assert data == frame(self.seen), "frames reach the detector whole and in order"
        decision = self.script[self.seen] == "#"
        self.seen += 1
        return decision


def run(
    script: str, *, pre_roll_ms: int = 300, start_ms: int = 60, end_silence_ms: int = 700
) -> list[EndpointEvent]:
    """Feed one frame per script character; the events in order."""
    endpointer = Endpointer(
        Scripted(script),
        pre_roll_ms=pre_roll_ms,
        start_ms=start_ms,
        end_silence_ms=end_silence_ms,
    )
    events: list[EndpointEvent] = []
    for i in range(len(script)):
        events += endpointer.feed(frame(i))
    return events


def edges(events: list[EndpointEvent]) -> list[EndpointEvent]:
    return [e for e in events if not isinstance(e, SpeechContinues)]


def test_onset_carries_the_pre_roll_and_the_onset_frames() -> None:
    """Three speech frames (60 ms) start an utterance holding 100 ms before them and them."""
    events = run("." * 10 + "###", pre_roll_ms=100, start_ms=60)

    assert events == [SpeechStarted(frames(5, 13))]


def test_a_short_blip_never_starts_an_utterance() -> None:
    """Speech shorter than start_ms, however often, with gaps wider than the window is ignored."""
    assert run("#....." * 5 + "##....." * 5, start_ms=60) == []


def test_onset_tolerates_gaps_inside_the_window() -> None:
    """60 ms of speech spread over the last 120 ms is an onset, starting at its first frame."""
    events = run("....#.#.#", pre_roll_ms=40, start_ms=60)

    assert events == [SpeechStarted(frames(2, 9))]


def test_continuing_frames_follow_the_onset_one_by_one() -> None:
    """After the onset every frame, speech or not, comes as SpeechContinues."""
    events = run("###" + "#.#", pre_roll_ms=0, start_ms=60)

    assert events == [
        SpeechStarted(frames(0, 3)),
        SpeechContinues(frame(3)),
        SpeechContinues(frame(4)),
        SpeechContinues(frame(5)),
    ]


def test_end_comes_after_the_trailing_silence_which_is_sent_too() -> None:
    """700 ms (35 frames) of silence end the utterance; those frames go out first."""
    script = "###" + "#" * 5 + "." * 35 + "...."
    events = run(script, pre_roll_ms=0, start_ms=60, end_silence_ms=700)

    assert events == [
        SpeechStarted(frames(0, 3)),
        *(SpeechContinues(frame(i)) for i in range(3, 43)),
        SpeechEnded(),
    ]


def test_speech_inside_the_pause_restarts_the_silence_count() -> None:
    """A pause shorter than end_silence_ms, then speech, keeps the utterance open."""
    script = "###" + "." * 9 + "#" + "." * 10
    events = run(script, pre_roll_ms=0, start_ms=60, end_silence_ms=200)

    assert edges(events) == [SpeechStarted(frames(0, 3)), SpeechEnded()]
    assert len(events) == 2 + len(script) - 3
    assert events[-2] == SpeechContinues(frame(len(script) - 1))


def test_a_second_utterance_starts_fresh_after_the_first_ends() -> None:
    """After SpeechEnded a new onset carries only audio not yet handed out."""
    script = "###" + "." * 5 + "...." + "###"
    events = run(script, pre_roll_ms=200, start_ms=60, end_silence_ms=100)

    assert edges(events) == [
        SpeechStarted(frames(0, 3)),
        SpeechEnded(),
        SpeechStarted(frames(8, 15)),
    ]


def test_blocks_of_any_size_give_the_same_events_as_single_frames() -> None:
    """Audio fed in odd-sized blocks is split into frames, the remainder kept for later."""
    script = "...." + "####" + "." * 10 + "#"
    audio = frames(0, len(script))
    endpointer = Endpointer(Scripted(script), pre_roll_ms=60, start_ms=60, end_silence_ms=200)
    events: list[EndpointEvent] = []
    for i in range(0, len(audio), 1000):
        events += endpointer.feed(audio[i : i + 1000])

    assert events == run(script, pre_roll_ms=60, start_ms=60, end_silence_ms=200)


def test_force_start_opens_an_utterance_with_the_pre_roll() -> None:
    """The listen command starts a turn at once, carrying the last pre_roll_ms of audio."""
    endpointer = Endpointer(Scripted("." * 20), pre_roll_ms=100)
    for i in range(10):
        assert endpointer.feed(frame(i)) == []

    assert endpointer.force_start() == SpeechStarted(frames(5, 10))
    assert endpointer.in_speech
    assert endpointer.feed(frame(10)) == [SpeechContinues(frame(10))]


def test_after_force_start_silence_is_allowed_until_the_user_begins() -> None:
    """Before the first word the grace period applies, after it end_silence_ms."""
    script = "." * 9 + "##" + "." * 5
    endpointer = Endpointer(Scripted(script), end_silence_ms=100, listen_grace_ms=200)
    endpointer.force_start()
    events: list[EndpointEvent] = []
    for i in range(len(script)):
        events += endpointer.feed(frame(i))

    assert edges(events) == [SpeechEnded()]
    assert events[-2] == SpeechContinues(frame(15))  # 5 frames = 100 ms after the speech

    silent = Endpointer(Scripted("." * 10), end_silence_ms=100, listen_grace_ms=200)
    silent.force_start()
    ended = [e for i in range(10) for e in silent.feed(frame(i))]
    assert ended[-1] == SpeechEnded()
    assert len(ended) == 11  # 10 frames = the 200 ms grace, then the end


def test_reset_forgets_the_pre_roll_and_the_utterance() -> None:
    """After reset nothing heard before is handed out again."""
    endpointer = Endpointer(Scripted("." * 5 + "###"), pre_roll_ms=100)
    for i in range(4):
        endpointer.feed(frame(i))
    endpointer.feed(frame(4)[:100])  # half a frame pending
    endpointer.reset()

    assert not endpointer.in_speech
    assert endpointer.force_start() == SpeechStarted(b"")


def test_reset_ends_an_utterance_without_an_event() -> None:
    """reset in the middle of speech leaves the endpointer waiting for a new onset."""
    endpointer = Endpointer(Scripted("###" + "."), pre_roll_ms=0)
    events = [e for i in range(3) for e in endpointer.feed(frame(i))]
    assert endpointer.in_speech
    endpointer.reset()

    assert events == [SpeechStarted(frames(0, 3))]
    assert endpointer.feed(frame(3)) == []
    assert not endpointer.in_speech


def test_raised_start_threshold_needs_more_speech() -> None:
    """With start_ms raised to 200 ms (echo-safe), 60 ms of speech no longer starts a turn."""
    script = "###" + "." * 20 + "#" * 10
    endpointer = Endpointer(Scripted(script), pre_roll_ms=0)
    endpointer.set_start_ms(200)
    events = [e for i in range(len(script)) for e in endpointer.feed(frame(i))]

    assert events == [SpeechStarted(frames(23, 33))]


def test_lowering_the_threshold_keeps_older_frames_as_pre_roll() -> None:
    """Shrinking the onset window moves the frames that fall out of it into the pre-roll."""
    script = "." * 20 + "###"
    endpointer = Endpointer(Scripted(script), pre_roll_ms=100, start_ms=200)
    for i in range(20):
        endpointer.feed(frame(i))
    endpointer.set_start_ms(60)
    events = [e for i in range(20, 23) for e in endpointer.feed(frame(i))]

    assert events == [SpeechStarted(frames(15, 23))]


def test_negative_durations_are_rejected() -> None:
    """A negative duration is a ValueError naming the setting."""
    with pytest.raises(ValueError, match="pre_roll_ms"):
        Endpointer(Scripted(""), pre_roll_ms=-1)
    with pytest.raises(ValueError, match="start_ms"):
        Endpointer(Scripted(""), start_ms=-1)
    with pytest.raises(ValueError, match="end_silence_ms"):
        Endpointer(Scripted(""), end_silence_ms=-20)
    with pytest.raises(ValueError, match="frame_ms"):
        Endpointer(Scripted(""), frame_ms=0)


@given(
    st.text(alphabet="#.", max_size=120),
    st.integers(1, 2000),
    st.sampled_from([0, 40, 300]),
    st.sampled_from([20, 60, 100]),
    st.sampled_from([40, 200]),
)
def test_utterances_are_contiguous_pieces_of_the_input_in_order(
    script: str, block: int, pre_roll_ms: int, start_ms: int, end_silence_ms: int
) -> None:
    """Whatever the decisions and block sizes, each utterance is a slice of the input."""
    audio = frames(0, len(script))
    endpointer = Endpointer(
        Scripted(script),
        pre_roll_ms=pre_roll_ms,
        start_ms=start_ms,
        end_silence_ms=end_silence_ms,
    )
    utterances: list[bytearray] = []
    for i in range(0, len(audio), block):
        for event in endpointer.feed(audio[i : i + block]):
            match event:
                case SpeechStarted(data):
                    utterances.append(bytearray(data))
                case SpeechContinues(data):
                    utterances[-1] += data
                case SpeechEnded():
                    pass

    end = 0
    for utterance in utterances:
        offset = audio.find(utterance, end)
        assert offset >= end, "each utterance follows the previous one"
        assert offset % FRAME == 0
        end = offset + len(utterance)


def run_early(script: str, *, start_ms: int, early_ms: int) -> list[EndpointEvent]:
    """As ``run``, with speech reported likely from ``early_ms`` on: the edges only."""
    endpointer = Endpointer(Scripted(script), pre_roll_ms=0, start_ms=start_ms)
    endpointer.set_early_ms(early_ms)
    events: list[EndpointEvent] = []
    for i in range(len(script)):
        events += endpointer.feed(frame(i))
    return edges(events)


def test_speech_is_likely_before_it_is_an_onset() -> None:
    """40 ms of speech is likely speech; the onset follows at start_ms, with its audio."""
    events = run_early("...##.###", start_ms=100, early_ms=40)

    assert events == [SpeechLikely(), SpeechStarted(frames(3, 9))]


def test_likely_speech_that_leaves_the_onset_window_is_unlikely() -> None:
    """A 40 ms sound is likely speech until it slides out of the 200 ms window; then again."""
    script = "..##" + "." * 12 + "##"

    assert run_early(script, start_ms=100, early_ms=40) == [
        SpeechLikely(),  # frame 3
        SpeechUnlikely(),  # frame 12: frame 2 left the window, one speech frame is in it
        SpeechLikely(),  # frame 17
    ]


def test_speech_is_never_likely_without_early_ms() -> None:
    """early_ms 0 (the default): only onsets are reported."""
    assert run_early("...##.###", start_ms=100, early_ms=0) == [SpeechStarted(frames(3, 9))]


def test_a_reset_forgets_likely_speech() -> None:
    """After a reset, likely speech is not reported unlikely, and can be likely anew."""
    endpointer = Endpointer(Scripted("##" + "##" + "." * 12), pre_roll_ms=0, start_ms=100)
    endpointer.set_early_ms(40)
    assert edges(endpointer.feed(frames(0, 2))) == [SpeechLikely()]
    endpointer.reset()
    assert edges(endpointer.feed(frames(2, 4))) == [SpeechLikely()]
    assert edges(endpointer.feed(frames(4, 16))) == [SpeechUnlikely()]


def test_early_ms_must_not_be_negative() -> None:
    endpointer = Endpointer(Scripted(""), start_ms=100)
    with pytest.raises(ValueError, match="early_ms"):
        endpointer.set_early_ms(-20)
