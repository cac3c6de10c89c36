"""The ``tools`` and ``homeassistant`` sections: what the config refuses, and what the daemon
checks at start (programs, the Home Assistant token from a file or a systemd credential)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from coze_edge.config import Config, config_from_mapping
from coze_edge.core.events import ToolCall
from coze_edge.core.tools import BUILTIN_TOOLS
from coze_edge.credentials import StaticToken
from coze_edge.daemon import Daemon
from coze_edge.errors import ConfigError
from coze_edge.tools.configured import tool_declarations
from tests.support.cli import run_cli
from tests.support.homeassistant import fake_home_assistant
from tests.support.mosquitto import make_tls_files

BASE: dict[str, Any] = {
    "coze": {"bot_id": "7"},
    "auth": {"method": "pat"},
    "device": {"id": "42"},
}


def config(tmp_path: Path, **sections: Any) -> Config:
    return config_from_mapping({**BASE, "state_dir": str(tmp_path), **sections}, env={})


def problems(tmp_path: Path, **sections: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, **sections)
    return caught.value.problems


def daemon(cfg: Config, env: dict[str, str] | None = None) -> Daemon:
    return Daemon(cfg, tokens=StaticToken("sim-pat"), env=env or {})


def test_the_defaults_offer_the_built_in_tools_only(tmp_path: Path) -> None:
    """Out of the box: the six built-ins, no Home Assistant, no commands."""
    toolbox = daemon(config(tmp_path)).toolbox

    assert toolbox.names == {
        "get_volume",
        "set_volume",
        "mute",
        "stop",
        "device_status",
        "local_time",
    }


def test_command_tools_are_checked(tmp_path: Path) -> None:
    """Names must be tool names and not built-ins; programs absolute paths, given as a list
    of strings or a string that splits."""
    commands = {
        "Weather": ["/bin/true"],
        "stop": "/bin/true",
        "relative": "bin/tool --x",
        "empty": [],
        "unbalanced": '/bin/echo "open',
        "numbers": ["/bin/sleep", 5],
    }

    found = problems(tmp_path, tools={"commands": commands})

    assert found == [
        (
            "tools.commands.Weather",
            "not a tool name: lower-case letters, digits and _, starting with a letter, at most 64",
        ),
        ("tools.commands.stop", "the name of a built-in tool: choose another"),
        ("tools.commands.relative", "the program must be an absolute path, got 'bin/tool'"),
        ("tools.commands.empty", "names no program"),
        ("tools.commands.unbalanced", "cannot split into arguments: No closing quotation"),
        (
            "tools.commands.numbers",
            "must be a list of the program and its arguments, or one string",
        ),
    ]


def test_commands_may_come_from_the_environment(tmp_path: Path) -> None:
    """COZE_EDGE_TOOLS__COMMANDS is read as YAML: a mapping like the file's."""
    cfg = config_from_mapping(
        {**BASE, "state_dir": str(tmp_path)},
        env={"COZE_EDGE_TOOLS__COMMANDS": "{weather: [/usr/bin/weather, --metric]}"},
    )

    [spec] = cfg.tools.command_specs()
    assert (spec.name, spec.argv) == ("weather", ("/usr/bin/weather", "--metric"))


def test_the_command_timeout_fits_in_the_deadline(tmp_path: Path) -> None:
    """A command may not be given longer than the bot's calls are given."""
    found = problems(tmp_path, tools={"deadline_ms": 2000, "command_timeout_ms": 3000})

    assert found == [
        ("tools.command_timeout_ms", "must not exceed deadline_ms (2000 ms), got 3000 ms")
    ]


def test_home_assistant_in_the_clear_only_on_loopback(tmp_path: Path) -> None:
    """http:// to another host would show the token on the network, unless allowed."""
    found = problems(tmp_path, homeassistant={"url": "http://homeassistant.local:8123"})

    assert [key for key, _ in found] == ["homeassistant.url"]
    assert "homeassistant.allow_insecure" in found[0][1]
    allowed = config(
        tmp_path, homeassistant={"url": "http://homeassistant.local:8123", "allow_insecure": True}
    )
    assert allowed.homeassistant.allow_insecure is True


def test_exposure_mistakes_are_reported_under_their_keys(tmp_path: Path) -> None:
    """Bad entity ids and service rules name homeassistant.entities or .services."""
    found = problems(
        tmp_path,
        homeassistant={
            "url": "https://ha.example",
            "entities": "light.kitchen Light.Hall",
            "services": {"light": "turn_on", "cover.garage_door": ["open_cover"]},
        },
    )

    assert found == [
        ("homeassistant.entities", "'Light.Hall' is not an entity id (domain.name)"),
        ("homeassistant.services.cover.garage_door", "not in entities"),
    ]


