"""
Hand-offs between the audio path and slower consumers (MQTT, logs) that never make the
producer wait: :class:`Latest` keeps only the newest value, :class:`EventQueue` keeps a bounded
backlog and drops the oldest. Both are used from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Generic, TypeVar, final

__all__ = ["EventQueue", "Latest"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@final
class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


class Latest(Generic[T]):
    """
    Holds only the newest value; a slow reader skips the stale ones.

    ``set`` never waits. One reader at a time may ``wait_changed``; anyone may ``get_nowait``.
    ``Latest[X | None](None)`` starts with None as a real value.
    """

    def __init__(self, initial: T | _Unset = _UNSET) -> None:
        self._value: T | _Unset = initial
        self._changed = asyncio.Event()

    def set(self, value: T) -> None:
        self._value = value
        self._changed.set()

    def get_nowait(self) -> T:
        """The newest value; LookupError if there has been none yet."""
        value = self._value
        if isinstance(value, _Unset):
            raise LookupError("no value yet")
        return value

    def take_nowait(self) -> T:
        """The newest value, as seen by the one reader: a later ``wait_changed`` waits for a
        newer one. LookupError if there has been none yet."""
        value = self.get_nowait()
        self._changed.clear()
        return value

    def is_set(self) -> bool:
        """Whether there is a value (``get_nowait`` won't raise)."""
        return not isinstance(self._value, _Unset)

    async def wait_changed(self) -> T:
        """Wait until ``set`` was called since the last ``wait_changed``; the newest value."""
        await self._changed.wait()
        self._changed.clear()
        return self.get_nowait()


class EventQueue:
    """
    A bounded queue of event dicts: ``put_nowait`` never waits, and when the queue is full
    the oldest event makes room (fresh events are worth more than stale ones). ``overruns``
    counts the dropped ones.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self.overruns = 0

    def put_nowait(self, event: dict[str, Any]) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.overruns += 1
            if _is_power_of_ten(self.overruns):
                log.warning("! event queue full: dropped the oldest (%d so far)", self.overruns)
        self._queue.put_nowait(event)

    async def get(self) -> dict[str, Any]:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()


def _is_power_of_ten(number: int) -> bool:
    while number % 10 == 0:
        number //= 10
    return number == 1
