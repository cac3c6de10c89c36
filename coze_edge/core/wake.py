"""
When speech may open a turn, with a wake word configured. Pure: the time is passed in.

Without a wake word, any speech may open a turn. With one, speech opens a turn only inside
the follow-up window: ``follow_up_s`` after a reply finished playing, so the user can
answer the bot without saying the wake word again. Outside it (and while a reply plays,
when the device would otherwise hear itself) only a detection of the wake word opens a turn.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

WAKE_WORDS: Final = ("okay_nabu", "alexa", "hey_jarvis", "hey_mycroft")
"""The wake words on offer: the microWakeWord models that ship inside ``pymicro-wakeword``
(a test checks that these are exactly its built-in ones)."""


class WakeGate:
    """Decides whether speech alone may open a turn now."""

    def __init__(self, *, enabled: bool, follow_up_s: float = 5.0) -> None:
        if follow_up_s < 0:
            raise ValueError(f"follow_up_s must not be negative, got {follow_up_s}")
        self.enabled = enabled
        self.follow_up_s = follow_up_s
        self._window_end: float | None = None

    def armed(self, now: float) -> bool:
        """Speech alone may open a turn: no wake word is configured, or the window is open."""
        if not self.enabled:
            return True
        return self._window_end is not None and now < self._window_end

    def woke(self, now: float) -> None:
        """The wake word was detected: a turn opens now, which uses up any open window."""
        log.debug("= wake word at %.3f", now)
        self._window_end = None

    def turn_started(self, now: float) -> None:
        """A turn opened (speech in the window, or a command): the window is used up."""
        self._window_end = None

    def reply_finished(self, now: float) -> None:
        """The reply finished playing: speech may answer it until ``now + follow_up_s``."""
        if self.enabled and self.follow_up_s > 0:
            self._window_end = now + self.follow_up_s
            log.debug("= follow-up window until %.3f", self._window_end)

    def next_deadline(self) -> float | None:
        """When the follow-up window closes (None: no window is open)."""
        return self._window_end

    def handle_timer(self, now: float) -> bool:
        """Close the window if its end has come; True if it closed just now."""
        if self._window_end is None or now < self._window_end:
            return False
        self._window_end = None
        log.debug("= follow-up window closed")
        return True


@dataclass(frozen=True, slots=True)
class WakeManifest:
    """A microWakeWord model's manifest (the JSON file beside its ``.tflite``)."""

    name: str
    """The model's id, its ``.tflite`` file's stem (``hey_coze``): what the state and the
    ``wake_word`` events call it."""
    phrase: str
    """What to say (``Hey Coze``)."""
    model: str
    """The ``.tflite`` file, as the manifest names it (relative to the manifest's folder)."""
    cutoff: float
    window: int


FEATURE_STEP_MS: Final = 10
"""The feature step pymicro-wakeword computes (microWakeWord's v2 models)."""


def parse_manifest(data: Any) -> WakeManifest:
    """
    The manifest in ``data`` (parsed JSON); ValueError saying what is wrong. microWakeWord
    writes ``{"type": "micro", "wake_word": ..., "model": "x.tflite", "micro":
    {"probability_cutoff": ..., "sliding_window_size": ..., "feature_step_size": 10}}``.
    """
    if not isinstance(data, dict):
        raise ValueError("not a microWakeWord manifest (expected a JSON object)")
    if data.get("type") != "micro":
        raise ValueError(
            f'not a microWakeWord manifest: "type" is {data.get("type")!r}, not "micro"'
        )
    phrase, model, micro = data.get("wake_word"), data.get("model"), data.get("micro")
    if not isinstance(phrase, str) or not phrase.strip():
        raise ValueError('the manifest has no "wake_word" (the phrase to say)')
    if not isinstance(model, str) or not model.endswith(".tflite") or len(model) <= 7:
        raise ValueError('the manifest\'s "model" must name its .tflite file')
    if not isinstance(micro, dict):
        raise ValueError('the manifest has no "micro" settings')
    cutoff, window = micro.get("probability_cutoff"), micro.get("sliding_window_size")
    step = micro.get("feature_step_size", FEATURE_STEP_MS)
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0 < cutoff < 1:
        raise ValueError('"micro.probability_cutoff" must be a number between 0 and 1')
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError('"micro.sliding_window_size" must be a whole number of 1 or more')
    if step != FEATURE_STEP_MS:
        raise ValueError(
            f'"micro.feature_step_size" is {step!r}: only microWakeWord\'s 10 ms models '
            "(version 2) run here"
        )
    name = model.rpartition("/")[2].removesuffix(".tflite")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise ValueError(
            f"its model's name {name!r} (the .tflite's) must be 1 to 64 letters, digits, "
            "_ or -: rename it"
        )
    if name in WAKE_WORDS:
        raise ValueError(
            f"its model is called {name!r}, as a built-in wake word: rename the .tflite "
            '(and the manifest\'s "model")'
        )
    return WakeManifest(name, phrase.strip(), model, float(cutoff), window)