def test_a_missing_program_stops_the_start(tmp_path: Path) -> None:
    """The program of a command tool is checked when the daemon starts."""
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    cfg = config(
        tmp_path,
        tools={"commands": {"gone": "/nonexistent/tool", "lazy": [str(script)]}},
    )

    with pytest.raises(ConfigError) as caught:
        daemon(cfg)

    assert caught.value.problems == [
        ("tools.commands", "gone: /nonexistent/tool does not exist"),
        ("tools.commands", f"lazy: {script} is not executable"),
    ]


def test_home_assistant_needs_a_token(tmp_path: Path) -> None:
    """homeassistant.url without a token file or credential is refused at start."""
    cfg = config(tmp_path, homeassistant={"url": "https://ha.example"})

    with pytest.raises(ConfigError) as caught:
        daemon(cfg)

    [(key, message)] = caught.value.problems
    assert key == "homeassistant.token_file"
    assert "long-lived access token" in message


async def test_the_token_may_come_from_a_systemd_credential(tmp_path: Path) -> None:
    """$CREDENTIALS_DIRECTORY/homeassistant_token is used when token_file is not set."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "homeassistant_token").write_text("credentialToken5150\n")

    async with fake_home_assistant(token="credentialToken5150", states={"light.hall": "on"}) as ha:
        cfg = config(tmp_path, homeassistant={"url": ha.url, "entities": "light.hall"})
        toolbox = daemon(cfg, env={"CREDENTIALS_DIRECTORY": str(credentials)}).toolbox
        output = await toolbox.run(ToolCall("c1", "ha_get_state", '{"entity_id": "light.hall"}'))

    assert '"state": "on"' in output
    assert [r.authorization for r in ha.requests] == ["Bearer credentialToken5150"]


def test_the_readme_declares_each_tool_as_the_device_has_it(tmp_path: Path) -> None:
    """The README's table shows each built-in and Home Assistant tool's name, description
    and parameters exactly as the device offers them."""
    cfg = config(tmp_path, homeassistant={"url": "https://ha.example"})
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    declared = tool_declarations(cfg)

    rows = [
        f"| `{tool['name']}` | {tool['description']} | "
        f"`{json.dumps(tool['parameters'], ensure_ascii=False)}` |"
        for tool in declared
    ]

    assert len(declared) == 9
    assert [row for row in rows if row not in readme] == []


async def test_coze_edge_tools_prints_the_declarations(tmp_path: Path) -> None:
    """`coze-edge tools` prints every tool of the config, command tools included, as JSON."""
    path = tmp_path / "config.yaml"
    sections = {"tools": {"commands": {"weather": ["/usr/local/bin/weather"]}}}
    path.write_text(yaml.safe_dump({**BASE, "state_dir": str(tmp_path), **sections}))

    result = await run_cli("tools", "-c", str(path))

    assert result.returncode == 0, result.stdout
    names = [tool["name"] for tool in json.loads(result.stdout)]
    assert names == [*BUILTIN_TOOLS, "weather"]


@pytest.mark.parametrize("trusted", [True, False], ids=["its-ca", "system-cas"])
async def test_https_is_verified_against_the_configured_ca(tmp_path: Path, trusted: bool) -> None:
    """With homeassistant.ca_file the fake's certificate is accepted; without, it is not
    (the system's CAs do not sign it) and the bot hears that it cannot reach it."""
    files = make_tls_files(tmp_path / "tls")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(files.server_cert, files.server_key)
    token_file = tmp_path / "ha-token"
    token_file.write_text("tlsToken8080")

    async with fake_home_assistant(
        token="tlsToken8080", states={"light.hall": "on"}, tls=server
    ) as ha:
        section = {"url": ha.url, "token_file": str(token_file), "entities": "light.hall"}
        if trusted:
            section["ca_file"] = str(files.ca)
        toolbox = daemon(config(tmp_path, homeassistant=section)).toolbox
        output = json.loads(
            await toolbox.run(ToolCall("c1", "ha_get_state", '{"entity_id": "light.hall"}'))
        )

    if trusted:
        assert output["state"] == "on"
        assert len(ha.requests) == 1
    else:
        assert output == {"error": "Home Assistant cannot be reached"}
        assert ha.requests == []
