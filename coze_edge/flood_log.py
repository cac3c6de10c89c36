"""
Warnings that can come in floods (bad frames from a server, dropped MQTT commands, error
events), through a :class:`~coze_edge.core.floods.FloodGate`: one line per kind per
interval, carrying the count of those held back before it, and one more line for what a
flood's tail held back (after the interval, on the event loop, or at :meth:`flush`).
"""

from __future__ import annotations

import asyncio
import logging
import time

from coze_edge.core.floods import FLOOD_INTERVAL_S, FloodGate


class FloodLog:
    """Rate-limited warnings to ``logger``; call it on the event loop (or with none)."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = FLOOD_INTERVAL_S) -> None:
        self._log = logger
        self._gate = FloodGate(interval_s)
        self._timer: asyncio.TimerHandle | None = None

    def warning(self, kind: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` unless a line of ``kind`` was logged less than an interval
        ago. ``kind`` names them in the plural, for the lines that count them ("bad frames
        from Coze")."""
        held = self._gate.admit(kind, time.monotonic())
        if held is None:
            self._report_later()
        elif held:
            self._log.warning("%s (%d more %s held back before it)", msg % args, held, kind)
        else:
            self._log.warning(msg, *args)

    def flush(self) -> None:
        """Log what is held back now: the flood's source is gone."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for kind, count in self._gate.held():
            self._report(kind, count)

    def _report_later(self) -> None:
        deadline = self._gate.next_deadline()
        if self._timer is not None or deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to wait on: the count goes with the kind's next line
        self._timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._due)

    def _due(self) -> None:
        self._timer = None
        for kind, count in self._gate.due(time.monotonic()):
            self._report(kind, count)
        self._report_later()

    def _report(self, kind: str, count: int) -> None:
        self._log.warning("! %d more %s since the last such line", count, kind)
