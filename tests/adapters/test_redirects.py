"""
Redirects of the chat handshake and of the REST calls, against two loopback servers of the
tests' own (tests/support/hostile.py): the token never reaches the second.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from coze_edge.adapters.coze_http import CozeHttp
from coze_edge.adapters.coze_ws import CozeSocket, SocketSettings
from coze_edge.adapters.origins import origin
from coze_edge.core.status import State
from coze_edge.credentials import StaticToken
from coze_edge.errors import CozeUnavailable, RedirectRefused
from tests.support.cli import run_cli, write_cli_config
from tests.support.daemon import daemon_config, running_daemon
from tests.support.data import DATA
from tests.support.hostile import Accept, Hostile, Peer, Redirect, hostile_server
from tests.support.timing import MS

TOKEN = "pat_hostileRedirectToken42"
BOT = "7496347519799787557"
REDIRECTS = [301, 302, 303, 307, 308]


@pytest.fixture
async def first() -> AsyncIterator[Hostile]:
    """Where the device is told Coze is."""
    async with hostile_server() as server:
        yield server


@pytest.fixture
async def second() -> AsyncIterator[Hostile]:
    """Another origin (another loopback address), where the first one redirects."""
    async with hostile_server(host="127.0.0.2") as server:
        yield server


async def hang_up(peer: Peer) -> None:
    await peer.close()


def redirect_chat(first: Hostile, second: Hostile, status: int = 302) -> str:
    """Script ``first`` to send the handshake to ``second`` (a token in the query for bait)."""
    location = f"{second.ws_base}/v1/chat?token={TOKEN}&bot_id={BOT}"
    first.script("GET", "/v1/chat", Redirect(location, status))
    second.script("GET", "/v1/chat", Accept(hang_up))
    return location


def chat_settings(server: Hostile) -> SocketSettings:
    return SocketSettings(ws_base=server.ws_base, bot_id=BOT, open_timeout_s=3000 * MS)


def leaks(text: str) -> bool:
    return TOKEN in text or "token=" in text or "bot_id=" in text


# --- the library underneath --------------------------------------------------------------------


@pytest.fixture(params=["another host", "another port"])
async def elsewhere(request: pytest.FixtureRequest, second: Hostile) -> AsyncIterator[Hostile]:
    """Another origin than ``first``: another loopback address, or another port on its own."""
    if request.param == "another host":
        yield second
        return
    async with hostile_server() as server:
        yield server


async def test_websockets_drops_credentials_on_a_cross_origin_redirect(
    first: Hostile, elsewhere: Hostile
) -> None:
    """The installed websockets, left to follow a redirect to another origin, sends neither
    Authorization nor Cookie there (15.0 to 16.0 send both: pyproject's floor is 16.1)."""
    redirect_chat(first, elsewhere)
    headers = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={TOKEN}"}

    async with connect(
        f"{first.ws_base}/v1/chat", additional_headers=headers, open_timeout=3000 * MS
    ):
        pass

    assert first.seen[0].authorization == f"Bearer {TOKEN}"
    assert len(elsewhere.seen) == 1  # it did follow the redirect
    assert elsewhere.seen[0].authorization is None
    assert "cookie" not in elsewhere.seen[0].headers


async def test_httpx_left_to_follow_drops_authorization_on_a_cross_origin_redirect(
    first: Hostile, second: Hostile
) -> None:
    """The installed httpx, told to follow, strips Authorization for another origin; the
    body of a 307 goes along all the same (why coze_http never follows)."""
    first.script("POST", "/api/permission/oauth2/token", Redirect(f"{second.api_base}/t", 307))
    async with httpx.AsyncClient(follow_redirects=True) as client:
        await client.post(
            f"{first.api_base}/api/permission/oauth2/token",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"refresh_token": TOKEN},
        )
    assert [r.authorization for r in second.seen] == [None]
    assert TOKEN.encode() in second.seen[0].body


# --- the chat handshake ------------------------------------------------------------------------


@pytest.mark.parametrize("status", REDIRECTS)
async def test_the_chat_handshake_refuses_a_redirect_to_another_origin(
    first: Hostile, second: Hostile, status: int
) -> None:
    """A 3xx to another host: RedirectRefused (a CozeUnavailable) naming scheme://host:port,
    and nothing at all reaches the other host."""
    redirect_chat(first, second, status)

    with pytest.raises(RedirectRefused) as refused:
        await CozeSocket.open(chat_settings(first), TOKEN)

    assert isinstance(refused.value, CozeUnavailable)
    assert second.seen == []
    assert refused.value.target == f"ws://{second.origin}"
    text = str(refused.value)
    assert f"to ws://{second.origin} (another origin)" in text
    assert f"HTTP {status}" in text
    assert not leaks(text), text
    assert [r.authorization for r in first.seen] == [f"Bearer {TOKEN}"]


