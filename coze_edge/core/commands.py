"""
Commands from outside (MQTT ``cmd/<name>``, the ctl socket): parsed and checked here, so a bad
payload is refused before anything changes. Pure.

| name               | payload                                     | command            |
| ------------------ | ------------------------------------------- | ------------------ |
| `listen`           | any (Home Assistant buttons send `PRESS`)   | Listen             |
| `cancel`           | any                                         | Cancel             |
| `mute`             | any                                         | Mute               |
| `unmute`           | any                                         | Unmute             |
| `muted`            | `ON` / `OFF` (also true/false, 1/0, yes/no) | Mute / Unmute      |
| `volume`           | a number 0..100 as text (`35`, `35.0`)      | SetVolume          |
| `say`              | UTF-8 text, 1..4000 characters              | Say                |
| `new_conversation` | any                                         | NewConversation    |
| `status`           | any                                         | QueryStatus        |
| `wake_word`        | `off` or a wake word (core.wake.WAKE_WORDS) | SetWakeWord        |
| `turn_detection`   | `client_interrupt` / `server_vad`           | SetTurnDetection   |
| `restart`          | any                                         | RestartDaemon      |

``muted`` is what the Home Assistant switch sends (one topic for both directions). Names
may be written with ``-`` for ``_`` (``cmd/new-conversation``, ``ctl wake-word``).
The first table's commands are the conversation's (:data:`Command`); the last three are
the daemon's (:data:`DeviceCommand`): they change how the conversation is built, or end it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from coze_edge.core.wake import WAKE_WORDS

__all__ = [
    "COMMAND_NAMES",
    "CTL_COMMANDS",
    "MAX_SAY_CHARS",
    "TURN_DETECTIONS",
    "WAKE_WORD_OFF",
    "AnyCommand",
    "Cancel",
    "Command",
    "CommandError",
    "DeviceCommand",
    "Listen",
    "Mute",
    "NewConversation",
    "QueryStatus",
    "RestartDaemon",
    "Say",
    "SetTurnDetection",
    "SetVolume",
    "SetWakeWord",
    "Unmute",
    "parse_command",
    "split_for_speech",
]

MAX_SAY_CHARS: Final = 4000
"""Longest text ``say`` accepts: about four minutes of speech."""


@dataclass(frozen=True, slots=True)
class Listen:
    """Start listening now, as if the wake word had been heard."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop what the assistant is doing (listening, thinking or speaking)."""


@dataclass(frozen=True, slots=True)
class Mute:
    """Close the microphone: nothing goes upstream until Unmute."""


@dataclass(frozen=True, slots=True)
class Unmute:
    """Open the microphone again."""


@dataclass(frozen=True, slots=True)
class SetVolume:
    """Speaker loudness in percent, 0..100."""

    percent: int


@dataclass(frozen=True, slots=True)
class Say:
    """Speak this text (the device's voice, not a question to the bot)."""

    text: str


@dataclass(frozen=True, slots=True)
class NewConversation:
    """Forget the conversation context; the next turn starts a new one."""


@dataclass(frozen=True, slots=True)
class QueryStatus:
    """Report the current status (changes nothing)."""


Command = Listen | Cancel | Mute | Unmute | SetVolume | Say | NewConversation | QueryStatus
"""What the conversation carries out."""

WAKE_WORD_OFF: Final = "off"
"""How ``wake_word`` (and Home Assistant's select) says: no wake word, any speech is a turn."""

TURN_DETECTIONS: Final = ("client_interrupt", "server_vad")
"""Who ends the user's turn: this device's VAD, or Coze's (``coze.turn_detection``)."""


@dataclass(frozen=True, slots=True)
class SetWakeWord:
    """Listen for this wake word from now on (None: none, any speech opens a turn)."""

    word: str | None


@dataclass(frozen=True, slots=True)
class SetTurnDetection:
    """Let this side end the user's turn from now on: one of :data:`TURN_DETECTIONS`."""

    mode: str


@dataclass(frozen=True, slots=True)
class RestartDaemon:
    """Stop, to be started again (by systemd: see the daemon's exit code 75)."""


DeviceCommand = SetWakeWord | SetTurnDetection | RestartDaemon
"""What the daemon carries out itself: the conversation is rebuilt, or the process ends."""

AnyCommand = Command | DeviceCommand


class CommandError(ValueError):
    """A command that cannot be carried out as sent; the message says why, for the sender."""


_SIMPLE: Final[dict[str, Command]] = {
    "listen": Listen(),
    "cancel": Cancel(),
    "mute": Mute(),
    "unmute": Unmute(),
    "new_conversation": NewConversation(),
    "status": QueryStatus(),
}
COMMAND_NAMES: Final = (
    *_SIMPLE,
    "muted",
    "volume",
    "say",
    "wake_word",
    "turn_detection",
    "restart",
)
"""Every command, as MQTT ``cmd/<name>`` and the ctl socket take it."""
CTL_COMMANDS: Final = tuple(name for name in COMMAND_NAMES if name not in {"muted", "restart"})
"""What ``coze-edge ctl`` offers: all but ``muted``, Home Assistant's switch (on a command
line, ``mute`` and ``unmute`` say the same), and ``restart`` (``systemctl restart
coze-edge`` does it there, and waits for it)."""

