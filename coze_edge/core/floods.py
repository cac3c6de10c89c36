"""
Which lines of a log flood to write: the first of each kind at once, then at most one per
interval, each saying how many of its kind were held back before it; a kind whose flood
stopped gets one more line for what was held back at its end (:meth:`FloodGate.due`).

Time is passed in; the caller logs (``coze_edge.flood_log`` does, on the event loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

FLOOD_INTERVAL_S: Final = 10.0
"""At most one line per kind per this long: a server that sends a thousand bad frames a
second costs six lines a minute, and the first of any kind is still written at once."""


@dataclass(slots=True)
class _Kind:
    logged_at: float
    held: int = 0


class FloodGate:
    """Counts lines per kind and says which to write."""

    def __init__(self, interval_s: float = FLOOD_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self._kinds: dict[str, _Kind] = {}

    def admit(self, kind: str, now: float) -> int | None:
        """A line of ``kind`` at ``now``: None to hold it back (it is counted), else write
        it, saying that this many of its kind were held back before it."""
        self._forget_quiet(now)
        seen = self._kinds.get(kind)
        if seen is None:
            self._kinds[kind] = _Kind(logged_at=now)
            return 0
        if now < seen.logged_at + self.interval_s:
            seen.held += 1
            return None
        held, seen.held, seen.logged_at = seen.held, 0, now
        return held

    def next_deadline(self) -> float | None:
        """When :meth:`due` has something to report, at the earliest; None: nothing held."""
        return min(
            (k.logged_at + self.interval_s for k in self._kinds.values() if k.held),
            default=None,
        )

    def due(self, now: float) -> list[tuple[str, int]]:
        """Each kind with lines held back for a whole interval since its last line, and
        how many: to be written as one line now, which counts as the kind's line."""
        reports: list[tuple[str, int]] = []
        for kind, seen in self._kinds.items():
            if seen.held and now >= seen.logged_at + self.interval_s:
                reports.append((kind, seen.held))
                seen.held, seen.logged_at = 0, now
        return reports

    def held(self) -> list[tuple[str, int]]:
        """Everything held back so far, per kind, forgotten once returned: for a last line
        when whoever logs stops (a socket closes)."""
        reports = [(kind, seen.held) for kind, seen in self._kinds.items() if seen.held]
        self._kinds.clear()
        return reports

    def __len__(self) -> int:
        """Kinds remembered: those with a line less than an interval ago, or held back."""
        return len(self._kinds)

    def _forget_quiet(self, now: float) -> None:
        # A kind quiet for a whole interval starts afresh: only floods are remembered.
        quiet = [
            kind
            for kind, seen in self._kinds.items()
            if not seen.held and now >= seen.logged_at + self.interval_s
        ]
        for kind in quiet:
            del self._kinds[kind]
