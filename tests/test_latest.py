"""The hand-offs from the audio path: Latest keeps the newest value, EventQueue drops the oldest."""

from __future__ import annotations

import asyncio
import logging

import pytest

from coze_edge.latest import EventQueue, Latest
from tests.support.timing import MS


async def test_a_slow_reader_gets_only_the_newest_value() -> None:
    """Values set while nobody waited are skipped except the last."""
    latest = Latest[int]()
    for value in range(5):
        latest.set(value)

    assert await latest.wait_changed() == 4
    assert latest.get_nowait() == 4


async def test_wait_changed_waits_for_the_next_set() -> None:
    """After a read, the reader waits until set is called again."""
    latest = Latest(1)
    waiting = asyncio.create_task(latest.wait_changed())
    await asyncio.sleep(5 * MS)
    assert not waiting.done()

    latest.set(2)

    assert await asyncio.wait_for(waiting, 1) == 2


def test_get_nowait_before_any_value_raises() -> None:
    """An empty Latest says so rather than inventing a value."""
    latest = Latest[str]()

    assert not latest.is_set()
    with pytest.raises(LookupError):
        latest.get_nowait()


def test_none_can_be_a_real_value() -> None:
    """Latest[X | None](None) holds None, as the login prompt does when nothing is pending."""
    latest: Latest[int | None] = Latest(None)

    assert latest.is_set()
    assert latest.get_nowait() is None


async def test_a_full_event_queue_drops_the_oldest_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Putting never waits; the newest events survive an overrun, and it is logged."""
    queue = EventQueue(3)
    with caplog.at_level(logging.WARNING):
        for number in range(5):
            queue.put_nowait({"type": "n", "n": number})

    assert queue.overruns == 2
    assert [(await queue.get())["n"] for _ in range(3)] == [2, 3, 4]
    assert "dropped the oldest (1 so far)" in caplog.text


def test_an_event_queue_holds_at_least_one() -> None:
    """A zero-size queue could hold nothing."""
    with pytest.raises(ValueError, match="maxsize"):
        EventQueue(0)
