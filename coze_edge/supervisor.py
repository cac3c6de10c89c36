"""
One supervisor, one restart policy: every service runs in a single TaskGroup; a
TransientError restarts that service after a jittered backoff; anything else ends the
group and, through it, the process (the CLI turns it into an exit code). SIGTERM and
SIGINT stop everything in order.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from coze_edge.core.backoff import backoff
from coze_edge.errors import TransientError

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 60.0
"""A service that ran this long before failing starts its backoff over."""


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    run: Callable[[], Awaitable[None]]
    """Runs until cancelled; returning means the service is done for good."""


class _StopRequested(Exception):
    pass


def default_delays() -> Iterator[float]:
    return backoff(first=1.0, cap=60.0)


async def keep_running(
    service: Service, delays: Callable[[], Iterator[float]] = default_delays
) -> None:
    loop = asyncio.get_running_loop()
    pending = delays()
    while True:
        started = loop.time()
        try:
            await service.run()
            return
        except TransientError as exc:
            if loop.time() - started > HEALTHY_AFTER_S:
                pending = delays()  # it worked for a while: start over
            delay = next(pending)
            log.warning("%s failed: %s; retrying in %.1f s", service.name, exc, delay)
            await asyncio.sleep(delay)


async def _raise_when_set(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _StopRequested


async def supervise(
    services: list[Service],
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    stop: asyncio.Event | None = None,
    delays: Callable[[], Iterator[float]] = default_delays,
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
                tasks.create_task(keep_running(service, delays), name=service.name)
    except* _StopRequested:
        log.info("stopping%s", f" on {received[0]}" if received else "")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
