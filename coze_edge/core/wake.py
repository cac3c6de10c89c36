"""
When speech may open a turn, with a wake word configured. Pure: the time is passed in.

Without a wake word, any speech may open a turn. With one, speech opens a turn only inside
the follow-up window: ``follow_up_s`` after a reply finished playing, so the user can
answer the bot without saying the wake word again. Outside it (and while a reply plays,
when the device would otherwise hear itself) only a detection of the wake word opens a turn.
"""

from __future__ import annotations

import logging
from typing import Final

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
