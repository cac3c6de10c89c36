"""
One supervisor, one restart policy.

Every long-running part of the daemon is a :class:`Service`: the conversation, the Coze
connection inside it, the token keeper, MQTT, the control socket. :func:`keep_running`
is the only retry loop in the program:

* the service returns: it is done for good;
* it raises :class:`~coze_edge.errors.Restart` (a new conversation, a refreshed token):
  it runs again at once, logged at INFO, and the backoff is not advanced;
* it raises a :class:`~coze_edge.errors.TransientError` (also when it arrives wrapped in
  the ``ExceptionGroup`` of a TaskGroup inside the service): it runs again after the next
  jittered delay of its backoff, or the error's ``retry_after`` if that is longer; a run
  that lasted :data:`HEALTHY_AFTER_S` starts the backoff over;
* anything else ends the supervisor's TaskGroup and, through it, the process (the CLI
  turns it into an exit code).

Failures are logged at WARNING on the first of a streak and then once per
:data:`REPEAT_LOG_S` with a count, so a network that is down for a day costs a few dozen
lines, not thousands. :func:`supervise` runs the top-level services until SIGTERM or SIGINT.

Errors are unwrapped by walking the group, never by ``raise ... from None`` inside
``except*``: CPython 3.11.2 (Debian bookworm, Raspberry Pi OS) wraps such a raise in a new
group (gh-103590), which once turned a lost sound card into exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from coze_edge.core.backoff import backoff
from coze_edge.errors import Restart, TransientError

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 60.0
"""A service that ran this long before failing starts its backoff over."""

REPEAT_LOG_S = 600.0
"""The same service failing again within this long is logged at DEBUG, with a count later."""

MIN_RESTART_S = 1.0
"""A deliberate restart after a run shorter than this waits its backoff like a failure:
a service that asks for a restart in a tight loop must not spin."""


def default_delays() -> Iterator[float]:
    """1, 2, 4 ... 60 s, each with jitter."""
    return backoff(first=1.0, cap=60.0)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    run: Callable[[], Awaitable[None]]
    """Runs until cancelled; returning means the service is done for good."""
    delays: Callable[[], Iterator[float]] = default_delays
    """The backoff between failed runs."""
    on_failure: Callable[[TransientError], None] | None = None
    """Told of each transient failure before the wait (e.g. to publish an error state)."""


def retry_cause(exc: BaseException) -> TransientError | Restart | None:
    """
    What the policy should do about ``exc``: the TransientError (or Restart) it is, or
    carries in an exception group where every leaf is one; None when it must end the
    process. A TransientError wins over a Restart raised beside it.
    """
    leaves = _leaves(exc)
    if not leaves or not all(isinstance(leaf, TransientError | Restart) for leaf in leaves):
        return None
    for leaf in leaves:
        if isinstance(leaf, TransientError):
            return leaf
    first = leaves[0]
    assert isinstance(first, Restart)
    return first


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class _FailureLog:
    """One WARNING per streak of failures, then one per REPEAT_LOG_S with a count."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._count = 0
        self._logged_at: float | None = None

    def failed(self, exc: TransientError, delay: float, now: float) -> None:
        self._count += 1
        first = self._logged_at is None
        if first or now - (self._logged_at or 0.0) >= REPEAT_LOG_S:
            times = "" if first else f" ({self._count} failures so far)"
            when = "at once" if delay == 0 else f"in {delay:.1f} s"
            log.warning("! %s failed: %s; retrying %s%s", self._name, exc, when, times)
            self._logged_at = now
        else:
            log.debug("= %s failed again: %s (%d)", self._name, exc, self._count)

    def recovered(self) -> None:
        if self._count > 1:
            log.info("%s running again after %d failures", self._name, self._count)
        self._count = 0
        self._logged_at = None


async def keep_running(
    service: Service, delays: Callable[[], Iterator[float]] | None = None
) -> None:
    """Run ``service`` under the restart policy (module docstring) until it returns."""
    loop = asyncio.get_running_loop()
    make_delays = delays or service.delays
    pending = make_delays()
    failures = _FailureLog(service.name)
    while True:
        started = loop.time()
        try:
            await service.run()
            return
        except Exception as exc:  # an ExceptionGroup of Exceptions included
            cause = retry_cause(exc)
            if cause is None:
                raise
        ran_for = loop.time() - started
        if ran_for > HEALTHY_AFTER_S:
            pending = make_delays()  # it worked for a while: start over
            failures.recovered()
        if isinstance(cause, Restart):
            log.info("%s: %s; starting it again", service.name, cause)
            if ran_for >= MIN_RESTART_S:
                continue
            await asyncio.sleep(next(pending))
            continue
        delay = max(next(pending), cause.retry_after or 0.0)
        if service.on_failure is not None:
            service.on_failure(cause)
        failures.failed(cause, delay, loop.time())
        await asyncio.sleep(delay)


class _StopRequested(Exception):
    pass


async def _raise_when_set(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _StopRequested


async def supervise(
    services: list[Service],
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``services`` until a signal (or ``stop``) asks to stop, or one fails for good."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_raise_when_set(stop), name="stop-on-signal")
            for service in services:
                tasks.create_task(keep_running(service), name=service.name)
    except* _StopRequested:
        log.info("stopping%s", f" on {received[0]}" if received else "")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
