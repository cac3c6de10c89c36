"""
The JWT grant, both halves: the simulator checks a JWT app's grant as Coze documents it
(every refusal case), and the vendor's token service (``coze-edge token-service``) signs
grants for devices it authenticates, caches their tokens and says what went wrong.
Real parts: RSA keys made here, the simulator and the service on loopback, the real CLI.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

with warnings.catch_warnings(record=True):
    # As in test_simulator_cozepy.py: cozepy imports authlib's deprecated jose module,
    # whose warning would otherwise outrank the suite's "error" filter for good.
    import cozepy
    from cozepy.request import Requester, SyncHTTPClient

from coze_edge.core.tokens import Token
from coze_edge.simulator import Simulator, TokenFault
from coze_edge.token_service import JWT_GRANT, TokenCache, device_secret
from tests.support.cli import run_cli, start_cli
from tests.support.jwt_app import MASTER_KEY, JwtApp, jwt_app, secret_for, token_service
from tests.support.ports import free_port
from tests.support.timing import MS

TOKEN_PATH = "/api/permission/oauth2/token"


# --------------------------------------------------------------------------- the simulator


def claims(sim: Simulator, app: JwtApp, **changes: Any) -> dict[str, Any]:
    """Claims Coze accepts for ``app``; a change to None leaves the claim out."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": app.app_id,
        "aud": urllib.parse.urlsplit(sim.api_base).netloc,
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_urlsafe(32),
        "session_context": {"device_info": {"device_id": "42"}},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(app: JwtApp, payload: dict[str, Any], *, key: str | None = None, **header: Any) -> str:
    headers = {k: v for k, v in {"kid": app.kid, "typ": "JWT", **header}.items() if v is not None}
    return jwt.encode(payload, key or app.private_pem, algorithm="RS256", headers=headers)


