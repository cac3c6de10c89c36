"""Rate-limited warnings on the event loop: a line per kind per interval, and the tail."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from coze_edge.flood_log import FloodLog
from tests.support.timing import MS

log = logging.getLogger("tests.flood")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


async def test_a_flood_is_one_line_then_its_count_after_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A thousand warnings at once: the first is written, and one line an interval later
    says how many more there were."""
    floods = FloodLog(log, interval_s=0.2)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for n in range(1000):
            floods.warning("bad frames", "! bad frame %d", n)
        assert lines(caplog) == ["! bad frame 0"]

        async with asyncio.timeout(2000 * MS):
            while len(lines(caplog)) < 2:  # noqa: ASYNC110 - waits for the loop's timer
                await asyncio.sleep(0.01)

    assert lines(caplog) == ["! bad frame 0", "! 999 more bad frames since the last such line"]


async def test_a_flood_that_goes_on_is_a_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Warnings without end: one line for each interval, counting those of the interval."""
    floods = FloodLog(log, interval_s=0.1)
    with caplog.at_level(logging.WARNING, logger=log.name):
        async with asyncio.timeout(5000 * MS):
            while len(lines(caplog)) < 4:
                floods.warning("errors", "! error")
                await asyncio.sleep(0.001)

    first, *counts = lines(caplog)
    assert first == "! error"
    # Each later line carries the interval's count: written by the loop's timer, or, when
    # a loaded machine runs the timer late, by the next warning past the interval.
    assert all(
        line.endswith(
            (" more errors since the last such line", " more errors held back before it)")
        )
        for line in counts
    ), counts


def test_without_a_loop_the_next_line_carries_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no event loop to report a flood's tail, its next line after the interval says
    how many were held back before it."""
    floods = FloodLog(log, interval_s=0.05)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for name in "abc":
            floods.warning("errors", "! error %s", name)
        time.sleep(0.06)  # the interval passes
        floods.warning("errors", "! error %s", "d")

    assert lines(caplog) == ["! error a", "! error d (2 more errors held back before it)"]


def test_flush_writes_what_is_held_back_at_once(caplog: pytest.LogCaptureFixture) -> None:
    """When the source of a flood goes away, its held-back count is written at once
    (without an event loop too)."""
    floods = FloodLog(log, interval_s=60.0)
    with caplog.at_level(logging.WARNING, logger=log.name):
        for _ in range(5):
            floods.warning("dropped commands", "! dropped a command")
        floods.flush()
        floods.flush()

    assert lines(caplog) == [
        "! dropped a command",
        "! 4 more dropped commands since the last such line",
    ]
