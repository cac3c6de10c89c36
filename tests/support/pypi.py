"""
A stand-in for PyPI's JSON API on loopback (``/pypi/coze-edge/json``), for the update check:
it answers what it is told (a version, or an HTTP error) and records who asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class FakePypi:
    """PyPI's JSON API for coze-edge on loopback: what it answers, and who asked."""

    url: str
    status: int = 200
    version: str = "9.9.9"
    asked: list[str] = field(default_factory=list)
    """The User-Agent of each request."""


@contextlib.asynccontextmanager
async def fake_pypi(**answer: Any) -> AsyncIterator[FakePypi]:
    pypi = FakePypi(url="", **answer)

    async def project(request: web.Request) -> web.Response:
        pypi.asked.append(request.headers.get("User-Agent", ""))
        body = {"info": {"name": "coze-edge", "version": pypi.version}, "releases": {}}
        return web.json_response(body, status=pypi.status)

    app = web.Application()
    app.router.add_get("/pypi/coze-edge/json", project)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    pypi.url = f"http://{host}:{port}/pypi/coze-edge/json"
    try:
        yield pypi
    finally:
        await runner.cleanup()
