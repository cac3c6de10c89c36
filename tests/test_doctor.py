"""``coze-edge doctor`` against the real simulator on loopback and a real mosquitto."""

from __future__ import annotations

import ctypes
import io
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from coze_edge.adapters import opus
from coze_edge.adapters.coze_http import CozeHttp
from coze_edge.adapters.token_store import TokenStore
from coze_edge.config import Config, ConfigError, config_from_mapping
from coze_edge.core.tokens import Token
from coze_edge.doctor import run_doctor
from coze_edge.simulator import Simulator
from tests.support.cli import run_cli
from tests.support.daemon import daemon_settings, merged
from tests.support.data import DATA
from tests.support.mosquitto import Broker, make_tls_files, running_broker
from tests.support.ports import free_port
from tests.support.timing import MS

PAT = "doctor-pat-secret"
DEVICE_ID = "5551234"
BOT_ID = "7496347519799787557"
TIMEOUT_S = 3000 * MS


pytestmark = pytest.mark.simulator(pats=(PAT,))


def settings(tmp_path: Path, sim: Simulator, *, pat: str = PAT, **sections: Any) -> dict[str, Any]:
    """A config mapping that passes every check against ``sim``; ``sections`` are merged in."""
    pat_file = tmp_path / "pat"
    pat_file.write_text(pat + "\n")
    pat_file.chmod(0o600)
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    data = daemon_settings(
        sim,
        tmp_path / "state",
        coze={"bot_id": BOT_ID},
        auth={"pat_file": str(pat_file)},
        device={"id": DEVICE_ID},
        audio={
            "backend": "file",
            "file_input": str(DATA / "silence-2s.wav"),
            "file_output": str(tmp_path / "out" / "reply.wav"),
        },
    )
    return merged(data, sections)


def make_config(tmp_path: Path, sim: Simulator, **kwargs: Any) -> Config:
    return config_from_mapping(settings(tmp_path, sim, **kwargs), env={})


async def doctor(
    config: Config, *, now: Callable[[], float] = time.time, timeout_s: float = TIMEOUT_S
) -> tuple[int, dict[str, str], str]:
    """The exit code, each check's line by check name, and the whole report."""
    out = io.StringIO()
    code = await run_doctor(config, out=out, env={}, timeout_s=timeout_s, now=now)
    text = out.getvalue()
    lines: dict[str, str] = {}
    for line in text.splitlines():
        if line[:4].strip() in ("ok", "warn", "FAIL"):
            lines[line[6:18].strip()] = line
    return code, lines, text


def status(line: str) -> str:
    return line.split()[0]


async def test_a_working_setup_passes_every_check(
    tmp_path: Path, sim: Simulator, broker: Broker
) -> None:
    """With the simulator, a valid token and a running broker, every line is ok; exit 0."""
    config = make_config(tmp_path, sim, mqtt={"host": "127.0.0.1", "port": broker.port})

    code, lines, text = await doctor(config)

    assert code == 0, text
    assert {status(line) for line in lines.values()} == {"ok"}, text
    assert set(lines) >= {
        "config",
        "clock",
        "state_dir",
        "audio in",
        "audio out",
        "credentials",
        "dns",
        "coze api",
        "clock skew",
        "coze ws",
        "mqtt",
    }
    assert DEVICE_ID in lines["config"]
    assert "logid=" in lines["coze ws"]
    assert PAT not in text


async def test_a_refused_token_fails_with_the_logid(tmp_path: Path, sim: Simulator) -> None:
    """A token Coze refuses gives FAIL lines for REST and WebSocket, with the logid and a fix."""
    config = make_config(tmp_path, sim, pat="not-a-valid-pat")

    code, lines, text = await doctor(config)

    assert code == 1
    for check in ("coze api", "coze ws"):
        assert status(lines[check]) == "FAIL", text
        assert "logid=" in lines[check]
        assert "logid=-" not in lines[check]
        assert "auth.pat_file" in lines[check]
    assert status(lines["credentials"]) == "ok"
    assert "not-a-valid-pat" not in text


async def test_a_refused_handshake_fails_the_websocket_check(
    tmp_path: Path, sim: Simulator
) -> None:
    """When Coze refuses the chat handshake with 403, the WebSocket line fails with its logid."""
    sim.faults.reject_handshake = 403
    config = make_config(tmp_path, sim)

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["coze ws"]) == "FAIL", text
    assert "http=403" in lines["coze ws"]
    assert "logid=" in lines["coze ws"]
    assert "logid=-" not in lines["coze ws"]
    assert "chat permission" in lines["coze ws"]
    assert status(lines["coze api"]) == "ok"


async def test_an_unreachable_coze_fails_with_a_network_hint(
    tmp_path: Path, sim: Simulator
) -> None:
    """Nothing listening at the Coze address fails both Coze checks with a network hint."""
    closed = f"127.0.0.1:{free_port()}"
    config = make_config(
        tmp_path, sim, coze={"api_base": f"http://{closed}", "ws_base": f"ws://{closed}"}
    )

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["dns"]) == "ok"
    for check in ("coze api", "coze ws"):
        assert status(lines[check]) == "FAIL", text
        assert "check the network" in lines[check]


