"""Command parsing (MQTT cmd/<name>, ctl) and splitting text into pieces Coze can speak."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coze_edge.core.commands import (
    COMMAND_NAMES,
    CTL_COMMANDS,
    MAX_SAY_CHARS,
    AnyCommand,
    Cancel,
    Command,
    CommandError,
    Listen,
    Mute,
    NewConversation,
    QueryStatus,
    RestartDaemon,
    Say,
    SetTurnDetection,
    SetVolume,
    SetWakeWord,
    Unmute,
    parse_command,
    split_for_speech,
)
from coze_edge.core.wake import WAKE_WORDS

COMMAND_TYPES = (
    *(Listen, Cancel, Mute, Unmute, SetVolume, Say, NewConversation, QueryStatus),
    *(SetWakeWord, SetTurnDetection, RestartDaemon),
)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("listen", Listen()),
        ("cancel", Cancel()),
        ("mute", Mute()),
        ("unmute", Unmute()),
        ("new_conversation", NewConversation()),
        ("status", QueryStatus()),
    ],
)
@pytest.mark.parametrize("payload", [b"", b"PRESS", b"\xff\xfe anything"])
def test_commands_without_argument_take_any_payload(
    name: str, command: Command, payload: bytes
) -> None:
    """Buttons send PRESS, users send nothing or anything: all the same."""
    assert parse_command(name, payload) == command


@pytest.mark.parametrize(
    ("payload", "percent"),
    [
        (b"35", 35),
        (b" 35 \n", 35),
        (b"35.0", 35),
        (b"0", 0),
        (b"100", 100),
        (b"100.0", 100),
        (b"35.5", 36),
        (b"35.49", 35),
        (b"007", 7),
    ],
)
def test_volume_takes_a_number_from_0_to_100(payload: bytes, percent: int) -> None:
    """Whole or decimal numbers in range are accepted and rounded half up."""
    assert parse_command("volume", payload) == SetVolume(percent)


@pytest.mark.parametrize(
    "payload",
    [
        b"loud",
        b"",
        b"-1",
        b"101",
        b"100.5",
        b"1e2",
        b"nan",
        b"inf",
        b"35%",
        b"0x10",
        b"\xff",
        b"9" * 40,
    ],
)
def test_volume_refuses_anything_else(payload: bytes) -> None:
    """Words, negatives, out of range, exponents and long payloads are refused."""
    with pytest.raises(CommandError, match="volume"):
        parse_command("volume", payload)


def test_volume_error_says_what_was_wrong() -> None:
    """The message names the expected range and quotes what came."""
    with pytest.raises(CommandError) as caught:
        parse_command("volume", b"loud")

    assert str(caught.value) == "volume: expected a number from 0 to 100, got 'loud'"


@pytest.mark.parametrize(
    ("payload", "command"),
    [(b"ON", Mute()), (b"on", Mute()), (b"true", Mute()), (b"OFF", Unmute()), (b" 0 ", Unmute())],
)
def test_muted_takes_on_or_off(payload: bytes, command: Command) -> None:
    """The Home Assistant switch's ON / OFF (and true/false, 1/0) mute and unmute."""
    assert parse_command("muted", payload) == command


def test_muted_refuses_other_words() -> None:
    """Anything but a switch word is refused."""
    with pytest.raises(CommandError, match="ON or OFF"):
        parse_command("muted", b"maybe")


def test_say_takes_utf8_text_stripped() -> None:
    """The text is decoded and stripped of surrounding white space."""
    assert parse_command("say", "  你好，世界\n".encode()) == Say("你好，世界")


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "empty"),
        (b" \n\t", "empty"),
        (b"\xffhello", "not UTF-8"),
        (b"x" * (MAX_SAY_CHARS + 1), "over 4000"),
        ("字".encode() * (MAX_SAY_CHARS + 1), "over 4000"),
        (b"x" * 100_000, "over 4000"),
    ],
)
def test_say_refuses_empty_undecodable_or_too_long_text(payload: bytes, problem: str) -> None:
    """Each refusal says why."""
    with pytest.raises(CommandError, match=problem):
        parse_command("say", payload)


