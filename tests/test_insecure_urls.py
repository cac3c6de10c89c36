"""
``http://`` and ``ws://`` Coze URLs: only to this machine, unless ``coze.allow_insecure``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from coze_edge.config import Config, config_from_mapping
from coze_edge.errors import EXIT_CONFIG, ConfigError
from tests.support.cli import run_cli

LOOPBACK = ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LOCALHOST", "localhost."]
ELSEWHERE = [
    "192.0.2.10",
    "10.0.0.5",
    "128.0.0.1",
    "[2001:db8::1]",
    "coze.example",
    "localhost.example",
    "127.0.0.1.nip.example",
]


def config(**coze: Any) -> Config:
    section = {"bot_id": "7", **coze}
    data = {"coze": section, "auth": {"method": "pat"}, "device": {"id": "42"}}
    return config_from_mapping(data, env={})


def problems(**coze: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as refused:
        config(**coze)
    return refused.value.problems


@pytest.mark.parametrize("host", LOOPBACK)
def test_clear_text_urls_to_this_machine_are_accepted(host: str) -> None:
    """http:// and ws:// to 127.0.0.0/8, ::1 or localhost need no setting (the simulator)."""
    loaded = config(api_base=f"http://{host}:8790", ws_base=f"ws://{host}:8790")
    assert loaded.coze.ws_base == f"ws://{host}:8790"
    assert loaded.coze.allow_insecure is False


@pytest.mark.parametrize("host", ELSEWHERE)
def test_clear_text_urls_elsewhere_are_a_config_error_naming_the_key(host: str) -> None:
    """http:// or ws:// to any other host is refused, each URL on its own line, saying which
    key would allow it."""
    found = problems(api_base=f"http://{host}", ws_base=f"ws://{host}:80/base")
    assert [key for key, _ in found] == ["coze.api_base", "coze.ws_base"]
    for (_, message), secure in zip(found, ["https://", "wss://"], strict=True):
        assert "unencrypted" in message
        assert f"use {secure}" in message
        assert "coze.allow_insecure: true" in message


@pytest.mark.parametrize("host", ELSEWHERE)
def test_allow_insecure_lets_clear_text_urls_through(host: str) -> None:
    """With coze.allow_insecure: true the same URLs load."""
    loaded = config(api_base=f"http://{host}", ws_base=f"ws://{host}", allow_insecure=True)
    assert loaded.coze.api_base == f"http://{host}"
    assert loaded.coze.allow_insecure is True


@pytest.mark.parametrize("host", ELSEWHERE)
def test_tls_urls_need_no_setting(host: str) -> None:
    """https:// and wss:// go anywhere."""
    loaded = config(api_base=f"https://{host}", ws_base=f"wss://{host}")
    assert loaded.coze.ws_base == f"wss://{host}"


def test_only_the_clear_text_url_is_reported() -> None:
    """A TLS REST base and a clear-text WebSocket base: only ws_base is wrong."""
    found = problems(api_base="https://api.coze.cn", ws_base="ws://ws.coze.cn")
    assert [key for key, _ in found] == ["coze.ws_base"]


def test_allow_insecure_must_be_a_boolean() -> None:
    """A string is not a yes: 'yes please' is reported, and the URL is still refused."""
    found = problems(ws_base="ws://192.0.2.10", allow_insecure="yes please")
    assert found[0] == ("coze.allow_insecure", "expected bool, got 'yes please'")
    assert [key for key, _ in found] == ["coze.allow_insecure", "coze.ws_base"]


async def test_check_config_exits_78_naming_the_key(tmp_path: Path) -> None:
    """`coze-edge check-config` on a file with ws:// to another host: exit 78, the key named;
    with allow_insecure set (in the file, or from the environment) it is ok."""
    path = tmp_path / "config.yaml"
    settings: dict[str, dict[str, Any]] = {
        "coze": {"bot_id": "7496347519799787557", "ws_base": "ws://192.0.2.10:8790"},
        "auth": {"method": "pat"},
        "device": {"id": "5551234"},
    }
    path.write_text(yaml.safe_dump(settings))

    refused = await run_cli("check-config", "-c", str(path))
    overridden = await run_cli(
        "check-config", "-c", str(path), env={"COZE_EDGE_COZE__ALLOW_INSECURE": "true"}
    )
    settings["coze"]["allow_insecure"] = True
    path.write_text(yaml.safe_dump(settings))
    allowed = await run_cli("check-config", "-c", str(path))

    assert refused.returncode == EXIT_CONFIG, refused.stdout
    assert "1 problem(s)" in refused.stdout
    assert "coze.ws_base: ws:// to 192.0.2.10 would send the token unencrypted" in refused.stdout
    assert "coze.allow_insecure: true" in refused.stdout
    assert (overridden.returncode, allowed.returncode) == (0, 0), overridden.stdout
    assert allowed.stdout.strip().endswith(": ok")
