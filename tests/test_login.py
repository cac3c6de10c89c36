"""Login, token lifecycle and binding over real HTTP against the simulator on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from coze_edge.adapters.coze_http import CozeHttp
from coze_edge.adapters.token_store import BindingStore, TokenStore
from coze_edge.binding import bind_csv, ensure_bound
from coze_edge.config import Config
from coze_edge.core.status import LoginPrompt
from coze_edge.core.tokens import DeviceFlow, Token
from coze_edge.credentials import StaticToken
from coze_edge.errors import (
    AuthenticationError,
    AuthError,
    BadRequestError,
    CozeAPIError,
    CozeUnavailable,
    GatewayError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
)
from coze_edge.login import DeviceLogin, OAuthTokens
from coze_edge.simulator import Simulator
from tests.support.daemon import ONE_QUESTION, daemon_config, running_daemon

CLIENT = "1234.app.coze"


class ScaledClock:
    """Real time, five times faster: a 5 s poll interval takes 1 s."""

    def __init__(self, factor: float = 5.0) -> None:
        self._start = time.time()
        self._factor = factor

    def now(self) -> float:
        return self._start + (time.time() - self._start) * self._factor

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, (t - self.now()) / self._factor))


class FakeClock:
    """Jumps straight to each deadline, so waiting costs no real time."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    async def sleep_until(self, t: float) -> None:
        self.time = max(self.time, t)


def approver(
    sim: Simulator, prompts: list[LoginPrompt | None]
) -> Callable[[LoginPrompt | None], None]:
    def on_prompt(prompt: LoginPrompt | None) -> None:
        prompts.append(prompt)
        if prompt is not None:
            sim.approve(prompt.user_code)

    return on_prompt


async def test_device_login_saves_a_private_token_and_is_not_asked_again(tmp_path: Path) -> None:
    """A headless login shows a code, gets the token once approved, saves it 0600."""
    prompts: list[LoginPrompt | None] = []
    async with Simulator(poll_interval_s=1) as sim, CozeHttp(sim.api_base) as http:
        store = TokenStore(tmp_path)
        tokens = OAuthTokens(
            http, store, CLIENT, clock=ScaledClock(), on_prompt=approver(sim, prompts)
        )
        token = await asyncio.wait_for(tokens.token(), 20)

        again = OAuthTokens(http, store, CLIENT, on_prompt=lambda p: prompts.append(p))
        assert await again.token() == token

    assert prompts[0] is not None
    assert prompts[0].verification_url.endswith(f"?user_code={prompts[0].user_code}")
    assert prompts[-1] is None
    assert len(prompts) == 2
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["access_token"] == token


async def test_a_rejected_token_is_refreshed_and_the_rotation_persisted(tmp_path: Path) -> None:
    """rejected() refreshes; the new pair is on disk; the old refresh token is dead."""
    async with Simulator(poll_interval_s=1) as sim, CozeHttp(sim.api_base) as http:
        store = TokenStore(tmp_path)
        tokens = OAuthTokens(http, store, CLIENT, clock=ScaledClock(), on_prompt=approver(sim, []))
        first = await asyncio.wait_for(tokens.token(), 20)
        old = store.load()
        assert old is not None

        await tokens.rejected(first)

        saved = store.load()
        assert saved is not None
        assert saved.access_token != first
        assert saved.access_token == await tokens.token()
        with pytest.raises(CozeAPIError, match="invalid"):
            await http.refresh(CLIENT, old.refresh_token)


async def test_concurrent_callers_share_one_refresh(tmp_path: Path) -> None:
    """Two token() calls when a refresh is due make one refresh request."""
    async with Simulator(poll_interval_s=1) as sim, CozeHttp(sim.api_base) as http:
        store = TokenStore(tmp_path)
        await asyncio.wait_for(
            OAuthTokens(
                http, store, CLIENT, clock=ScaledClock(), on_prompt=approver(sim, [])
            ).token(),
            20,
        )
        saved = store.load()
        assert saved is not None
        # The same refresh token, but the access token has expired: a refresh is due.
        store.save(
            Token(saved.access_token, saved.refresh_token, time.time() - 1, time.time() - 901)
        )
        tokens = OAuthTokens(http, store, CLIENT)
        before = sim.token_requests

        a, b = await asyncio.gather(tokens.token(), tokens.token())

    assert a == b
    assert sim.token_requests - before == 1