_SWITCH: Final[dict[str, Command]] = {
    "on": Mute(),
    "true": Mute(),
    "1": Mute(),
    "yes": Mute(),
    "off": Unmute(),
    "false": Unmute(),
    "0": Unmute(),
    "no": Unmute(),
}
_NUMBER = re.compile(r"\d{1,3}(?:\.\d{0,6})?")
_MAX_NUMBER_BYTES = 32


def parse_command(name: str, payload: bytes) -> AnyCommand:
    """The command ``name`` with ``payload``; CommandError if either is wrong. A ``-`` in
    the name is taken for ``_``: ``new-conversation`` is ``new_conversation``."""
    name = name.replace("-", "_")
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple
    if name == "muted":
        word = _short_text(name, payload).strip().lower()
        if word not in _SWITCH:
            raise CommandError(f"muted: expected ON or OFF, got {_show(word)}")
        return _SWITCH[word]
    if name == "volume":
        return SetVolume(_percent(payload))
    if name == "say":
        return Say(_speech(payload))
    if name == "wake_word":
        word = _short_text(name, payload).strip().lower()
        if word == WAKE_WORD_OFF:
            return SetWakeWord(None)
        if word not in WAKE_WORDS:
            known = ", ".join((WAKE_WORD_OFF, *WAKE_WORDS))
            raise CommandError(f"wake_word: expected one of {known}, got {_show(word)}")
        return SetWakeWord(word)
    if name == "turn_detection":
        mode = _short_text(name, payload).strip().lower()
        if mode not in TURN_DETECTIONS:
            known = " or ".join(TURN_DETECTIONS)
            raise CommandError(f"turn_detection: expected {known}, got {_show(mode)}")
        return SetTurnDetection(mode)
    if name == "restart":
        return RestartDaemon()
    raise CommandError(f"unknown command {_show(name)}; known: {', '.join(COMMAND_NAMES)}")


def _percent(payload: bytes) -> int:
    text = _short_text("volume", payload).strip()
    if not _NUMBER.fullmatch(text):
        raise CommandError(f"volume: expected a number from 0 to 100, got {_show(text)}")
    value = Decimal(text).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if value > 100:
        raise CommandError(f"volume: expected a number from 0 to 100, got {text}")
    return int(value)


def _speech(payload: bytes) -> str:
    if len(payload) > 4 * MAX_SAY_CHARS:  # no need to decode what can only be too long
        raise CommandError(f"say: text over {MAX_SAY_CHARS} characters")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("say: text is not UTF-8") from None
    if not text:
        raise CommandError("say: text is empty")
    if len(text) > MAX_SAY_CHARS:
        raise CommandError(f"say: text over {MAX_SAY_CHARS} characters ({len(text)})")
    return text


def _short_text(name: str, payload: bytes) -> str:
    if len(payload) > _MAX_NUMBER_BYTES:
        raise CommandError(f"{name}: payload too long ({len(payload)} bytes)")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{name}: payload is not UTF-8") from None


def _show(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- splitting text for Coze's text-to-speech --------------------------------------------------

# A sentence ends after . ! ? followed by white space (so "3.14" and "e.g.x" stay whole), after
# the full-width 。！？ (Chinese puts no space after them), or at a line break; closing quotes
# and brackets stay with their sentence.
_CLOSERS = "\"')\\]}\u201d\u2019\u300d\u300f\uff09\u3011"
_SENTENCE_END = re.compile(rf"(?:[.!?…][{_CLOSERS}]*(?=\s)|[。！？][{_CLOSERS}]*|\n)")
_CLAUSE_END = re.compile(rf"(?:[,;:][{_CLOSERS}]*(?=\s)|[，；：、][{_CLOSERS}]*)")
_SPACE = re.compile(r"\s")


def split_for_speech(text: str, max_bytes: int = 1000) -> list[str]:
    """
    ``text`` in pieces of at most ``max_bytes`` UTF-8 bytes (Coze's ``input_text.generate_audio``
    takes 1..1023), cut at sentence ends where possible, else after a comma or similar, else at
    white space, else between two characters. Pieces are stripped and never empty; joined
    with the white space that was at the cuts they give back the stripped text.
    """
    if max_bytes < 4:
        raise ValueError("max_bytes must leave room for any UTF-8 character (4 bytes)")
    pieces: list[str] = []
    rest = text.strip()
    while rest:
        if len(rest.encode("utf-8")) <= max_bytes:
            pieces.append(rest)
            break
        cut = _cut(rest, max_bytes)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return pieces


def _cut(text: str, max_bytes: int) -> int:
    """Where to cut ``text`` (which starts with a non-space) so the head fits in ``max_bytes``."""
    # The longest prefix that fits: cutting the encoding mid-character and dropping the partial
    # character never splits one.
    fits = len(text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore"))
    # Look one character past the window: a "." at its edge ends a sentence if a space follows.
    window = text[: fits + 1]
    for pattern in (_SENTENCE_END, _CLAUSE_END):
        ends = [match.end() for match in pattern.finditer(window) if 0 < match.end() <= fits]
        if ends:
            return ends[-1]
    spaces = [match.start() for match in _SPACE.finditer(window) if 0 < match.start() <= fits]
    if spaces:
        return spaces[-1]
    return fits
