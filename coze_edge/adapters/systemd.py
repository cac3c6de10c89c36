"""
sd_notify in a few lines of our own: READY, STATUS, WATCHDOG and STOPPING datagrams to
``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract namespace). Outside systemd every
call is a no-op that returns False.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def notify(message: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` to systemd; False when there is no socket or the send failed."""
    address = _env(env).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("! sd_notify %r failed: %s", message.split("=")[0], exc)
        return False
    return True


def ready(*, env: Mapping[str, str] | None = None) -> bool:
    return notify("READY=1", env=env)


def status(text: str, *, env: Mapping[str, str] | None = None) -> bool:
    return notify(f"STATUS={text.replace(chr(10), ' ')}", env=env)


def stopping(*, env: Mapping[str, str] | None = None) -> bool:
    return notify("STOPPING=1", env=env)


def watchdog_ping(*, env: Mapping[str, str] | None = None) -> bool:
    return notify("WATCHDOG=1", env=env)


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    values = _env(env)
    return bool(values.get("JOURNAL_STREAM") or values.get("INVOCATION_ID"))


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec=), or None when no watchdog is asked for."""
    values = _env(env)
    try:
        usec = int(values.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = values.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


class Watchdog:
    """Pings WATCHDOG=1 every ``interval`` while ``healthy()`` and the loop keeps time."""

    def __init__(
        self,
        *,
        interval: float,
        healthy: Callable[[], bool],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._interval = interval
        self._healthy = healthy
        self._env = env
        self.skipped = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += self._interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            lag = loop.time() - due
            if lag > self._interval:
                # The loop was stalled for longer than a ping period: let systemd notice.
                log.warning("! event loop stalled %.1f s; skipping the watchdog ping", lag)
                self.skipped += 1
                due = loop.time()
            elif not self._healthy():
                log.warning("! audio stalled; skipping the watchdog ping")
                self.skipped += 1
            else:
                watchdog_ping(env=self._env)