async def test_a_refused_refresh_falls_back_to_a_new_login(tmp_path: Path) -> None:
    """invalid_grant on refresh starts a device flow instead of giving up."""
    prompts: list[LoginPrompt | None] = []
    async with Simulator(poll_interval_s=1) as sim, CozeHttp(sim.api_base) as http:
        store = TokenStore(tmp_path)
        store.save(Token("czu_old", "dead-refresh", time.time() - 10, time.time() - 900))
        tokens = OAuthTokens(
            http, store, CLIENT, clock=ScaledClock(), on_prompt=approver(sim, prompts)
        )

        token = await asyncio.wait_for(tokens.token(), 20)

    assert token != "czu_old"
    assert prompts[0] is not None


async def test_without_a_prompt_no_login_is_started(tmp_path: Path) -> None:
    """Commands like voices say 'run coze-edge login' instead of waiting for a person."""
    async with Simulator() as sim, CozeHttp(sim.api_base) as http:
        tokens = OAuthTokens(http, TokenStore(tmp_path), CLIENT)
        with pytest.raises(AuthError, match="coze-edge login"):
            await tokens.token()


def test_a_planted_temporary_file_cannot_capture_the_token(tmp_path: Path) -> None:
    """The temporary file of an atomic write has a fresh name and is created exclusively:
    a symlink planted at the old predictable name (by another user) gets nothing."""
    store = TokenStore(tmp_path)
    store.save(Token("czu_old", "r1", 2e9, 1e9))
    elsewhere = tmp_path / "stolen"
    (tmp_path / ".token.json.tmp").symlink_to(elsewhere)

    store.save(Token("czu_new", "r2", 2e9, 1e9))

    assert not elsewhere.exists()
    loaded = store.load()
    assert loaded is not None
    assert loaded.access_token == "czu_new"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".token.json.tmp", "token.json"]


def test_a_corrupt_token_file_is_kept_aside(tmp_path: Path) -> None:
    """A torn or edited token file is renamed, not deleted, and treated as no login."""
    store = TokenStore(tmp_path)
    store.path.write_text("{not json")

    assert store.load() is None
    assert list(tmp_path.glob("token.json.corrupt-*"))


def test_slow_down_stretches_every_later_poll() -> None:
    """RFC 8628: slow_down adds 5 s for this and all later polls; expiry is absolute."""
    flow = DeviceFlow(interval=5, expires_in=60, now=0.0)
    assert flow.next_poll_at() == 5.0
    flow.on_pending(5.0)
    assert flow.next_poll_at() == 10.0
    flow.on_slow_down(10.0)
    assert flow.next_poll_at() == 20.0
    flow.on_pending(20.0)
    assert flow.next_poll_at() == 30.0
    assert not flow.expired(59.9)
    assert flow.expired(60.0)
    assert DeviceFlow(interval=1, expires_in=60, now=0).interval == 5.0


def oauth_error(error: str) -> httpx.Response:
    return httpx.Response(400, json={"error_code": error, "error_message": error})


def device_code(n: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "device_code": f"dc{n}",
            "user_code": f"CODE-{n}",
            "verification_uri": "https://example.invalid/device",
            "expires_in": 30,
            "interval": 5,
        },
    )


