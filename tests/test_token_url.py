"""
``auth.method: token_url``, the device's half: tokens from the vendor's token service,
kept like OAuth tokens (renewed ahead of expiry, every passing failure retried under the
supervisor with the current token kept, a refused secret an error state retried slowly).
End to end: the real daemon against the real token service against the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coze_edge.core.status import DeviceStatus, State
from coze_edge.daemon import Daemon
from coze_edge.errors import TransientError
from coze_edge.simulator import Simulator
from coze_edge.supervisor import Service, keep_running
from coze_edge.token_url import (
    TokenServiceClient,
    TokenServiceRefused,
    TokenServiceTokens,
    TokenServiceUnavailable,
    parse_token,
)
from tests.support.cli import run_cli, running_cli, write_cli_config
from tests.support.daemon import ONE_QUESTION, daemon_config, supervised
from tests.support.jwt_app import secret_for, token_service
from tests.support.timing import MS

# --------------------------------------------------------------------------- the answer


@pytest.mark.parametrize(
    ("body", "lifetime"),
    [
        ({"access_token": "t", "expires_in": 900}, 900.0),
        ({"access_token": "t", "expires_in": 900.5, "expires_at": 1}, 900.5),
        ({"access_token": "t", "expires_in": 3}, 60.0),  # never spin on a dying token
        ({"access_token": "t", "expires_in": 10**9}, 30 * 86400.0),
    ],
)
def test_a_token_lives_as_long_as_the_service_says_within_bounds(
    body: dict[str, Any], lifetime: float
) -> None:
    """``expires_in`` is seconds from now (a device's clock may be wrong after a boot),
    held between a minute and 30 days."""
    token = parse_token(body, now=1000.0)

    assert (token.access_token, token.expires_at - 1000.0) == ("t", lifetime)


@pytest.mark.parametrize(
    "body",
    [[], {}, {"access_token": ""}, {"access_token": "t"}, {"access_token": "t", "expires_in": "9"}],
)
def test_an_answer_without_a_token_and_lifetime_is_not_a_token(body: Any) -> None:
    with pytest.raises(ValueError, match=r"not a JSON object|access_token|expires_in"):
        parse_token(body, now=0.0)


# --------------------------------------------------------------------------- a scripted service


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def granted(token: str, lifetime: int = 600) -> Answer:
    return Answer(body=json.dumps({"access_token": token, "expires_in": lifetime}))


@dataclass
class ScriptedService:
    """A token service on loopback that gives the scripted answers in order (the last
    one again when they run out), and records each request."""

    url: str
    script: list[Answer]
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def scripted_service(*script: Answer) -> AsyncIterator[ScriptedService]:
    service = ScriptedService("", list(script))

    async def answer(request: web.Request) -> web.Response:
        service.requests.append((dict(request.headers), await request.json()))
        reply = service.script.pop(0) if len(service.script) > 1 else service.script[0]
        await asyncio.sleep(reply.delay_s)
        return web.Response(
            status=reply.status,
            text=reply.body,
            content_type=reply.content_type,
            headers=reply.headers,
        )

    app = web.Application()
    app.add_routes([web.post("/token", answer)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    service.url = f"http://127.0.0.1:{port}/token"
    try:
        yield service
    finally:
        await runner.cleanup()


def client_for(url: str, **options: Any) -> TokenServiceClient:
    return TokenServiceClient(url, "42", lambda: "s3cret", read_timeout=300 * MS, **options)


REFUSED = [
    (Answer(401, '{"error": "invalid_client", "error_message": "wrong secret"}'), "HTTP 401"),
    (Answer(403, ""), "HTTP 403"),
    (Answer(404, "<html>Not Found</html>", "text/html"), "check auth.token_url"),
    (Answer(405, ""), "check auth.token_url"),
    (Answer(302, "", headers={"Location": "https://elsewhere/"}), "to https://elsewhere/"),
]
PASSING = [
    Answer(500, ""),
    Answer(502, "<html>Bad Gateway</html>", "text/html"),
    Answer(503, '{"error": "temporarily_unavailable"}'),
    Answer(504, ""),
    Answer(408, ""),
    Answer(429, '{"error": "slow_down"}', headers={"Retry-After": "7"}),
    Answer(200, "<html>Sign in to the hotel Wi-Fi</html>", "text/html"),
    Answer(200, '{"access_token": ""}'),
    Answer(delay_s=1.0),  # longer than the read timeout
]


@pytest.mark.parametrize(("answer", "says"), REFUSED, ids=[a.status for a, _ in REFUSED])
async def test_a_refusal_only_a_person_can_fix_says_what_to_do(answer: Answer, says: str) -> None:
    """401/403 (the secret), another 4xx or a redirect (the URL): TokenServiceRefused,
    retried after refused_retry_s, with a detail that names the key to fix."""
    async with scripted_service(answer) as service:
        client = client_for(service.url, refused_retry_s=123.0)
        with pytest.raises(TokenServiceRefused) as refused:
            await client.fetch(now=time.time())

    assert refused.value.retry_after == 123.0
    assert says in refused.value.detail
    if answer.status in (401, 403):
        assert "auth.device_secret_file" in refused.value.detail
        assert "42" in refused.value.detail


@pytest.mark.parametrize("answer", PASSING, ids=lambda a: f"{a.status}-{a.delay_s or a.body[:9]}")
async def test_a_failure_that_passes_is_retried(answer: Answer) -> None:
    """5xx, 408, 429, a page that is not the service's JSON, a timeout: a transient
    TokenServiceUnavailable (at least Retry-After before the next try)."""
    async with scripted_service(answer) as service:
        with pytest.raises(TokenServiceUnavailable) as failed:
            await client_for(service.url).fetch(now=time.time())

    assert failed.value.retry_after == (7.0 if answer.status == 429 else None)


async def test_no_service_listening_is_a_failure_that_passes() -> None:
    async with scripted_service(granted("t")) as service:
        url = service.url
    with pytest.raises(TokenServiceUnavailable, match="ConnectError"):
        await client_for(url).fetch(now=time.time())


async def test_the_device_sends_its_id_and_secret_and_the_refused_token() -> None:
    """The request: the secret as a bearer token; the device id, and the token Coze
    refused when there is one, in the JSON body."""
    async with scripted_service(granted("t1"), granted("t2")) as service:
        client = client_for(service.url)
        await client.fetch(now=time.time())
        await client.fetch(now=time.time(), rejected="t1")

    (headers, first), (_, second) = service.requests
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["User-Agent"].startswith("coze-edge/")
    assert first == {"device_id": "42"}
    assert second == {"device_id": "42", "rejected": "t1"}


# --------------------------------------------------------------------------- the keeper


class SteppedClock:
    """Real time plus an offset the test moves forward, to jump to a renewal."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep_until(self, t: float) -> None:
        while self.now() < t:  # noqa: ASYNC110 - the offset moves without an event
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def kept(
    client: TokenServiceClient, clock: SteppedClock
) -> AsyncIterator[tuple[TokenServiceTokens, list[TransientError]]]:
    """A managed keeper under the supervisor's policy (50 ms between tries), and the
    failures the policy saw."""
    keeper = TokenServiceTokens(client, managed=True, clock=clock)
    failures: list[TransientError] = []
    service = Service(
        "token-keeper",
        keeper.run,
        delays=lambda: itertools.repeat(0.05),
        on_failure=failures.append,
    )
    task = asyncio.create_task(keep_running(service))
    try:
        yield keeper, failures
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(predicate: Callable[[], bool], within_s: float) -> None:
    async with asyncio.timeout(within_s):
        while not predicate():  # noqa: ASYNC110 - polling a record
            await asyncio.sleep(0.01)


async def test_passing_failures_are_retried_and_the_current_token_kept() -> None:
    """At renewal time the service fails four ways in a row: the keeper tries again after
    each backoff, the conversation keeps getting the current token meanwhile, and the
    fifth answer replaces it. Then it waits for the next renewal: no more requests."""
    async with scripted_service(
        granted("t1"),
        Answer(503, ""),
        Answer(200, "<html>portal</html>", "text/html"),
        Answer(429, "", headers={"Retry-After": "0"}),
        Answer(delay_s=1.0),
        granted("t2"),
    ) as service:
        clock = SteppedClock()
        async with kept(client_for(service.url), clock) as (keeper, failures):
            async with asyncio.timeout(2000 * MS):
                assert await keeper.token() == "t1"
            clock.offset = 600 - 100  # inside the 2-minute renewal margin, before expiry
            await until(lambda: len(failures) >= 1, 2000 * MS)
            async with asyncio.timeout(50 * MS):
                assert await keeper.token() == "t1"
            await until(
                lambda: keeper.current is not None and keeper.current.access_token == "t2",
                5000 * MS,
            )
            async with asyncio.timeout(50 * MS):
                assert await keeper.token() == "t2"
            await asyncio.sleep(300 * MS)

    assert len(service.requests) == 6
    assert [type(f) for f in failures] == [TokenServiceUnavailable] * 4
    assert [f.retry_after for f in failures] == [None, None, 0.0, None]


async def test_an_expired_token_is_not_handed_out_while_the_service_is_away() -> None:
    """Past its expiry the current token is no use: the conversation waits until the
    service answers again, then gets the new one."""
    async with scripted_service(granted("t1"), Answer(503, "")) as service:
        clock = SteppedClock()
        async with kept(client_for(service.url), clock) as (keeper, failures):
            assert await asyncio.wait_for(keeper.token(), 2000 * MS) == "t1"
            clock.offset = 700
            await until(lambda: len(failures) >= 2, 2000 * MS)
            waiting = asyncio.create_task(keeper.token())
            await asyncio.sleep(200 * MS)
            assert not waiting.done()
            service.script[:] = [granted("t3")]
            assert await asyncio.wait_for(waiting, 2000 * MS) == "t3"


async def test_a_token_coze_refused_is_replaced_and_never_taken_back() -> None:
    """Coze refuses the token: the keeper asks at once, naming it; a service that hands
    the same token back is a failure, retried after the backoff, not a loop."""
    async with scripted_service(granted("t1"), granted("t1"), granted("t4")) as service:
        clock = SteppedClock()
        async with kept(client_for(service.url), clock) as (keeper, failures):
            assert await asyncio.wait_for(keeper.token(), 2000 * MS) == "t1"
            await asyncio.wait_for(keeper.rejected("t1"), 2000 * MS)
            assert await asyncio.wait_for(keeper.token(), 50 * MS) == "t4"

    assert [body for _, body in service.requests] == [
        {"device_id": "42"},
        {"device_id": "42", "rejected": "t1"},
        {"device_id": "42", "rejected": "t1"},
    ]
    assert [str(f) for f in failures] == [
        "the token service handed back the token Coze refused; asking again later"
    ]


# --------------------------------------------------------------------------- the daemon


def secret_file(directory: Path, secret: str) -> Path:
    path = directory / "device-secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


async def test_a_fleet_device_talks_with_a_token_from_the_token_service(
    sim: Simulator, tmp_path: Path
) -> None:
    """``coze-edge run`` with token_url: the token service signs a grant for this device,
    Coze (the simulator) sees the device's id in device_info, and a turn completes with
    the token it issued; the secret is never logged."""
    async with token_service(sim) as service:
        secret = secret_for("5551234")
        config = write_cli_config(
            tmp_path,
            sim,
            auth={
                "method": "token_url",
                "token_url": service.url,
                "device_secret_file": str(secret_file(tmp_path, secret)),
            },
        )
        async with running_cli(config) as daemon:
            await asyncio.wait_for(daemon.read_until("turn:"), 30_000 * MS)

    assert daemon.returncode == 0, daemon.output
    (grant,) = sim.jwt_grants
    assert grant.device_info == {"device_id": "5551234"}
    assert grant.session_name == "5551234"
    assert sim.connections[-1].token == grant.access_token
    assert sim.connections[-1].query["device_id"] == "5551234"
    assert "access token from the token service" in daemon.output
    assert secret not in daemon.output
    assert grant.access_token not in daemon.output


async def test_a_command_gets_its_token_from_the_token_service(
    sim: Simulator, tmp_path: Path
) -> None:
    """``coze-edge voices`` asks the token service by itself (no keeper)."""
    async with token_service(sim) as service:
        config = write_cli_config(
            tmp_path,
            sim,
            auth={
                "method": "token_url",
                "token_url": service.url,
                "device_secret_file": str(secret_file(tmp_path, secret_for("5551234"))),
            },
        )
        result = await run_cli("voices", "-c", str(config))

    assert result.returncode == 0, result.stdout
    assert sim.jwt_grants[0].device_info == {"device_id": "5551234"}


async def test_a_wrong_secret_is_an_error_state_retried_slowly_until_fixed(
    sim: Simulator, tmp_path: Path
) -> None:
    """The service refuses the device's secret: state error saying what to fix, the
    daemon stays up and asks again only every refused_retry_s; once the file holds the
    right secret the next try gets a token, the error clears and a turn completes."""
    states: list[DeviceStatus] = []
    events: list[dict[str, Any]] = []
    async with token_service(sim) as service:
        path = secret_file(tmp_path, secret_for("43"))
        config = daemon_config(
            sim,
            tmp_path,
            audio=ONE_QUESTION,
            auth={
                "method": "token_url",
                "token_url": service.url,
                "device_secret_file": str(path),
                "refused_retry_s": 1.0,
            },
        )
        daemon = Daemon(config, on_status=states.append, on_event=events.append, env={})
        async with supervised(daemon) as task:
            await until(lambda: service.refused >= 1 and bool(states), 5000 * MS)
            await asyncio.sleep(2.5)
            refused = service.refused
            error = daemon.status.get_nowait()
            path.write_text(secret_for("42") + "\n")
            await until(lambda: any(e["type"] == "turn" for e in events), 15_000 * MS)
            assert not task.done()

    assert 2 <= refused <= 4  # slowly: once a second at most, not a loop
    assert error.state is State.ERROR
    assert error.detail is not None
    assert error.detail.startswith("auth: the token service refused device 42's secret (HTTP 401")
    assert "auth.device_secret_file" in error.detail
    assert states[-1].detail is None or not states[-1].detail.startswith("auth:")
    assert sim.jwt_grants[-1].device_info == {"device_id": "42"}


@pytest.mark.parametrize(
    ("device", "code", "says"),
    [
        ("5551234", 0, "ok    credentials  token from the token service for device 5551234"),
        ("43", 1, "FAIL  credentials  the token service refused device 5551234's secret (HTTP 401"),
    ],
    ids=["its own secret", "another device's secret"],
)
async def test_doctor_asks_the_token_service(
    sim: Simulator, tmp_path: Path, device: str, code: int, says: str
) -> None:
    """``coze-edge doctor`` with token_url gets a token for the device and tries it on
    Coze; a refused secret is a FAIL line that says what to put where."""
    async with token_service(sim) as service:
        config = write_cli_config(
            tmp_path,
            sim,
            auth={
                "method": "token_url",
                "token_url": service.url,
                "device_secret_file": str(secret_file(tmp_path, secret_for(device))),
            },
        )
        result = await run_cli("doctor", "-c", str(config))

    assert result.returncode == code, result.stdout
    assert says in result.stdout
    if code == 0:
        assert "ok    coze ws" in result.stdout


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("auth", "says"),
    [
        ({"method": "token_url"}, "auth.token_url: required with method token_url"),
        (
            {"method": "token_url", "token_url": "http://tokens.example.com/token"},
            "auth.token_url: must start with https://",
        ),
        (
            {"method": "token_url", "token_url": "https://u:p@tokens.example.com/token"},
            "auth.token_url: must not hold a user name or password",
        ),
        (
            {"method": "token_url", "token_url": "tokens.example.com"},
            "auth.token_url: must be a URL",
        ),
        (
            {"method": "token_url", "token_url": "https://t.example/token", "refused_retry_s": 0},
            "auth.refused_retry_s: must be more than 0 s",
        ),
        ({"method": "jwt"}, "auth.method: must be device_code, pat or token_url"),
    ],
)
async def test_check_config_refuses_a_token_url_it_cannot_use(
    sim: Simulator, tmp_path: Path, auth: dict[str, Any], says: str
) -> None:
    """A missing or unsafe token_url (http:// beyond this machine would carry the secret
    in clear text) is exit 78 with the key and what to do."""
    config = write_cli_config(tmp_path, sim, auth=auth)

    result = await run_cli("check-config", "-c", str(config))

    assert result.returncode == 78
    assert says in result.stdout


@pytest.mark.parametrize(
    "url", ["https://tokens.example.com/token", "http://127.0.0.1:8791/token", "http://[::1]/t"]
)
async def test_check_config_takes_https_and_loopback_http(
    sim: Simulator, tmp_path: Path, url: str
) -> None:
    config = write_cli_config(tmp_path, sim, auth={"method": "token_url", "token_url": url})

    result = await run_cli("check-config", "-c", str(config))

    assert result.returncode == 0, result.stdout


async def test_run_without_a_device_secret_exits_77(sim: Simulator, tmp_path: Path) -> None:
    """No secret file and no credential: nothing the daemon can do alone (exit 77)."""
    config = write_cli_config(
        tmp_path, sim, auth={"method": "token_url", "token_url": "http://127.0.0.1:9/token"}
    )

    result = await run_cli("run", "-c", str(config))

    assert result.returncode == 77
    assert "auth.device_secret_file" in result.stdout