def test_say_takes_text_up_to_the_limit() -> None:
    """Exactly MAX_SAY_CHARS characters (of any width) are fine."""
    assert parse_command("say", "字".encode() * MAX_SAY_CHARS) == Say("字" * MAX_SAY_CHARS)


@pytest.mark.parametrize(
    ("name", "payload", "command"),
    [
        ("new-conversation", b"", NewConversation()),
        ("wake-word", b"off", SetWakeWord(None)),
        ("turn-detection", b"server_vad", SetTurnDetection("server_vad")),
    ],
)
def test_a_dash_in_a_name_is_an_underscore(name: str, payload: bytes, command: AnyCommand) -> None:
    """`new-conversation` is `new_conversation`, as a shell user may write it."""
    assert parse_command(name, payload) == command


def test_unknown_commands_are_refused_with_the_known_ones() -> None:
    """The message lists what would have worked."""
    with pytest.raises(CommandError) as caught:
        parse_command("dance", b"")

    assert "unknown command 'dance'" in str(caught.value)
    assert all(name in str(caught.value) for name in COMMAND_NAMES)


@given(st.text(max_size=30) | st.sampled_from(COMMAND_NAMES), st.binary(max_size=200))
def test_parsing_anything_gives_a_command_or_a_command_error(name: str, payload: bytes) -> None:
    """No name or payload makes the parser fail in any other way."""
    command: AnyCommand | None = None
    try:
        command = parse_command(name, payload)
    except CommandError as exc:
        problem = str(exc)
    if command is None:
        assert problem
    else:
        assert isinstance(command, COMMAND_TYPES)
        if isinstance(command, SetVolume):
            assert 0 <= command.percent <= 100


@pytest.mark.parametrize(
    ("payload", "command"),
    [
        (b"off", SetWakeWord(None)),
        (b" OFF\n", SetWakeWord(None)),
        *[(word.encode(), SetWakeWord(word)) for word in WAKE_WORDS],
        (b"Hey_Jarvis", SetWakeWord("hey_jarvis")),
    ],
)
def test_wake_word_takes_off_or_a_known_word(payload: bytes, command: AnyCommand) -> None:
    """What Home Assistant's wake word select sends: off or one of the models shipped."""
    assert parse_command("wake_word", payload) == command


@pytest.mark.parametrize("payload", [b"", b"hey_siri", b"none", b"x" * 40])
def test_an_unknown_wake_word_is_refused_with_the_choices(payload: bytes) -> None:
    """A word without a model, or nothing, is refused; the message lists what works."""
    with pytest.raises(CommandError) as caught:
        parse_command("wake_word", payload)

    assert str(caught.value).startswith("wake_word: ")
    if len(payload) < 32:
        assert all(word in str(caught.value) for word in ("off", *WAKE_WORDS))


@pytest.mark.parametrize(
    ("payload", "mode"),
    [(b"client_interrupt", "client_interrupt"), (b" Server_VAD ", "server_vad")],
)
def test_turn_detection_takes_the_two_modes(payload: bytes, mode: str) -> None:
    """client_interrupt and server_vad, as coze.turn_detection names them."""
    assert parse_command("turn_detection", payload) == SetTurnDetection(mode)


def test_another_turn_detection_is_refused() -> None:
    """Anything else names the two that work."""
    with pytest.raises(CommandError, match="client_interrupt or server_vad"):
        parse_command("turn_detection", b"semantic_vad")


@pytest.mark.parametrize("payload", [b"", b"PRESS"])
def test_restart_takes_any_payload_and_is_not_a_ctl_command(payload: bytes) -> None:
    """Home Assistant's restart button sends PRESS; ctl leaves restarts to systemctl."""
    assert parse_command("restart", payload) == RestartDaemon()
    assert "restart" in COMMAND_NAMES
    assert "restart" not in CTL_COMMANDS
    assert {"wake_word", "turn_detection"} <= set(CTL_COMMANDS)