async def test_polling_follows_the_rules_through_expiry_and_denial() -> None:
    """Pending, slow_down, expiry (new code), denial (wait, new code), then success."""
    clock = FakeClock(start=0.0)
    replies = iter(
        [
            device_code(1),
            oauth_error("authorization_pending"),
            oauth_error("slow_down"),
            oauth_error("authorization_pending"),
            oauth_error("authorization_pending"),  # t=30: the code expired meanwhile
            device_code(2),
            oauth_error("access_denied"),
            device_code(3),
            httpx.Response(
                200, json={"access_token": "czu_t", "expires_in": 2e9, "refresh_token": "r"}
            ),
        ]
    )
    polled: list[tuple[str, float]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        polled.append((request.url.path.rsplit("/", 1)[-1], clock.now()))
        return next(replies)

    prompts: list[LoginPrompt | None] = []
    async with CozeHttp("https://api.coze.cn", transport=httpx.MockTransport(reply)) as http:
        login = DeviceLogin(http, CLIENT, None, clock=clock, on_prompt=prompts.append)
        token = await login.run()

    assert token.access_token == "czu_t"
    assert polled[:5] == [
        ("code", 0.0),
        ("token", 5.0),
        ("token", 10.0),
        ("token", 20.0),
        ("token", 30.0),
    ]
    assert [p.user_code for p in prompts if p] == ["CODE-1", "CODE-2", "CODE-3"]
    assert prompts[-1] is None
    denied_at = polled[6][1]
    assert polled[7][1] - denied_at >= 30.0  # no tight loop after a denial


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"code": 4000, "msg": "bad"}, BadRequestError),
        (200, {"code": 4000, "msg": "bad"}, BadRequestError),
        (401, {"code": 4100, "msg": "auth"}, AuthenticationError),
        (200, {"code": 4100, "msg": "auth"}, AuthenticationError),
        (403, {"code": 4101, "msg": "perm"}, PermissionDeniedError),
        (200, {"code": 4101, "msg": "perm"}, PermissionDeniedError),
        (404, {"code": 4200, "msg": "nf"}, NotFoundError),
        (200, {"code": 4200, "msg": "nf"}, NotFoundError),
        (408, {"msg": "slow"}, RequestTimeoutError),
        (429, {"code": 4013, "msg": "rate"}, RateLimitError),
        (200, {"code": 4013, "msg": "rate"}, RateLimitError),
        (500, {"msg": "boom"}, InternalServerError),
        (502, {"msg": "gw"}, GatewayError),
        # coze-js's order: the codes are checked before 408 and 502, and a status that
        # names one class wins over a later row's code.
        (502, {"code": 4000, "msg": "bad"}, BadRequestError),
        (408, {"code": 4101, "msg": "perm"}, PermissionDeniedError),
        (400, {"code": 4100, "msg": "auth"}, BadRequestError),
        (503, {"code": 4013, "msg": "model"}, RateLimitError),
        (200, {"code": 5000, "msg": "internal"}, CozeAPIError),
    ],
)
async def test_every_error_class_from_status_and_body(
    status: int, body: dict[str, object], expected: type[CozeAPIError]
) -> None:
    """Errors map like the official SDKs, with code, status and the logid."""

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"X-Tt-Logid": "LOG42"})

    async with CozeHttp("https://api.coze.cn", transport=httpx.MockTransport(reply)) as http:
        with pytest.raises(expected) as caught:
            await http.voices("t")

    assert type(caught.value) is expected
    assert caught.value.logid == "LOG42"
    assert caught.value.http_status == status
    assert "LOG42" in caught.value.describe()


def config_for(sim: Simulator, tmp_path: Path, connector: str | None = "7700") -> Config:
    return daemon_config(
        sim, tmp_path, device={"id": "5551234", "name": "kitchen", "connector_id": connector}
    )


async def test_the_device_binds_itself_once(tmp_path: Path) -> None:
    """With a connector id the device binds once; a restart does not bind again."""
    async with Simulator() as sim, CozeHttp(sim.api_base) as http:
        config = config_for(sim, tmp_path)
        await ensure_bound(config, http, StaticToken("sim-pat"))
        await ensure_bound(config, http, StaticToken("sim-pat"))

    assert sim.bindings == [
        {
            "connector_id": "7700",
            "configs": [{"key": "device_id", "enums": [{"label": "kitchen", "value": "5551234"}]}],
        }
    ]
    assert BindingStore(tmp_path).is_bound("7700", "5551234")


async def test_the_binding_key_and_user_id_are_the_channels(tmp_path: Path) -> None:
    """device.bind_key and device.bind_user_id go into the binding as the channel wants."""
    async with Simulator() as sim, CozeHttp(sim.api_base) as http:
        config = daemon_config(
            sim,
            tmp_path,
            device={
                "id": "5551234",
                "name": "kitchen",
                "connector_id": "7700",
                "bind_key": "serial_number",
                "bind_user_id": "vendor-user-1",
            },
        )
        await ensure_bound(config, http, StaticToken("sim-pat"))

    assert sim.bindings == [
        {
            "connector_id": "7700",
            "user_id": "vendor-user-1",
            "configs": [
                {"key": "serial_number", "enums": [{"label": "kitchen", "value": "5551234"}]}
            ],
        }
    ]


