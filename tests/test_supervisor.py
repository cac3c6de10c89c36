"""The supervisor: transient failures restart a service, others end the group, signals stop it."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import Iterator

import pytest

from coze_edge.errors import AudioDeviceLost, ConfigError
from coze_edge.supervisor import Service, keep_running, supervise


def no_delays() -> Iterator[float]:
    return itertools.repeat(0.0)


async def test_a_transient_failure_restarts_the_service() -> None:
    """A TransientError is retried until the service returns."""
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise AudioDeviceLost("microphone unplugged")

    await keep_running(Service("mic", flaky), no_delays)

    assert attempts == [0, 1, 2]


async def test_any_other_error_ends_the_group() -> None:
    """A non-transient error propagates out of supervise."""

    async def broken() -> None:
        raise ConfigError([("vad.aggressiveness", "must be 0..3")])

    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(ExceptionGroup) as caught:
        await supervise([Service("broken", broken), Service("other", forever)], signals=())

    assert caught.group_contains(ConfigError)


async def test_stop_cancels_every_service_and_returns() -> None:
    """Setting the stop event ends supervise cleanly, running each service's cleanup."""
    stop = asyncio.Event()
    cleaned: list[str] = []

    async def service() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("done")

    loop = asyncio.get_running_loop()
    loop.call_later(0.05, stop.set)
    await supervise([Service("a", service), Service("b", service)], signals=(), stop=stop)

    assert cleaned == ["done", "done"]


async def test_sigterm_stops_the_supervisor() -> None:
    """SIGTERM to the process is an orderly stop, not an exception."""

    async def forever() -> None:
        await asyncio.Event().wait()

    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(supervise([Service("x", forever)], signals=(signal.SIGTERM,)), timeout=5)
