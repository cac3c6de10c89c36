"""
No secret reaches any output: what the commands print (stdout, stderr, the error line of
an exception), the daemon's log and its MQTT events and state, even when a hostile server
(tests/support/hostile.py) quotes the token, a refresh token, a device code or the MQTT
password back in its error messages.

The secrets here match no pattern of ``logs.redact``: only their registration, where each
is read, masks them.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from coze_edge.adapters.token_store import TokenStore
from coze_edge.core.tokens import Token
from coze_edge.logs import RedactingWriter, redact, redact_fields, register_secret
from tests.support.cli import run_cli, running_cli, write_cli_config
from tests.support.data import DATA
from tests.support.hostile import Accept, Hostile, Peer, Reply, Request, echo, hostile_server
from tests.support.mosquitto import Broker, Seen, running_broker, watching
from tests.support.timing import MS

TOKEN = "hostileSecretToken4242x"
"""The personal access token, read from auth.pat_file."""
MQTT_USER = "kitchen-speaker"
MQTT_PASSWORD = "brokerSecret77word"
REFRESH = "refreshSecret9876zz"
DEVICE_CODE = "deviceCodeSecret5151q"
USER_CODE = "WDJB-MJHT"
CONNECTOR = "7400000000000000001"
PREFIX = "coze-edge/5551234"
SECRETS = (TOKEN, MQTT_PASSWORD, REFRESH, DEVICE_CODE)


def leaked(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return [secret for secret in SECRETS if secret in text]


def quoting(code: int, status: int, extra: str = "") -> Reply:
    """A Coze-shaped error whose msg quotes the request (and ``extra``)."""
    return Reply(lambda r: {"code": code, "msg": f"{echo(r)}{extra}"}, status=status)


async def refuse_the_session(peer: Peer) -> None:
    """Take the handshake, answer chat.update with an error quoting the handshake's
    Authorization and the MQTT password, then read until the client goes."""
    await peer.receive()
    msg = f"{echo(peer.request)}; broker password {MQTT_PASSWORD}"
    await peer.send({"id": "1", "event_type": "error", "data": {"code": 4000, "msg": msg}})
    while await peer.receive() is not None:
        pass


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    async with hostile_server() as server:
        yield server


@pytest.fixture
async def locked_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A real mosquitto that wants MQTT_USER / MQTT_PASSWORD."""
    async with running_broker(tmp_path / "broker", user=(MQTT_USER, MQTT_PASSWORD)) as broker:
        yield broker


def mqtt_section(tmp_path: Path, broker: Broker) -> dict[str, Any]:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(MQTT_PASSWORD + "\n")
    password_file.chmod(0o600)
    return {
        "host": "127.0.0.1",
        "port": broker.port,
        "username": MQTT_USER,
        "password_file": str(password_file),
    }


# --- the mask itself -----------------------------------------------------------------------------


def test_the_writer_masks_a_secret_written_in_pieces() -> None:
    """A registered secret split over several writes of one line is masked; a partial
    line goes out on flush."""
    register_secret("piecewise-secret-31337")
    out = io.StringIO()
    writer = RedactingWriter(out)

    for piece in ("token piecewise-", "secret", "-31337 refused", "\n", "prompt> "):
        writer.write(piece)
    assert out.getvalue() == "token *** refused\n"
    writer.flush()

    assert out.getvalue() == "token *** refused\nprompt> "


def test_fields_are_masked_in_keys_values_and_nested_lists() -> None:
    """Every string in an event, however deep, is masked; numbers and None stay."""
    register_secret("nested-secret-2718")
    event = {"type": "error", "code": 4000, "logid": None, "why": ["a nested-secret-2718 b"]}

    assert redact_fields(event) == {
        "type": "error",
        "code": 4000,
        "logid": None,
        "why": ["a *** b"],
    }


@pytest.mark.parametrize(
    "line",
    [
        "  mqtt.password: unknown key (did you mean 'password_file'?)",
        "auth.method is pat but no token was found: set auth.pat_file",
        "and enter the code:  WDJB-MJHT",
    ],
)
def test_config_keys_and_the_shown_login_code_are_not_mistaken_for_secrets(line: str) -> None:
    """What names a key (auth.pat_file, mqtt.password) or is meant to be read stays."""
    assert redact(line) == line


