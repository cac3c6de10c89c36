"""The wake gate: when speech alone may open a turn."""

from __future__ import annotations

import re

import pytest

from coze_edge.core.wake import WakeGate, WakeManifest, parse_manifest


def replied_gate(now: float = 10.0, follow_up_s: float = 5.0) -> WakeGate:
    """A gate with a wake word, whose reply finished at ``now``."""
    gate = WakeGate(enabled=True, follow_up_s=follow_up_s)
    gate.woke(now - 8)
    gate.reply_finished(now)
    return gate


def test_without_a_wake_word_speech_always_opens_a_turn() -> None:
    """With the wake word off, the gate is always armed and never sets a deadline."""
    gate = WakeGate(enabled=False)
    gate.reply_finished(3.0)

    assert gate.armed(0.0)
    assert gate.armed(1000.0)
    assert gate.next_deadline() is None


def test_with_a_wake_word_speech_alone_opens_nothing() -> None:
    """With the wake word on and no reply yet, speech alone does not open a turn."""
    gate = WakeGate(enabled=True)

    assert not gate.armed(0.0)
    assert gate.next_deadline() is None


def test_speech_may_answer_a_reply_within_the_follow_up_window() -> None:
    """After a reply, speech may open a turn until follow_up_s later, and no longer."""
    gate = replied_gate(now=10.0, follow_up_s=5.0)

    assert gate.next_deadline() == 15.0
    assert gate.armed(10.0)
    assert gate.armed(14.99)
    assert not gate.armed(15.0)


def test_a_turn_uses_up_the_window() -> None:
    """Once a turn opened in the window, speech needs the wake word again."""
    gate = replied_gate(now=10.0)

    gate.turn_started(11.0)

    assert not gate.armed(12.0)
    assert gate.next_deadline() is None


def test_waking_uses_up_the_window() -> None:
    """A wake word inside the window opens the turn; the window does not stay open."""
    gate = replied_gate(now=10.0)

    gate.woke(11.0)

    assert not gate.armed(11.5)
    assert gate.next_deadline() is None


def test_the_timer_closes_the_window_once() -> None:
    """The timer closes the window when its end has come, and says so only once."""
    gate = replied_gate(now=10.0)

    assert not gate.handle_timer(14.0)
    assert gate.next_deadline() == 15.0
    assert gate.handle_timer(15.0)
    assert gate.next_deadline() is None
    assert not gate.handle_timer(16.0)


def test_a_later_reply_moves_the_window() -> None:
    """Each finished reply opens the window anew from its own end."""
    gate = replied_gate(now=10.0)

    gate.reply_finished(12.0)

    assert gate.next_deadline() == 17.0


def test_no_follow_up_means_the_wake_word_every_time() -> None:
    """With follow_up_s 0, no window opens after a reply."""
    gate = replied_gate(now=10.0, follow_up_s=0)

    assert not gate.armed(10.0)
    assert gate.next_deadline() is None


def test_negative_follow_up_is_refused() -> None:
    """A window cannot last less than nothing."""
    with pytest.raises(ValueError, match="follow_up_s"):
        WakeGate(enabled=True, follow_up_s=-1)


# --- custom models: microWakeWord's manifest ---------------------------------------------

MANIFEST = {
    "type": "micro",
    "wake_word": "Computer",
    "model": "computer.tflite",
    "version": 2,
    "micro": {"probability_cutoff": 0.9, "sliding_window_size": 5, "feature_step_size": 10},
}


def with_changes(**changes: object) -> dict[str, object]:
    return {**MANIFEST, **changes}


def test_a_manifest_gives_the_model_its_name_and_settings() -> None:
    """The name is the .tflite's stem; the phrase, cutoff and window come along."""
    assert parse_manifest(MANIFEST) == WakeManifest(
        "computer", "Computer", "computer.tflite", 0.9, 5
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "expected a JSON object"),
        (with_changes(type="openwakeword"), '"type" is \'openwakeword\', not "micro"'),
        (with_changes(wake_word=" "), 'no "wake_word"'),
        (with_changes(model="computer.onnx"), "must name its .tflite file"),
        (with_changes(micro=None), 'no "micro" settings'),
        (
            with_changes(micro={"probability_cutoff": 1.5, "sliding_window_size": 5}),
            "probability_cutoff",
        ),
        (
            with_changes(micro={"probability_cutoff": 0.5, "sliding_window_size": True}),
            "sliding_window_size",
        ),
        (
            with_changes(
                micro={"probability_cutoff": 0.5, "sliding_window_size": 5, "feature_step_size": 20}
            ),
            "only microWakeWord's 10 ms models",
        ),
        (with_changes(model="okay_nabu.tflite"), "as a built-in wake word"),
        (with_changes(model="hey coze!.tflite"), "must be 1 to 64 letters"),
    ],
)
def test_what_is_wrong_with_a_manifest_is_said(data: object, message: str) -> None:
    """Each way a file is not a usable microWakeWord manifest has its own message."""
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_manifest(data)
