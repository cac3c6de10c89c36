"""The simulator's own behaviour, over real loopback sockets: httpx for REST, websockets for
/v1/chat. (tests/test_simulator_cozepy.py proves the shapes with the official client.)"""

from __future__ import annotations

import html
import os

import httpx

from coze_edge.simulator import Simulator

MS = 0.001 * float(os.environ.get("COZE_EDGE_TEST_SLOWDOWN", "1"))


async def test_the_device_page_shows_a_user_code_as_text() -> None:
    """A user_code in the link's query is escaped into the page, never run as markup."""
    hostile = "'><script>alert(1)</script>"
    async with Simulator() as sim, httpx.AsyncClient(timeout=5000 * MS) as http:
        response = await http.get(f"{sim.api_base}/device", params={"user_code": hostile})

    assert response.status_code == 200
    assert "<script>" not in response.text
    assert f"value='{html.escape(hostile)}'" in response.text
