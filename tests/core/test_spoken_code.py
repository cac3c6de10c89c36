"""Reading a login code aloud: which clips, in which order, with which pauses."""

from __future__ import annotations

import pytest

from coze_edge.core.spoken_code import (
    AFTER_SENTENCE_MS,
    BEFORE_REPEAT_MS,
    BETWEEN_CHARACTERS_MS,
    BETWEEN_GROUPS_MS,
    CLIP_NAMES,
    Clip,
    Pause,
    Speech,
    spoken_code,
)

SHORT = Pause(BETWEEN_CHARACTERS_MS)
GROUP = Pause(BETWEEN_GROUPS_MS)

BCDF_GHJK: Speech = [
    Clip("b"), SHORT, Clip("c"), SHORT, Clip("d"), SHORT, Clip("f"),
    GROUP,
    Clip("g"), SHORT, Clip("h"), SHORT, Clip("j"), SHORT, Clip("k"),
]  # fmt: skip


def twice(characters: Speech) -> Speech:
    """The body every code is read with: the intro, the code, "I repeat", the code."""
    return [
        Clip("intro"),
        Pause(AFTER_SENTENCE_MS),
        *characters,
        Pause(BEFORE_REPEAT_MS),
        Clip("repeat"),
        Pause(AFTER_SENTENCE_MS),
        *characters,
    ]


def test_a_code_is_introduced_then_read_twice_with_a_longer_pause_at_the_dash() -> None:
    """The simulator's 2x4 code: intro, eight letters in two groups, "I repeat", again."""
    assert spoken_code("BCDF-GHJK") == twice(BCDF_GHJK)


def test_lowercase_reads_like_uppercase() -> None:
    """A code typed in lowercase gives the same clips."""
    assert spoken_code("bcdf-ghjk") == spoken_code("BCDF-GHJK")


def test_letters_and_digits_mix_and_a_code_without_dash_has_only_short_pauses() -> None:
    """Coze's codes may hold digits; each digit is one clip, named by the digit."""
    assert spoken_code("A0Z9") == twice(
        [Clip("a"), SHORT, Clip("0"), SHORT, Clip("z"), SHORT, Clip("9")]
    )


def test_unknown_characters_are_skipped_and_stray_separators_add_no_pause() -> None:
    """Punctuation, accents and emoji say nothing; only a dash between characters pauses."""
    assert spoken_code(" -B.c!Dé\U0001f600f--G?H_jk- ") == spoken_code("BCDF-GHJK")


def test_white_space_separates_groups_like_a_dash() -> None:
    """A code written with a space between its groups is read with the same pauses."""
    assert spoken_code("BCDF GHJK") == spoken_code("BCDF-GHJK")


def test_a_renewed_code_first_says_the_last_one_expired() -> None:
    """After an expiry, the new code is announced as new before the intro."""
    assert spoken_code("BCDF-GHJK", renewed=True) == [
        Clip("new-code"),
        Pause(AFTER_SENTENCE_MS),
        *twice(BCDF_GHJK),
    ]


@pytest.mark.parametrize("minutes_left", [2.0, 1, 0.2, 0, -1])
def test_a_code_about_to_expire_ends_with_a_warning(minutes_left: float) -> None:
    """With two minutes or less left, the device adds that the code expires soon."""
    assert spoken_code("BCDF-GHJK", minutes_left=minutes_left) == [
        *twice(BCDF_GHJK),
        Pause(BEFORE_REPEAT_MS),
        Clip("expires-soon"),
    ]


@pytest.mark.parametrize("minutes_left", [None, 2.01, 10])
def test_a_code_with_time_left_has_no_warning(minutes_left: float | None) -> None:
    """With no expiry given, or more than two minutes left, the reading ends with the code."""
    assert spoken_code("BCDF-GHJK", minutes_left=minutes_left) == twice(BCDF_GHJK)


@pytest.mark.parametrize("code", ["", "----", "é?!", " "])
def test_a_code_with_nothing_to_say_is_refused_without_echoing_it(code: str) -> None:
    """No letter or digit is a ValueError whose message does not repeat the code."""
    with pytest.raises(ValueError, match="no letter or digit") as caught:
        spoken_code(code)
    assert not code.strip() or code not in str(caught.value)


def test_every_clip_spoken_is_one_a_voice_must_have() -> None:
    """Any code's clips, with every option, are all in CLIP_NAMES, and every name has a use."""
    speech = spoken_code("abcdefghijklmnopqrstuvwxyz-0123456789", minutes_left=1, renewed=True)
    used = {part.name for part in speech if isinstance(part, Clip)}
    assert used == set(CLIP_NAMES)


def test_a_pause_cannot_be_negative() -> None:
    """A pause of less than 0 ms is a ValueError; 0 ms is allowed."""
    assert Pause(0).ms == 0
    with pytest.raises(ValueError, match="0 ms or more"):
        Pause(-1)
