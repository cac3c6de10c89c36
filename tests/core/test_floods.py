"""Which lines of a log flood are written: one per kind per interval, with counts."""

from __future__ import annotations

import pytest

from coze_edge.core.floods import FloodGate


def test_the_first_line_of_a_kind_is_written_at_once() -> None:
    """Nothing held back before it: 0."""
    gate = FloodGate(10.0)

    assert gate.admit("bad frames", 5.0) == 0
    assert gate.admit("errors", 5.0) == 0
    assert gate.next_deadline() is None


def test_a_flood_is_one_line_per_interval_with_the_count_held_back() -> None:
    """A thousand lines a second for 25 s: a line at 0, 10 and 20 s, each with the count
    before it; the rest held back."""
    gate = FloodGate(10.0)
    written = [
        (n / 1000, held)
        for n in range(25_000)
        if (held := gate.admit("bad frames", n / 1000)) is not None
    ]

    assert written == [(0.0, 0), (10.0, 9999), (20.0, 9999)]


def test_kinds_are_limited_apart() -> None:
    """A flood of one kind holds back no line of another."""
    gate = FloodGate(10.0)
    gate.admit("bad frames", 0.0)
    assert gate.admit("bad frames", 1.0) is None

    assert gate.admit("errors", 1.0) == 0


def test_what_a_flood_held_back_at_its_end_is_due_an_interval_after_its_last_line() -> None:
    """The tail of a flood is reported once, when its interval is over; that report counts
    as the kind's line."""
    gate = FloodGate(10.0)
    gate.admit("bad frames", 0.0)
    for t in (1.0, 2.0, 3.0):
        gate.admit("bad frames", t)

    assert gate.next_deadline() == 10.0
    assert gate.due(9.9) == []
    assert gate.due(10.0) == [("bad frames", 3)]
    assert gate.due(30.0) == []
    assert gate.next_deadline() is None
    assert gate.admit("bad frames", 15.0) is None  # within the interval of the report


def test_held_returns_everything_held_back_once() -> None:
    """At the end of a source, all counts at once, then nothing."""
    gate = FloodGate(10.0)
    for kind in ("bad frames", "errors"):
        gate.admit(kind, 0.0)
        gate.admit(kind, 0.5)
        gate.admit(kind, 0.6)

    assert gate.held() == [("bad frames", 2), ("errors", 2)]
    assert gate.held() == []
    assert gate.admit("errors", 0.7) == 0


def test_a_quiet_kind_is_forgotten() -> None:
    """Kinds remembered are only those flooding: a quiet one leaves nothing behind."""
    gate = FloodGate(10.0)
    for n in range(100):
        gate.admit(f"kind {n}", float(n * 10))

    assert gate.admit("kind 99", 995.0) is None
    assert len(gate) == 1
    assert gate.held() == [("kind 99", 1)]


def test_the_interval_must_be_positive() -> None:
    """An interval of 0 would hold nothing back and say so misleadingly: refused."""
    with pytest.raises(ValueError, match="positive"):
        FloodGate(0.0)
