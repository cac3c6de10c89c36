"""
What the device says to read out its login code when it has no screen and no token: a
list of voice clips and pauses, turned into sound by ``coze_edge.adapters.voice_clips``.
Pure.

For the code ``BCDF-GHJK`` it says (``|`` a short pause, ``||`` a longer one)::

    To set me up, open the Coze login page on your phone and enter this code.
    B | C | D | F || G | H | J | K
    I repeat.
    B | C | D | F || G | H | J | K

Letters are read by their names ("bee", "double-u"), digits as numbers ("zero" .. "nine").
Lowercase is read as uppercase; a dash or white space is a longer pause between groups;
anything else is skipped. A code is never logged and never put in an error message.

Clips come from a folder per language, one WAV file per name in ``CLIP_NAMES``
(``coze_edge/data/voice/en/a.wav``, ..., ``intro.wav``). A vendor adds another language by
adding a folder of clips with the same names, speaking ``SENTENCES``' meaning in that
language (and the letter names as that language says them), and choosing it by folder name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "AFTER_SENTENCE_MS",
    "BEFORE_REPEAT_MS",
    "BETWEEN_CHARACTERS_MS",
    "BETWEEN_GROUPS_MS",
    "CLIP_NAMES",
    "DIGITS",
    "EXPIRES_SOON_MINUTES",
    "LETTERS",
    "REPEAT_EVERY_S",
    "SENTENCES",
    "Clip",
    "Pause",
    "Speech",
    "spoken_code",
]

LETTERS: Final = tuple("abcdefghijklmnopqrstuvwxyz")
DIGITS: Final = tuple("0123456789")

SENTENCES: Final[dict[str, str]] = {
    "intro": "To set me up, open the Coze login page on your phone and enter this code.",
    "repeat": "I repeat.",
    "expires-soon": "This code expires soon.",
    "new-code": "Here is a new code.",
}
"""Clip name -> what the clip says (in English; another language says the same)."""

CLIP_NAMES: Final = (*LETTERS, *DIGITS, *SENTENCES)
"""Every clip a language folder must hold, as ``<name>.wav``."""

AFTER_SENTENCE_MS: Final = 700
BETWEEN_CHARACTERS_MS: Final = 350
BETWEEN_GROUPS_MS: Final = 900
"""At a dash: long enough to hear the code as groups, short enough not to seem over."""
BEFORE_REPEAT_MS: Final = 1500

EXPIRES_SOON_MINUTES: Final = 2.0
"""With at most this many minutes left, the device adds that the code expires soon."""

REPEAT_EVERY_S: Final = 180.0
"""How often a device with no screen should say its code again while the login waits."""

_SEPARATORS: Final = frozenset("- \t")
_SPEAKABLE: Final = frozenset((*LETTERS, *DIGITS))


@dataclass(frozen=True, slots=True)
class Clip:
    """Play the clip ``name`` (one of ``CLIP_NAMES``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Pause:
    """Silence, in milliseconds."""

    ms: int

    def __post_init__(self) -> None:
        if self.ms < 0:
            raise ValueError(f"a pause lasts 0 ms or more, not {self.ms}")


Speech = list[Clip | Pause]


def spoken_code(
    user_code: str, *, minutes_left: float | None = None, renewed: bool = False
) -> Speech:
    """
    The clips and pauses that read ``user_code`` aloud twice, after saying what to do
    with it.

    ``renewed`` starts by saying that the last code expired (say it for a code that
    replaces one already spoken). With ``minutes_left`` given and at most
    ``EXPIRES_SOON_MINUTES``, it ends by saying that the code expires soon. Raises
    ValueError (without repeating the code) if ``user_code`` has no letter or digit.
    """
    characters = _characters(user_code)
    opening: Speech = [Clip("new-code"), Pause(AFTER_SENTENCE_MS)] if renewed else []
    closing: Speech = []
    if minutes_left is not None and minutes_left <= EXPIRES_SOON_MINUTES:
        closing = [Pause(BEFORE_REPEAT_MS), Clip("expires-soon")]
    return [
        *opening,
        Clip("intro"),
        Pause(AFTER_SENTENCE_MS),
        *characters,
        Pause(BEFORE_REPEAT_MS),
        Clip("repeat"),
        Pause(AFTER_SENTENCE_MS),
        *characters,
        *closing,
    ]


def _characters(user_code: str) -> Speech:
    """The code's letters and digits, one clip each, with a longer pause between groups."""
    speech: Speech = []
    group_ended = False
    for char in user_code:
        if char in _SEPARATORS:
            group_ended = bool(speech)  # leading and repeated separators add nothing
            continue
        name = char.lower()
        if name not in _SPEAKABLE:
            continue
        if speech:
            speech.append(Pause(BETWEEN_GROUPS_MS if group_ended else BETWEEN_CHARACTERS_MS))
        speech.append(Clip(name))
        group_ended = False
    if not speech:
        raise ValueError("the login code has no letter or digit to speak")
    return speech