# --- split_for_speech --------------------------------------------------------------------------


def test_short_text_is_one_piece() -> None:
    """Text that fits is left whole (only stripped)."""
    assert split_for_speech("  Hello there. How are you?  ") == ["Hello there. How are you?"]


def test_empty_text_gives_no_pieces() -> None:
    """Nothing to say, nothing to send."""
    assert split_for_speech(" \n ") == []


def test_long_text_is_cut_at_the_last_sentence_end_that_fits() -> None:
    """Sentences stay whole when they fit."""
    text = "One two three. Four five six! Seven eight nine? Ten."

    assert split_for_speech(text, max_bytes=35) == [
        "One two three. Four five six!",
        "Seven eight nine? Ten.",
    ]


def test_chinese_sentences_split_without_spaces() -> None:
    """Full-width sentence ends cut too, and never inside a character."""
    text = "今天天气很好。我们去公园吧！好不好？"

    pieces = split_for_speech(text, max_bytes=24)

    assert pieces == ["今天天气很好。", "我们去公园吧！", "好不好？"]
    assert all(len(piece.encode()) <= 24 for piece in pieces)


def test_a_decimal_point_is_not_a_sentence_end() -> None:
    """3.14 stays whole; the cut falls at a space instead."""
    assert split_for_speech("pi is 3.14159 and e is 2.71828", max_bytes=16) == [
        "pi is 3.14159",
        "and e is 2.71828",
    ]


def test_without_sentence_ends_commas_then_spaces_are_used() -> None:
    """Clause marks come before plain spaces."""
    assert split_for_speech("red, green and blue, yellow", max_bytes=20) == [
        "red, green and blue,",
        "yellow",
    ]


def test_without_any_break_the_cut_falls_between_characters() -> None:
    """A run with no break is cut at the last whole character that fits."""
    assert split_for_speech("字字字字字", max_bytes=7) == ["字字", "字字", "字"]


def test_line_breaks_end_sentences() -> None:
    """A newline is a place to cut."""
    assert split_for_speech("first line\nsecond line", max_bytes=15) == [
        "first line",
        "second line",
    ]


def test_max_bytes_must_hold_any_character() -> None:
    """A limit under 4 bytes could not hold every UTF-8 character."""
    with pytest.raises(ValueError, match="max_bytes"):
        split_for_speech("x", max_bytes=3)


def _rejoins(text: str, pieces: list[str]) -> bool:
    """The pieces, in order, with only white space between and around them, make ``text``."""
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        if found < 0 or text[position:found].strip():
            return False
        position = found + len(piece)
    return not text[position:].strip()


SPEECHY = st.text(alphabet=st.sampled_from([*"ab 字.,!?。，！？\n\t\"'", "😀", "é"]), max_size=400)


@given(st.one_of(SPEECHY, st.text(max_size=300)), st.integers(min_value=4, max_value=120))
def test_pieces_fit_and_rejoin_to_the_text(text: str, max_bytes: int) -> None:
    """Every piece is 1..max_bytes UTF-8 bytes, stripped, and together they are the text."""
    pieces = split_for_speech(text, max_bytes=max_bytes)

    assert all(0 < len(piece.encode()) <= max_bytes for piece in pieces)
    assert all(piece == piece.strip() for piece in pieces)
    assert _rejoins(text, pieces)
    assert re.sub(r"\s", "", "".join(pieces)) == re.sub(r"\s", "", text)


@given(SPEECHY)
def test_the_default_limit_suits_coze(text: str) -> None:
    """With the default limit every piece is within Coze's 1..1023 bytes."""
    assert all(1 <= len(piece.encode()) <= 1023 for piece in split_for_speech(text * 5))