async def test_a_binding_coze_cannot_be_reached_for_is_retried(tmp_path: Path) -> None:
    """Coze away: the binding raises CozeUnavailable, so the supervisor tries it again
    later (it used to give up until the next restart)."""
    async with Simulator() as sim, CozeHttp(sim.api_base) as http:
        config = config_for(sim, tmp_path)
        await sim.go_down()
        with pytest.raises(CozeUnavailable, match="binding to channel 7700 postponed"):
            await ensure_bound(config, http, StaticToken("sim-pat"))
        await sim.come_up()
        await ensure_bound(config, http, StaticToken("sim-pat"))
        assert len(sim.bindings) == 1


async def test_a_permission_error_explains_what_is_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """4101 on bind names the bindConnectorConfig permission and remembers nothing."""
    async with Simulator() as sim, CozeHttp(sim.api_base) as http:
        sim.faults.bind_error_code = 4101
        await ensure_bound(config_for(sim, tmp_path), http, StaticToken("sim-pat"))

    assert "bindConnectorConfig" in caplog.text
    assert not BindingStore(tmp_path).is_bound("7700", "5551234")


async def test_csv_binding_reports_every_row(tmp_path: Path) -> None:
    """Vendor provisioning: each row bound or refused with a reason, then a summary."""
    rows = tmp_path / "devices.csv"
    rows.write_text("device_id,name,serial\n111,Living room,A1\nabc,Bad,A2\n222,Kitchen,A3\n")
    out = io.StringIO()
    async with Simulator() as sim, CozeHttp(sim.api_base) as http:
        code = await bind_csv(
            rows, config_for(sim, tmp_path), http, StaticToken("sim-pat"), out=out
        )

    report = out.getvalue().splitlines()
    assert code == 1
    assert report[0] == "line 2: 111: bound as 'Living room'"
    assert report[1].startswith("line 3: skipped")
    assert report[2] == "line 4: 222: bound as 'Kitchen'"
    assert report[3] == "2 of 3 bound to channel 7700"
    assert [b["configs"][0]["enums"][0]["value"] for b in sim.bindings] == ["111", "222"]


async def test_error_4100_mid_session_refreshes_and_reconnects(tmp_path: Path) -> None:
    """Coze saying 4100 on an open session: refresh the token, reconnect with the new one."""
    async with Simulator(poll_interval_s=1) as sim, CozeHttp(sim.api_base) as http:
        store = TokenStore(tmp_path)
        tokens = OAuthTokens(http, store, CLIENT, clock=ScaledClock(), on_prompt=approver(sim, []))
        first = await asyncio.wait_for(tokens.token(), 20)
        sim.faults.error_on_complete = 4100
        config = daemon_config(
            sim,
            tmp_path,
            auth={"method": "device_code", "client_id": CLIENT},
            audio=ONE_QUESTION,
        )
        async with running_daemon(config, tokens=tokens):
            await sim.wait_for(lambda: len(sim.connections) == 2, 20)

    assert sim.connections[0].token == first
    assert sim.connections[1].token != first
    saved = store.load()
    assert saved is not None
    assert saved.access_token == sim.connections[1].token


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs: a real file system that can fill up (scripts/test runs as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system says it is full."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, bytes(512))
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_keeps_the_refreshed_token_in_memory_until_it_fits(
    tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Disk full at a refresh: the old file stays whole, the daemon keeps working with the
    new pair (the old refresh token is dead), and it is saved once there is room."""
    async with Simulator(poll_interval_s=1) as sim, CozeHttp(sim.api_base) as http:
        store = TokenStore(tiny_disk)
        clock = ScaledClock(factor=30.0)  # the 30 s save retry takes 1 s
        tokens = OAuthTokens(http, store, CLIENT, clock=clock, on_prompt=approver(sim, []))
        first = await asyncio.wait_for(tokens.token(), 20)
        filler = fill(tiny_disk)

        await tokens.rejected(first)  # a refresh, whose new pair the disk refuses

        fresh = await tokens.token()
        assert fresh != first
        assert tokens.unsaved
        on_disk = store.load()
        assert on_disk is not None
        assert on_disk.access_token == first  # the old file, whole
        assert not [p for p in os.listdir(tiny_disk) if p.endswith(".tmp")]
        assert "No space left on device" in caplog.text
        assert fresh not in caplog.text

        keeper = asyncio.create_task(tokens.run())
        try:
            filler.unlink()
            async with asyncio.timeout(5):
                while tokens.unsaved:  # noqa: ASYNC110 - the keeper retries on its clock
                    await asyncio.sleep(0.05)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        saved = store.load()
        assert saved is not None
        assert saved.access_token == fresh
