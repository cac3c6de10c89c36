"""The update check's schedule and its reading of PyPI's answer (no network: a fake
transport; tests/test_ha_device.py runs it through the daemon against a loopback PyPI)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from coze_edge.core.status import UpdateInfo
from coze_edge.updates import CHECK_EVERY, UpdateChecker, wait_before_asking
from tests.support.timing import MS

NOW = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
URL = "https://pypi.example/pypi/coze-edge/json"


@pytest.mark.parametrize(
    ("checked_at", "wait"),
    [
        (None, timedelta(0)),
        (NOW, CHECK_EVERY),
        (NOW - timedelta(hours=23), timedelta(hours=1)),
        (NOW - timedelta(days=3), timedelta(0)),
        (NOW + timedelta(days=400), timedelta(0)),
    ],
)
def test_pypi_is_asked_at_most_daily(checked_at: datetime | None, wait: timedelta) -> None:
    """Never asked: now; asked: a day after; a clock that went back: now."""
    assert wait_before_asking(checked_at, NOW) == wait


async def checked(tmp_path: Path, reply: httpx.Response) -> tuple[UpdateInfo, int]:
    """What one run of the checker shows after its first question, and how often it asked."""
    asked = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal asked
        asked += 1
        return reply

    checker = UpdateChecker(
        URL, tmp_path, "0.1.0", clock=lambda: NOW, transport=httpx.MockTransport(answer)
    )
    task = asyncio.create_task(checker.run())
    try:
        async with asyncio.timeout(5000 * MS):
            while asked == 0:  # noqa: ASYNC110 - polls a count the transport keeps
                await asyncio.sleep(5 * MS)
            await asyncio.sleep(50 * MS)  # the answer is handled by then
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return checker.info.get_nowait(), asked


async def test_the_answer_is_shown_and_kept_with_its_time(tmp_path: Path) -> None:
    """info.version of PyPI's answer becomes the latest version, saved with when it came."""
    body = {"info": {"version": "0.2.0"}, "releases": {"0.1.0": [], "0.2.0": []}}
    info, asked = await checked(tmp_path, httpx.Response(200, json=body))

    assert info == UpdateInfo("0.1.0", "0.2.0")
    assert asked == 1
    saved = json.loads((tmp_path / "update.json").read_text())
    assert saved == {"latest": "0.2.0", "checked_at": NOW.isoformat()}


async def test_a_kept_answer_of_today_is_shown_without_asking(tmp_path: Path) -> None:
    """After a restart the day's answer stands: nothing is asked."""
    checked_at = (NOW - timedelta(hours=2)).isoformat()
    (tmp_path / "update.json").write_text(json.dumps({"latest": "0.3.0", "checked_at": checked_at}))
    checker = UpdateChecker(
        URL, tmp_path, "0.1.0", clock=lambda: NOW, transport=httpx.MockTransport(_refuse)
    )
    task = asyncio.create_task(checker.run())
    try:
        async with asyncio.timeout(5000 * MS):
            info = await checker.info.wait_changed()
        await asyncio.sleep(50 * MS)  # time enough to ask, if it were going to
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert info == UpdateInfo("0.1.0", "0.3.0")


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError("asked PyPI although today's answer was kept")


@pytest.mark.parametrize(
    "body",
    [b"<html>a captive portal</html>", b'{"info": {}}', b'{"info": {"version": "<script>"}}'],
)
async def test_an_answer_that_is_not_pypis_leaves_the_latest_unknown(
    tmp_path: Path, body: bytes
) -> None:
    """A portal's page, no version, or a version that is not one: nothing is shown or kept."""
    info, asked = await checked(tmp_path, httpx.Response(200, content=body))

    assert info == UpdateInfo("0.1.0", None)
    assert asked == 1
    assert not (tmp_path / "update.json").exists()