async def test_the_chat_handshake_refuses_a_redirect_to_its_own_origin(first: Hostile) -> None:
    """A same-origin redirect is refused as well: one request, and the error says so."""
    first.script("GET", "/v1/chat", Redirect("/v2/chat?token=" + TOKEN))
    first.script("GET", "/v2/chat", Accept(hang_up))

    with pytest.raises(RedirectRefused) as refused:
        await CozeSocket.open(chat_settings(first), TOKEN)

    assert [r.path for r in first.seen] == ["/v1/chat"]
    assert f"to ws://{first.origin} (its own origin)" in str(refused.value)
    assert not leaks(str(refused.value))


async def test_a_redirect_without_location_is_refused_too(first: Hostile) -> None:
    """A 302 with no Location header: refused, not mistaken for a refusal by Coze."""
    first.script("GET", "/v1/chat", Redirect(""))
    with pytest.raises(RedirectRefused, match="without a Location"):
        await CozeSocket.open(chat_settings(first), TOKEN)


def test_a_target_is_named_by_its_origin_alone_and_printable() -> None:
    """Only scheme://host:port of a target is shown, the default port written out, IPv6 in
    brackets, and no character that could steer a terminal or forge a log line."""
    assert origin(f"wss://user:{TOKEN}@Coze.example/v1/chat?token={TOKEN}") == (
        "wss://coze.example:443"
    )
    assert origin("ws://[::1]:8080/x") == "ws://[::1]:8080"
    assert origin("http://evil\x1b\x07h\u00f6st/") == "http://evil??h?st:80"
    assert origin("ws://[::1/") == "(an unreadable URL)"


# --- REST --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", REDIRECTS)
async def test_rest_calls_refuse_a_redirect_to_another_origin(
    first: Hostile, second: Hostile, status: int
) -> None:
    """Listing voices (token in the header) and refreshing (token in the body) are both
    refused on a redirect; the other origin sees nothing."""
    first.script("GET", "/v1/audio/voices", Redirect(f"{second.api_base}/v1/audio/voices", status))
    first.script(
        "POST",
        "/api/permission/oauth2/token",
        Redirect(f"{second.api_base}/api/permission/oauth2/token?x={TOKEN}", status),
    )

    async with CozeHttp(first.api_base) as http:
        with pytest.raises(RedirectRefused) as voices:
            await http.voices(TOKEN)
        with pytest.raises(RedirectRefused) as refresh:
            await http.refresh("client", TOKEN)

    assert second.seen == []
    for refused in (voices.value, refresh.value):
        assert refused.target == f"http://{second.origin}"
        assert not leaks(str(refused)), refused
    assert str(voices.value).startswith("GET /v1/audio/voices to http://127.0.0.1:")
    assert len(first.seen) == 2


# --- the daemon and the CLI ----------------------------------------------------------------------


async def test_the_daemon_treats_a_redirected_handshake_as_coze_unavailable(
    first: Hostile, second: Hostile, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon stays up, connecting, retries with backoff and logs where the redirect
    pointed; the other origin never hears from it."""
    caplog.set_level(logging.INFO)
    redirect_chat(first, second)
    config = daemon_config(
        first, tmp_path, audio={"backend": "file", "file_input": str(DATA / "silence-2s.wav")}
    )

    async with running_daemon(config, tokens=StaticToken(TOKEN)) as run:
        await run.wait(lambda: len(first.seen) >= 2, 5000 * MS)
        assert not run.task.done()

    assert second.seen == []
    assert {state for _, state, _ in run.states} <= {State.STARTING, State.CONNECTING}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, caplog.text
    assert f"redirected (HTTP 302) to ws://{second.origin} (another origin)" in warnings[0]
    assert "; retrying" in warnings[0]
    assert not leaks(caplog.text)


async def test_voices_prints_the_refused_redirect_and_exits_1(
    first: Hostile, second: Hostile, tmp_path: Path
) -> None:
    """`coze-edge voices` against a redirecting API: one line naming the target, exit 1."""
    first.script("GET", "/v1/audio/voices", Redirect(f"{second.api_base}/v1/audio/voices"))
    config = write_cli_config(tmp_path, first, pat=TOKEN)

    result = await run_cli("voices", "-c", str(config))

    assert result.returncode == 1, result.stdout
    assert f"to http://{second.origin} (another origin)" in result.stdout
    assert not leaks(result.stdout), result.stdout
    assert second.seen == []
