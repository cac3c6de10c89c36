"""The supervisor: transient failures restart a service, others end the group, signals stop it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from collections.abc import Iterator

import pytest

from coze_edge.errors import AudioDeviceLost, ConfigError, Restart, TransientError
from coze_edge.supervisor import MIN_RESTART_S, Service, keep_running, retry_cause, supervise


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


async def test_a_transient_error_inside_a_task_group_is_retried() -> None:
    """A service running its own TaskGroup fails with an ExceptionGroup; the policy finds
    the TransientError in it (nested too) instead of ending the process."""
    attempts: list[int] = []

    async def grouped() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            async with asyncio.TaskGroup() as outer:

                async def inner() -> None:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(_raise(AudioDeviceLost("gone")))

                outer.create_task(inner())

    await keep_running(Service("grouped", grouped), no_delays)

    assert attempts == [0, 1, 2]


async def _raise(exc: BaseException) -> None:
    raise exc


def test_the_cause_is_found_whatever_the_wrapping() -> None:
    """What 3.11.2 does to ``raise X from None`` inside ``except*`` (gh-103590): one more
    group around it. Every shape resolves to the same cause; a mixed group is fatal."""
    lost = AudioDeviceLost("gone")
    assert retry_cause(lost) is lost
    assert retry_cause(ExceptionGroup("", [lost])) is lost
    assert retry_cause(ExceptionGroup("", [ExceptionGroup("", [lost])])) is lost
    restart = Restart("new conversation")
    assert retry_cause(ExceptionGroup("", [restart, lost])) is lost
    assert retry_cause(restart) is restart
    assert retry_cause(ExceptionGroup("", [lost, ValueError("bug")])) is None
    assert retry_cause(ConfigError([("x", "y")])) is None


async def test_a_deliberate_restart_is_immediate_and_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Restart runs the service again at once (after its first second of life), logged at
    INFO; the backoff is not touched."""
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def restarting() -> None:
        attempts.append(loop.time())
        if len(attempts) == 1:
            await asyncio.sleep(MIN_RESTART_S)
            raise Restart("new conversation")

    def slow() -> Iterator[float]:
        return itertools.repeat(30.0)  # a failure would wait this long

    with caplog.at_level(logging.INFO, logger="coze_edge.supervisor"):
        await asyncio.wait_for(keep_running(Service("x", restarting, delays=slow)), 5)

    assert len(attempts) == 2
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "new conversation" in caplog.text


async def test_retry_after_stretches_the_wait_and_failures_are_logged_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error's retry_after wins over a shorter backoff; a streak of failures is one
    WARNING, the rest DEBUG; on_failure hears of each."""
    told: list[str] = []
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    class Refused(TransientError):
        retry_after = 0.2

    async def flaky() -> None:
        attempts.append(loop.time())
        if len(attempts) < 4:
            raise Refused(f"refused {len(attempts)}")

    with caplog.at_level(logging.DEBUG, logger="coze_edge.supervisor"):
        await asyncio.wait_for(
            keep_running(Service("x", flaky, on_failure=lambda e: told.append(str(e))), no_delays),
            5,
        )

    assert told == ["refused 1", "refused 2", "refused 3"]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(gap >= 0.19 for gap in gaps)
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
