"""
The daemon's own latencies, observed beside the conversation driver (it calls
:meth:`LatencyObserver.after` once per input it handled; a few comparisons each).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Final

from coze_edge.adapters.audio_io import Speaker
from coze_edge.core.events import AudioAppend, AudioComplete
from coze_edge.core.session import Effect, FlushPlayback, Play, Send

LATENCIES: Final = (
    "capture_to_append",
    "capture_to_complete",
    "capture_to_flush",
    "delta_to_device",
)
"""The daemon's own delays, in seconds, each from a block or event to what it caused:
a captured block to its ``append`` (or the ``complete`` or the playback flush it caused)
on its way out, and a reply's first delta to its first sample handed to the device."""

_CAUSED_BY_CAPTURE: Final = (
    ("capture_to_append", AudioAppend),
    ("capture_to_complete", AudioComplete),
    ("capture_to_flush", FlushPlayback),
)


class LatencyObserver:
    """Keeps the last :data:`KEEP` samples of each of :data:`LATENCIES`."""

    KEEP: Final = 2000

    def __init__(self, speaker: Speaker) -> None:
        self._speaker = speaker
        self.latency: dict[str, deque[float]] = {
            name: deque(maxlen=self.KEEP) for name in LATENCIES
        }
        self._reply_received_at: float | None = None  # a reply's first delta, until it plays

    @property
    def waiting_for_playback(self) -> bool:
        """A reply's first delta has not reached the device yet (the driver calls
        :meth:`after` for every input then, not only those with effects)."""
        return self._reply_received_at is not None

    def after(
        self,
        effects: Sequence[Effect],
        now: float,
        *,
        captured_at: float | None = None,
        received_at: float | None = None,
        was_playing: bool = False,
    ) -> None:
        """The driver carried out ``effects`` for a captured block (``captured_at``) or a
        received event (``received_at``, and whether the speaker was playing before)."""
        kinds = {type(e.event) if isinstance(e, Send) else type(e) for e in effects}
        if captured_at is not None:
            for name, kind in _CAUSED_BY_CAPTURE:
                if kind in kinds:
                    self.latency[name].append(now - captured_at)
        if FlushPlayback in kinds:
            self._reply_received_at = None
        elif (
            received_at is not None
            and not was_playing
            and self._reply_received_at is None
            and Play in kinds
        ):
            self._reply_received_at = received_at
        started = self._speaker.burst_started_at
        received = self._reply_received_at
        if received is not None and started is not None and started >= received:
            self.latency["delta_to_device"].append(started - received)
            self._reply_received_at = None