async def test_a_traceback_is_masked_too() -> None:
    """A crash's traceback (the interpreter's, printed after main returned) passes the mask
    once output is redacted, as the CLI makes it."""
    crash = (
        "from coze_edge.logs import redact_output, register_secret\n"
        "redact_output()\n"
        f"register_secret({TOKEN!r})\n"
        f"raise RuntimeError('Coze said: token {TOKEN} refused')\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", crash, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(10000 * MS):
        _, err = await process.communicate()

    assert process.returncode == 1
    assert "RuntimeError: Coze said: token *** refused" in err.decode()
    assert not leaked(err)


# --- what the commands print -------------------------------------------------------------------


async def test_doctor_masks_what_a_hostile_coze_quotes_back(
    tmp_path: Path, hostile: Hostile, locked_broker: Broker
) -> None:
    """doctor's Coze lines quote the server's refusals, with the token and the MQTT
    password in them masked; the MQTT check still logs in with that password."""
    hostile.script("GET", "/v1/audio/voices", quoting(4100, 401))
    hostile.script("GET", "/v1/chat", Accept(refuse_the_session))
    config = write_cli_config(
        tmp_path, hostile, pat=TOKEN, mqtt=mqtt_section(tmp_path, locked_broker)
    )

    result = await run_cli("doctor", "-c", str(config))

    lines = {line.split()[1]: line for line in result.stdout.splitlines() if "  " in line}
    assert result.returncode == 1, result.stdout
    assert not leaked(result.stdout), result.stdout
    assert "refused the token (rejected Authorization: Bearer *** token ***" in result.stdout
    assert "refused the voice session" in result.stdout
    assert "broker password ***" in result.stdout
    assert lines["mqtt"].startswith("ok"), lines["mqtt"]
    assert [r.authorization for r in hostile.seen] == [f"Bearer {TOKEN}"] * 2


async def test_voices_masks_a_refusal_that_quotes_the_token(
    tmp_path: Path, hostile: Hostile
) -> None:
    """`coze-edge voices`: Coze's refusal is printed with the token masked."""
    hostile.script("GET", "/v1/audio/voices", quoting(4101, 403))
    config = write_cli_config(tmp_path, hostile, pat=TOKEN)

    result = await run_cli("voices", "-c", str(config), stderr=asyncio.subprocess.PIPE)

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("coze-edge voices: Coze refused: rejected Authorization")
    assert "token ***" in result.stderr
    assert not leaked(result.stdout + result.stderr), result.stderr


@pytest.mark.parametrize("csv", [False, True])
async def test_bind_masks_a_refusal_that_quotes_the_token(
    tmp_path: Path, hostile: Hostile, csv: bool
) -> None:
    """`coze-edge bind` and `bind --csv` print each refusal with the token masked."""
    hostile.script("POST", f"/v1/connectors/{CONNECTOR}/user_configs", quoting(4101, 403))
    config = write_cli_config(
        tmp_path, hostile, pat=TOKEN, device={"id": "5551234", "connector_id": CONNECTOR}
    )
    args = ["bind", "-c", str(config)]
    if csv:
        devices = tmp_path / "devices.csv"
        devices.write_text("device_id,name\n5551235,hall\n5551236,porch\n")
        args += ["--csv", str(devices)]

    result = await run_cli(*args)

    assert result.returncode == 1, result.stdout
    assert result.stdout.count("rejected Authorization: Bearer *** token ***") == (2 if csv else 1)
    assert "bindConnectorConfig" in result.stdout
    assert not leaked(result.stdout), result.stdout


async def test_an_error_the_cli_reports_is_masked(tmp_path: Path, hostile: Hostile) -> None:
    """A refresh that fails with Coze quoting the refresh token ends `coze-edge bind` in the
    CLI's error line (exit 1): the refresh token, and the access token, are masked there."""
    hostile.script(
        "POST", "/api/permission/oauth2/token", quoting(5000, 500, f"; cannot refresh {REFRESH}")
    )
    config = write_cli_config(
        tmp_path,
        hostile,
        auth={"method": "device_code", "client_id": "hostile-client", "pat_file": None},
        device={"id": "5551234", "connector_id": CONNECTOR},
    )
    expired = Token(TOKEN, REFRESH, expires_at=time.time() - 60, obtained_at=time.time() - 960)
    TokenStore(tmp_path / "state").save(expired)

    result = await run_cli("bind", "-c", str(config), stderr=asyncio.subprocess.PIPE)

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("coze-edge: token refresh:"), result.stderr
    assert "cannot refresh ***" in result.stderr
    assert not leaked(result.stdout + result.stderr), result.stderr
    assert REFRESH in hostile.seen[0].body.decode()  # it was sent, and quoted back


async def test_login_masks_the_device_code_but_shows_the_user_code(
    tmp_path: Path, hostile: Hostile
) -> None:
    """`coze-edge login`: a poll refused with the device code quoted is logged masked; the
    user code, which the person must type, is shown as it is."""
    hostile.script(
        "POST",
        "/api/permission/oauth2/device/code",
        Reply(
            {
                "device_code": DEVICE_CODE,
                "user_code": USER_CODE,
                "verification_uri": f"{hostile.api_base}/device",
                "expires_in": 600,
                "interval": 5,
            }
        ),
    )
    hostile.script(
        "POST",
        "/api/permission/oauth2/token",
        Reply(lambda r: {"code": 4000, "msg": f"no device code {DEVICE_CODE}"}, status=400),
    )
    config = write_cli_config(
        tmp_path, hostile, auth={"method": "device_code", "client_id": "hostile-client"}
    )

    async with running_cli(config, "login") as login:
        async with asyncio.timeout(15000 * MS):
            await login.read_until("still waiting")

    assert f"enter the code:  {USER_CODE}" in login.output
    assert "no device code ***" in login.output
    assert not leaked(login.output), login.output
    assert DEVICE_CODE in hostile.seen[-1].body.decode()


# --- what the daemon publishes -----------------------------------------------------------------


async def test_mqtt_events_and_state_never_carry_the_token_or_the_broker_password(
    tmp_path: Path, hostile: Hostile, locked_broker: Broker
) -> None:
    """A handshake refused with a message quoting the token (the state's detail), then a
    session refused with an error event quoting it and the MQTT password: both reach MQTT,
    and the daemon's log, masked."""
    accepting = False

    def chat(request: Request) -> Accept | Reply:
        if accepting:
            return Accept(refuse_the_session)
        return Reply({"code": 5000, "msg": f"{echo(request)}; {MQTT_PASSWORD}"}, status=503)

    hostile.script("GET", "/v1/chat", chat)
    config = write_cli_config(
        tmp_path,
        hostile,
        pat=TOKEN,
        audio={"file_input": str(DATA / "silence-2s.wav")},
        mqtt=mqtt_section(tmp_path, locked_broker),
    )

    def on(topic: str, text: str) -> Callable[[Seen], bool]:
        return lambda seen: seen.topic == f"{PREFIX}/{topic}" and text.encode() in seen.payload

    async with watching(locked_broker, [f"{PREFIX}/#"]) as watcher, running_cli(config) as daemon:
        state = await watcher.wait_for(on("state", "HTTP 503"), within=15000 * MS)
        accepting = True
        event = await watcher.wait_for(on("event", "session setup refused"), within=15000 * MS)

    assert state is not None
    assert event is not None
    detail = json.loads(state.payload)["detail"]
    assert "rejected Authorization: Bearer *** token ***" in detail
    message = json.loads(event.payload)["message"]
    assert "token ***" in message
    assert "broker password ***" in message
    for seen in watcher.seen:
        assert not leaked(seen.payload), seen
    assert "session setup refused" in daemon.output
    assert not leaked(daemon.output), daemon.output
    assert all(r.authorization == f"Bearer {TOKEN}" for r in hostile.seen)
