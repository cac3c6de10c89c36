"""
The update check behind Home Assistant's update entity: the newest release of coze-edge on
PyPI (its JSON API, ``mqtt.updates_url``), beside the installed one. It only tells: the
owner updates (the entity's summary says how), the daemon never installs anything.

At most once a day: a successful answer is kept in ``state_dir/update.json`` with the time
it came, and the next question waits until a day after it, across restarts too. A question
that fails (offline, PyPI down, an answer that is not PyPI's) costs one INFO line per
streak and is asked again after an hour; meanwhile the entity shows what the last answer
said, or no latest version at all. ``mqtt.check_updates: false`` asks nothing, ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx

from coze_edge.adapters.state_files import read_state, write_state
from coze_edge.core.status import UpdateInfo
from coze_edge.latest import Latest

__all__ = ["CHECK_EVERY", "RETRY_AFTER", "UpdateChecker", "wait_before_asking"]

log = logging.getLogger(__name__)

CHECK_EVERY: Final = timedelta(days=1)
"""How long an answer stands before PyPI is asked again."""

RETRY_AFTER: Final = timedelta(hours=1)
"""After a question that failed: how long until the next try."""

TIMEOUT_S: Final = 10.0
"""Connect and read timeout of the question."""

MAX_ANSWER_BYTES: Final = 4 << 20
"""PyPI's answer for a project lists every file of every release; ours is far smaller."""

_VERSION = re.compile(r"[0-9][0-9A-Za-z.+!_-]{0,63}")
"""What a release version may look like here (PEP 440 and then some): it is shown in Home
Assistant, so nothing else passes."""


class UpdateCheckFailed(Exception):
    """The question got no usable answer; the message says why, for one log line."""


def wait_before_asking(checked_at: datetime | None, now: datetime) -> timedelta:
    """
    How long to wait before asking PyPI, the last answer having come at ``checked_at``
    (None: never). A ``checked_at`` in the future means the clock went back (a Pi without
    a battery-backed clock, before NTP): it cannot be trusted, so ask now.
    """
    if checked_at is None or checked_at > now:
        return timedelta(0)
    return max(timedelta(0), checked_at + CHECK_EVERY - now)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class UpdateChecker:
    """Keeps :attr:`info` (installed and latest version) up to date; a Service's run."""

    def __init__(
        self,
        url: str,
        state_dir: Path,
        installed: str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._path = state_dir / "update.json"
        self._installed = installed
        self._clock = clock
        self._transport = transport
        self.info = Latest[UpdateInfo]()
        """What Home Assistant's update entity shows (MQTT ``update``)."""

    async def run(self) -> None:
        cached = read_state(self._path, _cached, what="the last update check")
        latest, checked_at = cached if cached is not None else (None, None)
        self.info.set(UpdateInfo(self._installed, latest))
        failing = False
        while True:
            wait = wait_before_asking(checked_at, self._clock())
            if wait:
                log.debug("= next update check in %.0f s", wait.total_seconds())
                await asyncio.sleep(wait.total_seconds())
            try:
                latest = await self._ask()
            except UpdateCheckFailed as exc:
                if not failing:
                    log.info("update check: %s; trying again hourly", exc)
                failing = True
                await asyncio.sleep(RETRY_AFTER.total_seconds())
                continue
            if failing:
                log.info("update check: PyPI answered again")
            failing = False
            checked_at = self._clock()
            self._remember(latest, checked_at)
            if latest != self._installed:
                log.info("update check: %s is out (installed: %s)", latest, self._installed)
            self.info.set(UpdateInfo(self._installed, latest))

    async def _ask(self) -> str:
        headers = {"User-Agent": f"coze-edge/{self._installed}", "Accept": "application/json"}
        try:
            async with (
                httpx.AsyncClient(
                    timeout=TIMEOUT_S,
                    follow_redirects=False,
                    transport=self._transport,
                    headers=headers,
                ) as client,
                client.stream("GET", self._url) as response,
            ):
                if response.status_code != 200:
                    raise UpdateCheckFailed(f"{self._url} answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise UpdateCheckFailed(f"{self._url} answered over {MAX_ANSWER_BYTES} B")
        except httpx.HTTPError as exc:
            why = str(exc) or type(exc).__name__
            raise UpdateCheckFailed(f"cannot reach {self._url}: {why}") from exc
        try:
            return _latest_version(bytes(body))
        except ValueError as exc:
            raise UpdateCheckFailed(f"{self._url} did not answer as PyPI does: {exc}") from None

    def _remember(self, latest: str, checked_at: datetime) -> None:
        try:
            write_state(self._path, {"latest": latest, "checked_at": checked_at.isoformat()})
        except OSError as exc:  # then the next start asks again: no harm
            log.warning("! cannot save the update check: %s", exc.strerror or exc)


def _latest_version(body: bytes) -> str:
    """``info.version`` of a PyPI JSON API answer (the newest release that is not a
    pre-release, as PyPI picks it); ValueError if there is none."""
    document: Any = json.loads(body)
    info = document.get("info") if isinstance(document, dict) else None
    version = info.get("version") if isinstance(info, dict) else None
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValueError("no info.version")
    return version


def _cached(data: Any) -> tuple[str, datetime]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    latest, checked_at = data.get("latest"), data.get("checked_at")
    if not isinstance(latest, str) or not _VERSION.fullmatch(latest):
        raise ValueError("'latest' must be a version")
    if not isinstance(checked_at, str):
        raise ValueError("'checked_at' must be a time")
    moment = datetime.fromisoformat(checked_at)
    if moment.tzinfo is None:
        raise ValueError("'checked_at' must have a time zone")
    return latest, moment