async def test_a_host_name_that_does_not_resolve_fails_the_dns_check(
    tmp_path: Path, sim: Simulator
) -> None:
    """A Coze host that DNS does not know fails the DNS line, and the Coze checks are not tried."""
    config = make_config(
        tmp_path,
        sim,
        coze={
            "api_base": "https://coze-edge-test.invalid",
            "ws_base": "wss://coze-edge-test.invalid",
        },
    )

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["dns"]) == "FAIL", text
    assert "coze-edge-test.invalid" in lines["dns"]
    assert "not tried" in lines["coze api"]


async def test_a_broker_that_is_down_fails_the_mqtt_check(tmp_path: Path, sim: Simulator) -> None:
    """A configured broker that nobody runs gives a FAIL line telling to check host and port."""
    config = make_config(tmp_path, sim, mqtt={"host": "127.0.0.1", "port": free_port()})

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["mqtt"]) == "FAIL", text
    assert "mqtt.host" in lines["mqtt"]


async def test_a_broker_that_does_not_answer_fails_within_the_timeout(
    tmp_path: Path, sim: Simulator, broker: Broker
) -> None:
    """A frozen broker fails the MQTT check after the check's timeout, not later."""
    config = make_config(tmp_path, sim, mqtt={"host": "127.0.0.1", "port": broker.port})
    timeout_s = 300 * MS
    broker.pause()
    try:
        started = time.monotonic()
        code, lines, text = await doctor(config, timeout_s=timeout_s)
        took = time.monotonic() - started
    finally:
        broker.resume()

    assert code == 1
    assert status(lines["mqtt"]) == "FAIL", text
    assert took < timeout_s + 1000 * MS


async def test_the_broker_password_is_checked_and_never_shown(
    tmp_path: Path, sim: Simulator
) -> None:
    """A broker login with the right password passes; a wrong one fails; neither is printed."""
    async with running_broker(tmp_path / "broker", user=("kitchen", "s3cret-pw")) as secured:
        password = tmp_path / "mqtt-password"
        password.write_text("s3cret-pw\n")
        password.chmod(0o600)
        mqtt = {
            "host": "127.0.0.1",
            "port": secured.port,
            "username": "kitchen",
            "password_file": str(password),
        }
        good = make_config(tmp_path, sim, mqtt=mqtt)
        code, lines, text = await doctor(good)
        assert code == 0, text
        assert "user kitchen" in lines["mqtt"]

        password.write_text("wrong-pw\n")
        code, lines, text = await doctor(good)

    assert code == 1
    assert status(lines["mqtt"]) == "FAIL", text
    assert "mqtt.username" in lines["mqtt"]
    assert "s3cret-pw" not in text
    assert "wrong-pw" not in text


async def test_a_missing_output_directory_fails_the_audio_check(
    tmp_path: Path, sim: Simulator
) -> None:
    """With the file backend, an output WAV whose directory is gone gives a FAIL line."""
    config = make_config(tmp_path, sim)
    (tmp_path / "out").rmdir()

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["audio out"]) == "FAIL", text
    assert "does not exist" in lines["audio out"]
    assert status(lines["audio in"]) == "ok"


async def test_a_missing_sound_device_fails_the_audio_check(tmp_path: Path, sim: Simulator) -> None:
    """With PortAudio, microphone and speaker names no device has give FAIL lines and a fix."""
    config = make_config(
        tmp_path,
        sim,
        audio={
            "backend": "sounddevice",
            "input_device": "no-such-microphone",
            "output_device": "no-such-speaker",
            "file_input": None,
            "file_output": None,
        },
    )

    code, lines, text = await doctor(config)

    assert code == 1
    for check in ("audio in", "audio out"):
        assert status(lines[check]) == "FAIL", text
        assert "coze-edge devices" in lines[check]