async def exchange(
    sim: Simulator, assertion: str | None, body: dict[str, Any] | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {assertion}"} if assertion is not None else {}
    async with httpx.AsyncClient(base_url=sim.api_base) as client:
        return await client.post(
            TOKEN_PATH, json=body or {"grant_type": JWT_GRANT}, headers=headers
        )


async def test_the_simulator_grants_a_well_signed_jwt_and_records_the_device(
    sim: Simulator,
) -> None:
    """A JWT signed by a registered key gets a token that works, with the asked lifetime
    as an absolute expiry and no refresh token; the grant's device_info is recorded."""
    app = jwt_app()
    sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
    payload = claims(sim, app, session_name="42")

    answer = await exchange(
        sim, signed(app, payload), {"grant_type": JWT_GRANT, "duration_seconds": 1200}
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["access_token"].startswith("czs_")
    assert "refresh_token" not in body
    assert abs(body["expires_in"] - (time.time() + 1200)) < 5
    (grant,) = sim.jwt_grants
    assert (grant.app_id, grant.kid, grant.duration_s) == (app.app_id, app.kid, 1200)
    assert grant.device_info == {"device_id": "42"}
    assert grant.session_name == "42"
    assert grant.access_token == body["access_token"]
    async with httpx.AsyncClient(base_url=sim.api_base) as client:
        voices = await client.get(
            "/v1/audio/voices", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    assert voices.status_code == 200


async def test_cozepys_own_jwt_app_is_granted_by_the_simulator(sim: Simulator) -> None:
    """cozepy's JWT app (signed with authlib, not PyJWT) gets a token: the simulator's
    checks are Coze's, not the token service's habits."""
    app = jwt_app()
    sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
    client = cozepy.JWTOAuthApp(app.app_id, app.private_pem, app.kid, base_url=sim.api_base)
    # Give cozepy an HTTP client we can close, so no socket outlives the test.
    http = SyncHTTPClient()  # type: ignore[no-untyped-call]
    client._requester = Requester(sync_client=http)

    try:
        token = await asyncio.to_thread(client.get_access_token, 900)
    finally:
        http.close()

    assert token.access_token.startswith("czs_")
    (grant,) = sim.jwt_grants
    assert grant.duration_s == 900
    assert grant.device_info is None


Case = Callable[[Simulator, JwtApp], tuple[str | None, dict[str, Any]]]


def _jwt(**changes: Any) -> Case:
    return lambda sim, app: (signed(app, claims(sim, app, **changes)), {"grant_type": JWT_GRANT})


def _times(iat: int, exp: int) -> Case:
    """``iat`` and ``exp`` this many seconds from the moment of the request."""

    def make(sim: Simulator, app: JwtApp) -> tuple[str | None, dict[str, Any]]:
        now = int(time.time())
        return _jwt(iat=now + iat, exp=now + exp)(sim, app)

    return make


def _header(**header: Any) -> Case:
    return lambda sim, app: (signed(app, claims(sim, app), **header), {"grant_type": JWT_GRANT})


def _body(**body: Any) -> Case:
    return lambda sim, app: (signed(app, claims(sim, app)), {"grant_type": JWT_GRANT, **body})


def _hs256(sim: Simulator, app: JwtApp) -> tuple[str | None, dict[str, Any]]:
    # The classic confusion: an HMAC "signature" keyed with the public key. Made by hand:
    # PyJWT refuses to sign it.
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": app.kid}).encode())
    body = part(json.dumps(claims(sim, app)).encode())
    mac = hmac.new(app.public_pem.encode(), f"{header}.{body}".encode(), hashlib.sha256)
    return f"{header}.{body}.{part(mac.digest())}", {"grant_type": JWT_GRANT}


def _other_key(sim: Simulator, app: JwtApp) -> tuple[str | None, dict[str, Any]]:
    other = jwt_app("other")
    return signed(app, claims(sim, app), key=other.private_pem), {"grant_type": JWT_GRANT}


REFUSALS: dict[str, tuple[Case, str, str]] = {
    "no Authorization": (
        lambda s, a: (None, {"grant_type": JWT_GRANT}),
        "invalid_client",
        "no JWT",
    ),
    "not a JWT": (
        lambda s, a: ("abc.def", {"grant_type": JWT_GRANT}),
        "invalid_client",
        "malformed",
    ),
    "signed by another key": (_other_key, "invalid_client", "signature"),
    "HS256": (_hs256, "invalid_client", "alg must be RS256"),
    "typ": (_header(typ="JWS"), "invalid_client", "typ must be JWT"),
    "unknown kid": (_header(kid="kid-nobody"), "invalid_client", "kid"),
    "no kid": (_header(kid=None), "invalid_client", "kid"),
    "another app's iss": (_jwt(iss="999"), "invalid_client", "iss"),
    "aud of another host": (_jwt(aud="api.coze.cn"), "invalid_client", "aud must be"),
    "expired": (_times(iat=-1000, exp=-600), "invalid_client", "expired"),
    "issued in the future": (_times(iat=600, exp=900), "invalid_client", "future"),
    "exp before iat": (_times(iat=30, exp=20), "invalid_client", "later than iat"),
    "no jti": (_jwt(jti=None), "invalid_client", "lacks jti"),
    "no exp": (_jwt(exp=None), "invalid_client", "lacks exp"),
    "no iss": (_jwt(iss=None), "invalid_client", "lacks iss"),
    "no aud": (_jwt(aud=None), "invalid_client", "lacks aud"),
    "no iat": (_jwt(iat=None), "invalid_client", "lacks iat"),
    "session_context not an object": (
        _jwt(session_context="42"),
        "invalid_request",
        "session_context",
    ),
    "device_info not an object": (
        _jwt(session_context={"device_info": "42"}),
        "invalid_request",
        "device_info",
    ),
    "device_id not a string": (
        _jwt(session_context={"device_info": {"device_id": 42}}),
        "invalid_request",
        "device_info.device_id",
    ),
    "unknown device_info key": (
        _jwt(session_context={"device_info": {"imei": "35"}}),
        "invalid_request",
        "device_info.imei",
    ),
    "duration_seconds 0": (_body(duration_seconds=0), "invalid_request", "duration_seconds"),
    "duration_seconds over a day": (
        _body(duration_seconds=86400),
        "invalid_request",
        "duration_seconds",
    ),
    "duration_seconds a string": (
        _body(duration_seconds="900"),
        "invalid_request",
        "duration_seconds",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_the_simulator_refuses_a_bad_jwt_grant_as_coze_does(
    sim: Simulator, case: str
) -> None:
    """Each way a JWT grant can be wrong is refused with Coze's OAuth error body (a bad
    JWT ``invalid_client`` 401, a bad parameter ``invalid_request`` 400); no token."""
    app = jwt_app()
    sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
    make, error, why = REFUSALS[case]
    assertion, body = make(sim, app)

    answer = await exchange(sim, assertion, body)

    assert answer.status_code == (401 if error == "invalid_client" else 400), answer.text
    refusal = answer.json()
    assert refusal["error_code"] == refusal["error"] == error
    assert why in refusal["error_message"]
    assert sim.jwt_grants == []
    assert len(sim.jwt_refusals) == 1
    assert why in sim.jwt_refusals[0]


async def test_the_simulator_takes_each_jwt_once(sim: Simulator) -> None:
    """A JWT used once is refused the second time (its jti): Coze's replay protection."""
    app = jwt_app()
    sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
    assertion = signed(app, claims(sim, app))

    first, again = await exchange(sim, assertion), await exchange(sim, assertion)

    assert first.status_code == 200
    assert again.status_code == 401
    assert again.json()["error_message"] == "the JWT was used already (jti)"
    assert len(sim.jwt_grants) == 1


# --------------------------------------------------------------------------- the service


async def ask(
    url: str,
    device_id: Any = "42",
    *,
    secret: str | None = None,
    rejected: str | None = None,
    body: Any = None,
    send_secret: bool = True,
) -> httpx.Response:
    """One device request to the token service (the device's own secret by default)."""
    if body is None:
        body = {"device_id": device_id}
        if rejected is not None:
            body["rejected"] = rejected
    if secret is None and isinstance(device_id, str):
        secret = secret_for(device_id)
    headers = {"Authorization": f"Bearer {secret}"} if send_secret else {}
    async with httpx.AsyncClient() as client:
        return await client.post(url, json=body, headers=headers)


def test_device_secrets_are_an_hmac_of_the_device_id() -> None:
    """The secret is fixed by the master key and the id alone: 43 characters, different
    for each device and each master key."""
    secret = device_secret(MASTER_KEY, "42")

    assert secret == device_secret(MASTER_KEY, "42")
    assert len(secret) == 43
    assert secret != device_secret(MASTER_KEY, "43")
    assert secret != device_secret(MASTER_KEY + b"!", "42")


async def test_the_service_signs_a_grant_coze_accepts_for_the_device(sim: Simulator) -> None:
    """A device with its secret gets a Coze token; Coze saw a JWT with the app's kid and
    iss, its host as aud, a 300 s window, a long jti, and the device in device_info."""
    app = jwt_app()
    async with token_service(sim, app, custom_consumer="kitchen-line") as service:
        answer = await ask(service.url, "5551234")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert 3590 <= body["expires_in"] <= 3600
    assert abs(body["expires_at"] - (time.time() + 3600)) < 5
    (grant,) = sim.jwt_grants
    assert grant.access_token == body["access_token"]
    assert grant.kid == app.kid
    assert grant.duration_s == 3600
    assert grant.device_info == {"device_id": "5551234", "custom_consumer": "kitchen-line"}
    assert grant.session_name == "5551234"
    assert grant.claims["iss"] == app.app_id
    assert grant.claims["aud"] == urllib.parse.urlsplit(sim.api_base).netloc
    assert grant.claims["exp"] - grant.claims["iat"] == 300
    assert len(grant.claims["jti"]) >= 32


@pytest.mark.parametrize(
    ("what", "device_id", "secret"),
    [
        ("no Authorization header", "42", None),
        ("another device's secret", "42", secret_for("43")),
        ("a secret under another master key", "42", device_secret(b"x" * 48, "42")),
    ],
)
async def test_the_service_refuses_a_wrong_device_secret(
    sim: Simulator, what: str, device_id: str, secret: str | None
) -> None:
    """A wrong or missing secret is 401 ``invalid_client``, and Coze is not asked."""
    async with token_service(sim) as service:
        answer = await ask(service.url, device_id, secret=secret, send_secret=secret is not None)

    assert answer.status_code == 401, what
    assert answer.json()["error"] == "invalid_client"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert sim.token_requests == 0
    assert service.refused == 1


@pytest.mark.parametrize(
    "body",
    [[], {"device_id": 42}, {"device_id": "042"}, {"device_id": "42", "rejected": 1}],
    ids=["not an object", "id a number", "id with a leading zero", "rejected not a token"],
)
async def test_the_service_refuses_a_malformed_request(sim: Simulator, body: Any) -> None:
    """A body that is not a device's request is 400 ``invalid_request``."""
    async with token_service(sim) as service:
        answer = await ask(service.url, body=body, secret=secret_for("42"))

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert sim.token_requests == 0


async def test_the_service_caches_per_device_and_shares_one_exchange(sim: Simulator) -> None:
    """Twenty requests at once for one device cost one exchange; another device gets its
    own; naming the cached token as refused by Coze gets a new one, naming an old one
    does not."""
    async with token_service(sim) as service:
        answers = await asyncio.gather(*(ask(service.url, "42") for _ in range(20)))
        tokens = {answer.json()["access_token"] for answer in answers}
        other = (await ask(service.url, "43")).json()["access_token"]
        (first,) = tokens
        renewed = (await ask(service.url, "42", rejected=first)).json()["access_token"]
        kept = (await ask(service.url, "42", rejected=first)).json()["access_token"]

    assert len(tokens) == 1
    assert other != first
    assert renewed not in (first, other)
    assert kept == renewed
    assert service.exchanges == 3
    assert [g.device_info for g in sim.jwt_grants] == [
        {"device_id": "42"},
        {"device_id": "43"},
        {"device_id": "42"},
    ]


def test_the_cache_hands_out_only_tokens_with_life_left() -> None:
    """A cached token goes out while 5 minutes (or half its life) remain, then a device
    renewing it gets a new one; expired entries are swept as the cache grows."""
    cache = TokenCache(lifetime_s=3600)
    cache.put("42", Token("t", "", expires_at=1000.0, obtained_at=0.0), now=0.0)

    assert cache.get("42", now=690.0) is not None
    assert cache.get("42", now=710.0) is None
    assert TokenCache(lifetime_s=600).min_left_s == 300
    assert TokenCache(lifetime_s=400).min_left_s == 200

    for n in range(2000):
        cache.put(str(n), Token("t", "", expires_at=float(n), obtained_at=0.0), now=1500.0)
    assert len(cache) < 1500  # the expired ones went in the sweep at 1024


async def test_coze_refusing_the_services_jwt_is_a_502_that_names_the_cause(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An app key Coze does not know: the device gets 502 ``upstream_refused`` (it retries
    later), and the service's log tells the vendor what to check, with Coze's logid."""
    caplog.set_level(logging.ERROR, logger="coze_edge.token_service")
    async with token_service(sim, register=False) as service:
        answer = await ask(service.url)

    assert answer.status_code == 502
    assert answer.json()["error"] == "upstream_refused"
    assert sim.jwt_refusals == ["invalid_client: unknown public key fingerprint (kid) 'kid-app'"]
    (record,) = caplog.records
    assert "Coze refused the JWT for device 42" in record.getMessage()
    assert "--key-id" in record.getMessage()
    assert "logid" in record.getMessage()


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        (TokenFault(429, '{"code": 4013, "msg": "too many"}', grants="jwt"), 429, "slow_down"),
        (
            TokenFault(502, "<html>Bad Gateway</html>", "text/html", grants="jwt"),
            502,
            "upstream_error",
        ),
        (TokenFault(500, '{"error_code": "internal_error"}', grants="jwt"), 502, "upstream_error"),
        (TokenFault.slow(2.0, grants="jwt"), 504, "temporarily_unavailable"),
    ],
    ids=["429", "html page", "internal_error", "too slow"],
)
async def test_coze_trouble_is_an_error_the_device_retries(
    sim: Simulator, fault: TokenFault, status: int, error: str
) -> None:
    """Coze rate limiting, failing or too slow is a 429 / 502 / 504 (the device keeps its
    token and retries), and nothing is cached."""
    sim.faults.token_fault = fault
    async with token_service(sim, read_timeout_s=500 * MS) as service:
        answer = await ask(service.url)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == error
        sim.faults.token_fault = None
        assert (await ask(service.url)).status_code == 200
    assert service.exchanges == 2


async def test_coze_unreachable_is_a_503(sim: Simulator) -> None:
    """With Coze's port closed the device gets 503 ``temporarily_unavailable``."""
    async with token_service(sim) as service:
        await sim.go_down()
        answer = await ask(service.url)
        await sim.come_up()

    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"


# --------------------------------------------------------------------------- the CLI


def write_master_key(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_bytes(MASTER_KEY + b"\n")
    path.chmod(0o600)
    return path


async def test_issue_secret_prints_the_secrets_the_service_accepts(
    sim: Simulator, tmp_path: Path
) -> None:
    """``token-service issue-secret`` prints ``device_id,secret`` for ids and a bind CSV;
    ``token-service serve`` (the real command, keys from files) grants a device that
    presents its printed secret."""
    app = jwt_app()
    sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
    master = write_master_key(tmp_path)
    devices = tmp_path / "devices.csv"
    devices.write_text("device_id,name\n43,hall\n")

    issued = await run_cli(
        "token-service", "issue-secret", "--master-key-file", str(master), "42", "--csv",
        str(devices), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip

    assert issued.returncode == 0, issued.stderr
    lines = issued.stdout.splitlines()
    assert lines == ["device_id,secret", f"42,{secret_for('42')}", f"43,{secret_for('43')}"]

    port = free_port()
    proc = await start_cli(
        "token-service", "serve", "--app-id", app.app_id, "--key-id", app.kid,
        "--private-key-file", str(app.write_private_key(tmp_path / "private_key.pem")),
        "--master-key-file", str(master), "--coze-api-base", sim.api_base,
        "--port", str(port), "--token-lifetime", "900",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(15_000 * MS), httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        answer = await ask(f"{url}/token", "43", secret=lines[2].split(",")[1])
    finally:
        proc.terminate()
        await proc.communicate()

    assert answer.status_code == 200, answer.text
    assert 890 <= answer.json()["expires_in"] <= 900
    assert sim.jwt_grants[-1].device_info == {"device_id": "43"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["issue-secret", "42"], "--master-key-file: required"),
        (["issue-secret", "--master-key-file", "MASTER", "4x2"], "not device ids: '4x2'"),
        (
            ["serve", "--app-id", "1", "--key-id", "k", "--master-key-file", "MASTER"],
            "--private-key-file: required",
        ),
        (
            [
                "serve",
                "--app-id",
                "1",
                "--key-id",
                "k",
                "--master-key-file",
                "MASTER",
                "--private-key-file",
                "MASTER",
            ],
            "--private-key-file: not a PEM private key",
        ),
        (
            [
                "serve",
                "--app-id",
                "1",
                "--key-id",
                "k",
                "--master-key-file",
                "MASTER",
                "--private-key-file",
                "KEY",
                "--token-lifetime",
                "90000",
            ],
            "--token-lifetime: must be 600 to 86399 s",
        ),
    ],
)
async def test_the_token_service_commands_refuse_what_they_cannot_use(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """Missing keys, a file that is not a private key, a lifetime Coze refuses, a bad
    device id: exit 78 with what to fix."""
    master = write_master_key(tmp_path)
    key = jwt_app().write_private_key(tmp_path / "private_key.pem")
    argv = [{"MASTER": str(master), "KEY": str(key)}.get(a, a) for a in args]

    result = await run_cli("token-service", *argv)

    assert result.returncode == 78, result.stdout
    assert says in result.stdout
