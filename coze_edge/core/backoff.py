"""Jittered exponential backoff as a plain iterator: pure, so tests read the numbers off."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff(
    *,
    first: float = 1.0,
    factor: float = 2.0,
    cap: float = 60.0,
    jitter: Callable[[], float] = random.random,
    first_immediate: bool = False,
) -> Iterator[float]:
    """
    Yield seconds to wait before each retry: first, first*factor, ... up to ``cap``.

    Each delay is scaled by a random factor in [0.5, 1.5) so that a fleet of devices
    rebooting together does not reconnect in lockstep. ``first_immediate`` yields 0 first:
    retry at once after a drop, then back off.
    """
    if first_immediate:
        yield 0.0
    delay = first
    while True:
        yield min(delay, cap) * (0.5 + jitter())
        delay *= factor