async def test_the_opus_uplink_checks_for_libopus(
    tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``audio.codec: opus`` adds a line for libopus: its version, or how to install it."""
    config = make_config(tmp_path, sim, audio={"codec": "opus"})
    code, lines, text = await doctor(config)
    assert code == 0, text
    assert status(lines["opus"]) == "ok"
    assert "libopus 1." in lines["opus"]

    def no_library(name: str) -> ctypes.CDLL:
        raise OSError(f"{name}: cannot open shared object file")

    opus._lib.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    try:
        code, lines, text = await doctor(config)
    finally:
        monkeypatch.undo()
        opus._lib.cache_clear()
    assert code == 1
    assert status(lines["opus"]) == "FAIL", text
    assert "apt install libopus0" in lines["opus"]


async def test_a_state_dir_that_is_a_file_fails(tmp_path: Path, sim: Simulator) -> None:
    """A state_dir that is a plain file fails its check."""
    config = make_config(tmp_path, sim)
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("")

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["state_dir"]) == "FAIL", text


async def test_an_unset_clock_fails_and_the_skew_is_reported(
    tmp_path: Path, sim: Simulator
) -> None:
    """A clock still in 1970 fails the clock check, and Coze's Date header shows the skew."""
    config = make_config(tmp_path, sim)

    code, lines, text = await doctor(config, now=lambda: 86400.0)

    assert code == 1
    assert status(lines["clock"]) == "FAIL", text
    assert "1970-01-02" in lines["clock"]
    assert status(lines["clock skew"]) == "warn"
    assert "behind" in lines["clock skew"]


async def test_without_a_login_the_credentials_fail_and_coze_is_still_probed(
    tmp_path: Path, sim: Simulator
) -> None:
    """Without a saved login, doctor says to run `coze-edge login` and still probes Coze."""
    config = make_config(tmp_path, sim, auth={"method": "device_code", "client_id": "cid"})

    code, lines, text = await doctor(config)

    assert code == 1
    assert status(lines["credentials"]) == "FAIL", text
    assert "coze-edge login" in lines["credentials"]
    assert status(lines["coze api"]) == "ok"
    assert "not checked" in lines["coze api"]


async def log_in(sim: Simulator, state_dir: Path, client_id: str) -> Token:
    """A real device login against the simulator, saved where the daemon keeps it."""
    async with CozeHttp(sim.api_base) as http:
        code = await http.device_code(client_id)
        sim.approve(code.user_code)
        token = await http.poll_token(client_id, code.device_code)
    TokenStore(state_dir).save(token)
    return token


async def test_a_saved_login_is_shown_with_its_expiry_and_tried(
    tmp_path: Path, sim: Simulator
) -> None:
    """A saved OAuth login is reported with its expiry time, and Coze accepts its token."""
    config = make_config(tmp_path, sim, auth={"method": "device_code", "client_id": "cid"})
    token = await log_in(sim, config.state_dir, "cid")

    code, lines, text = await doctor(config)

    assert code == 0, text
    expiry = datetime.fromtimestamp(token.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    assert (
        lines["credentials"] == f"ok    credentials  OAuth token valid until {expiry} (renewable)"
    )
    assert "token accepted" in lines["coze api"]
    assert token.access_token not in text
    assert token.refresh_token not in text


async def test_a_login_that_soon_expires_for_good_is_a_warning(
    tmp_path: Path, sim: Simulator
) -> None:
    """A token that expires within a day and has no refresh token warns to log in again."""
    config = make_config(tmp_path, sim, auth={"method": "device_code", "client_id": "cid"})
    token = await log_in(sim, config.state_dir, "cid")
    soon = time.time() + 3 * 3600
    TokenStore(config.state_dir).save(replace(token, refresh_token="", expires_at=soon))

    code, lines, text = await doctor(config)

    assert code == 0, text
    assert status(lines["credentials"]) == "warn"
    assert "cannot be renewed" in lines["credentials"]
    assert "coze-edge login" in lines["credentials"]
    assert text.splitlines()[-1] == "all checks passed, 1 warning(s)"


async def test_a_tls_broker_is_checked_with_the_configured_certificates(
    tmp_path: Path, sim: Simulator
) -> None:
    """TLS with a client certificate connects; a CA file that does not exist is refused
    with the config (doctor then exits 78, as check-config does)."""
    tls = make_tls_files(tmp_path / "tls")
    async with running_broker(tmp_path / "broker", tls=tls) as secured:
        mqtt = {
            "host": "127.0.0.1",
            "port": secured.port,
            "tls": True,
            "ca_file": str(tls.ca),
            "cert_file": str(tls.client_cert),
            "key_file": str(tls.client_key),
        }
        code, lines, text = await doctor(make_config(tmp_path, sim, mqtt=mqtt))
        assert code == 0, text
        assert "(TLS, anonymous)" in lines["mqtt"]

        mqtt["ca_file"] = str(tmp_path / "missing-ca.crt")
        with pytest.raises(ConfigError, match=r"mqtt\.ca_file: cannot read .*missing-ca\.crt"):
            make_config(tmp_path, sim, mqtt=mqtt)


async def test_the_cli_exits_0_when_healthy_and_1_when_a_check_fails(
    tmp_path: Path, sim: Simulator
) -> None:
    """`python -m coze_edge doctor -c FILE` prints the report and exits 0, or 1 on a failure."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path, sim)))

    result = await run_cli("doctor", "-c", str(path))
    code, output = result.returncode, result.stdout
    assert code == 0, output
    assert f"device id {DEVICE_ID}" in output

    sim.faults.reject_handshake = 401
    result = await run_cli("doctor", "-c", str(path))
    code, output = result.returncode, result.stdout
    assert code == 1, output
    assert any(line.startswith("FAIL  coze ws") for line in output.splitlines()), output
    assert PAT not in output
