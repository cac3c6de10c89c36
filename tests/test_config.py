"""The config loader: defaults, overrides, resolution, and every problem reported at once."""

from __future__ import annotations

import ast
import dataclasses
import logging
import os
import re
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import coze_edge.config
import coze_edge.config.schema
from coze_edge.config import (
    AudioConfig,
    AuthConfig,
    Config,
    CozeConfig,
    DeviceConfig,
    LogConfig,
    MqttConfig,
    VadConfig,
    WakeConfig,
    config_from_mapping,
    load_config,
    read_secret,
    resolve_config_path,
    warn_if_world_readable,
)
from coze_edge.core.identity import device_id_from_machine_id
from coze_edge.core.wake import WAKE_WORDS
from coze_edge.errors import ConfigError
from coze_edge.hooks import MUTED_VARIABLE, STATE_VARIABLE

EXAMPLE = Path(__file__).parents[1] / "config" / "coze-edge.example.yaml"
MACHINE_ID = "5e2d0a6f1c2b4b8f9d3e7a1c0b9f8e7d"
# printf %s 5e2d...8e7d | sha256sum starts 489b89ef23bb1a31; printf '%d' 0x489b89ef23bb1a31
MACHINE_DEVICE_ID = "5231927052310616625"
BOT = "7496347519799787557"
VALID: dict[str, Any] = {"coze": {"bot_id": BOT}, "auth": {"client_id": "1164"}}


@pytest.fixture
def machine_id(tmp_path: Path) -> Path:
    path = tmp_path / "machine-id"
    path.write_text(MACHINE_ID + "\n")
    return path


def build(
    data: Mapping[str, Any], machine_id: Path, env: Mapping[str, str] | None = None
) -> Config:
    return config_from_mapping(data, env=env or {}, machine_id_path=machine_id)


def with_valid(**sections: Any) -> dict[str, Any]:
    """VALID with the given sections merged in (a section's keys added to VALID's)."""
    data: dict[str, Any] = {name: dict(keys) for name, keys in VALID.items()}
    for name, keys in sections.items():
        if isinstance(keys, dict) and isinstance(data.get(name), dict):
            data[name].update(keys)
        else:
            data[name] = keys
    return data


def problems(
    data: Mapping[Any, Any], machine_id: Path, env: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, env=env or {}, machine_id_path=machine_id)
    return caught.value.problems


def problem(data: Mapping[Any, Any], machine_id: Path, env: Mapping[str, str] | None = None) -> str:
    """The single problem ``data`` has, as the user sees it: 'key: message'."""
    found = problems(data, machine_id, env)
    assert len(found) == 1, found
    key, message = found[0]
    return f"{key}: {message}"


# --- defaults and resolution ------------------------------------------------------------------


def test_a_minimal_config_gets_every_default(machine_id: Path) -> None:
    """With only bot_id and client_id, every other value is the documented default."""
    config = build(VALID, machine_id)

    assert config.coze == CozeConfig(
        region="cn", api_base="https://api.coze.cn", ws_base="wss://ws.coze.cn", bot_id=BOT
    )
    assert config.coze.turn_detection == "client_interrupt"
    assert config.coze.reply_timeout_ms == 15000
    assert (config.coze.connect_timeout_s, config.coze.read_timeout_s) == (10.0, 30.0)
    assert config.coze.ping_interval_s == 20.0
    assert config.auth == AuthConfig(method="device_code", client_id="1164")
    assert config.device == DeviceConfig(id=MACHINE_DEVICE_ID, name="coze-edge")
    assert config.state_dir == Path("/var/lib/coze-edge")
    assert config.audio == AudioConfig()
    assert (config.audio.output_rate, config.audio.capture_rate) == (24000, 16000)
    assert (config.audio.block_ms, config.audio.append_ms, config.audio.prebuffer_ms) == (
        60,
        60,
        100,
    )
    assert (config.audio.codec, config.audio.chunk_ms) == ("pcm", None)
    assert config.vad == VadConfig(aggressiveness=2, end_silence_ms=700, pre_roll_ms=300)
    assert (config.vad.start_ms, config.vad.max_utterance_ms) == (60, 15000)
    assert config.mqtt == MqttConfig(topic_prefix=f"coze-edge/{MACHINE_DEVICE_ID}")
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.keepalive_s) == (None, 1883, 60)
    assert config.mqtt.discovery_prefix == "homeassistant"
    assert config.wake == WakeConfig(word=None, sensitivity=0.5)
    assert config.log == LogConfig(level="info")


def test_region_com_picks_the_com_hosts(machine_id: Path) -> None:
    """region: com without explicit bases talks to coze.com."""
    config = build(with_valid(coze={"region": "com"}), machine_id)

    assert (config.coze.api_base, config.coze.ws_base) == (
        "https://api.coze.com",
        "wss://ws.coze.com",
    )


def test_explicit_bases_win_over_the_region_and_lose_a_trailing_slash(machine_id: Path) -> None:
    """api_base and ws_base, when set, are used as given, minus a trailing '/'."""
    bases = {"api_base": "http://127.0.0.1:8790/", "ws_base": "ws://127.0.0.1:8790"}

    config = build(with_valid(coze={"region": "com", **bases}), machine_id)

    assert (config.coze.api_base, config.coze.ws_base) == (
        "http://127.0.0.1:8790",
        "ws://127.0.0.1:8790",
    )


def test_null_means_the_default_for_keys_that_cannot_be_null(machine_id: Path) -> None:
    """port: null is port 1883; voice_id: null stays null; an empty section is all defaults."""
    config = build(
        with_valid(
            mqtt={"port": None, "discovery_prefix": None}, vad=None, coze={"api_base": None}
        ),
        machine_id,
    )

    assert config.mqtt.port == 1883
    assert config.mqtt.discovery_prefix is None
    assert config.vad == VadConfig()
    assert config.coze.api_base == "https://api.coze.cn"


def test_values_are_converted_to_the_field_types(machine_id: Path, tmp_path: Path) -> None:
    """Ints become floats and (for ids) strings; paths become Paths; device indexes stay ints."""
    (tmp_path / "pat").write_text("pat_abc\n")
    config = build(
        {
            "coze": {"bot_id": 7496347519799787557, "connect_timeout_s": 5},
            "auth": {"method": "pat", "pat_file": str(tmp_path / "pat")},
            "device": {"id": 5551234},
            "audio": {"input_device": 2, "output_device": "USB Audio"},
            "wake": {"sensitivity": 1},
        },
        machine_id,
    )

    assert config.coze.bot_id == BOT
    assert config.coze.connect_timeout_s == 5.0
    assert isinstance(config.coze.connect_timeout_s, float)
    assert config.auth.pat_file == tmp_path / "pat"
    assert config.device.id == "5551234"
    assert (config.audio.input_device, config.audio.output_device) == (2, "USB Audio")
    assert config.wake.sensitivity == 1.0


def test_the_config_values_are_frozen(machine_id: Path) -> None:
    """A loaded config cannot be changed in place."""
    config = build(VALID, machine_id)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mqtt.port = 1  # type: ignore[misc]


def test_every_setting_documents_itself() -> None:
    """Every field of every config dataclass has a docstring right under it."""
    tree = ast.parse(Path(coze_edge.config.schema.__file__).read_text())
    undocumented = []
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    for cls in classes:
        if cls.name.startswith("_"):
            continue
        for statement, after in zip(cls.body, [*cls.body[1:], None], strict=True):
            if not isinstance(statement, ast.AnnAssign):
                continue
            documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
            if not documented:
                undocumented.append(f"{cls.name}.{ast.unparse(statement.target)}")

    assert len(classes) >= 9
    assert undocumented == []


# --- device id, state_dir, topic prefix -------------------------------------------------------


def test_the_device_id_comes_from_the_machine_id(machine_id: Path) -> None:
    """Without device.id the id is the one derived from the machine-id file."""
    config = build(VALID, machine_id)

    assert config.device.id == MACHINE_DEVICE_ID == device_id_from_machine_id(MACHINE_ID)


def test_a_configured_device_id_wins_over_the_machine_id(tmp_path: Path) -> None:
    """With device.id set, the machine-id file is not needed at all."""
    config = build(with_valid(device={"id": "1234567890123456789"}), tmp_path / "absent")

    assert config.device.id == "1234567890123456789"


def test_an_unreadable_machine_id_asks_for_device_id(tmp_path: Path) -> None:
    """Without device.id and without a machine id, device.id is the one problem."""
    absent = tmp_path / "absent"

    assert problem(VALID, absent) == (
        f"device.id: cannot read {absent} (No such file or directory): set device.id"
    )


@pytest.mark.parametrize("text", ["", "\n", "uninitialized\n"])
def test_a_machine_id_not_yet_set_asks_for_device_id(tmp_path: Path, text: str) -> None:
    """An empty or 'uninitialized' machine-id (first boot) would not be unique: set device.id."""
    path = tmp_path / "machine-id"
    path.write_text(text)

    assert problem(VALID, path) == f"device.id: {path} holds no machine id yet: set device.id"


@pytest.mark.parametrize("value", ["0", "0123", "-5", "abc", "9223372036854775808", -5])
def test_a_device_id_that_is_not_a_positive_int64_is_a_problem(
    machine_id: Path, value: object
) -> None:
    """device.id must be a positive int64 in plain decimal."""
    message = problem(with_valid(device={"id": value}), machine_id)

    assert message.startswith("device.id: must be a positive int64 in decimal")
    assert repr(str(value)) in message


def test_state_dir_is_the_configured_one(machine_id: Path) -> None:
    """A configured state_dir wins over $STATE_DIRECTORY."""
    config = build(with_valid(state_dir="/srv/coze"), machine_id, {"STATE_DIRECTORY": "/var/x"})

    assert config.state_dir == Path("/srv/coze")


def test_state_dir_falls_back_to_the_first_state_directory(machine_id: Path) -> None:
    """Without state_dir, systemd's $STATE_DIRECTORY is used (its first entry if several)."""
    env = {"STATE_DIRECTORY": "/var/lib/coze-edge-a:/var/lib/other"}

    assert build(VALID, machine_id, env).state_dir == Path("/var/lib/coze-edge-a")


def test_topic_prefix_has_the_device_id_filled_in(machine_id: Path) -> None:
    """'<device.id>' is replaced in the default prefix and in a prefix the user writes."""
    default = build(with_valid(device={"id": "42"}), machine_id)
    custom = build(
        with_valid(device={"id": "42"}, mqtt={"topic_prefix": "home/<device.id>/speaker"}),
        machine_id,
    )

    assert default.mqtt.topic_prefix == "coze-edge/42"
    assert custom.mqtt.topic_prefix == "home/42/speaker"


# --- environment overrides --------------------------------------------------------------------


def test_a_section_key_is_overridden_with_its_yaml_value(machine_id: Path) -> None:
    """COZE_EDGE_MQTT__PORT=1884 beats the file's port, as the int 1884."""
    env = {"COZE_EDGE_MQTT__PORT": "1884", "COZE_EDGE_MQTT__TLS": "true"}

    config = build(with_valid(mqtt={"port": 1883}), machine_id, env)

    assert (config.mqtt.port, config.mqtt.tls) == (1884, True)


def test_the_key_part_of_an_override_is_case_insensitive(machine_id: Path) -> None:
    """COZE_EDGE_Vad__End_Silence_Ms names vad.end_silence_ms."""
    config = build(VALID, machine_id, {"COZE_EDGE_Vad__End_Silence_Ms": "900"})

    assert config.vad.end_silence_ms == 900


def test_a_top_level_key_is_overridden(machine_id: Path) -> None:
    """COZE_EDGE_STATE_DIR sets state_dir, ahead of the file and of $STATE_DIRECTORY."""
    env = {"COZE_EDGE_STATE_DIR": "/tmp/state", "STATE_DIRECTORY": "/var/x"}

    config = build(with_valid(state_dir="/srv/coze"), machine_id, env)

    assert config.state_dir == Path("/tmp/state")


def test_overrides_fill_in_what_the_file_leaves_out(machine_id: Path) -> None:
    """Required keys can come from the environment alone."""
    env = {
        "COZE_EDGE_COZE__BOT_ID": BOT,
        "COZE_EDGE_AUTH__CLIENT_ID": "1164",
        "COZE_EDGE_MQTT__HOST": "broker.local",
    }

    config = build({}, machine_id, env)

    assert (config.coze.bot_id, config.auth.client_id) == (BOT, "1164")
    assert config.mqtt.host == "broker.local"


def test_an_empty_or_null_override_means_null(machine_id: Path) -> None:
    """COZE_EDGE_MQTT__HOST= turns MQTT off; 'null' turns discovery off."""
    env = {"COZE_EDGE_MQTT__HOST": "", "COZE_EDGE_MQTT__DISCOVERY_PREFIX": "null"}

    config = build(with_valid(mqtt={"host": "broker.local"}), machine_id, env)

    assert (config.mqtt.host, config.mqtt.discovery_prefix) == (None, None)


def test_variables_that_are_not_overrides_are_ignored(machine_id: Path) -> None:
    """
    COZE_EDGE_CONFIG is the file's path, COZE_EDGE_VENV the scripts', COZE_EDGE_HOOK_* what a
    state hook gets (it may run coze-edge); others are ignored.
    """
    env = {
        "COZE_EDGE_CONFIG": "/etc/x.yaml",
        "COZE_EDGE_VENV": "/opt/venv",
        STATE_VARIABLE: "idle",
        MUTED_VARIABLE: "0",
        "HOME": "/root",
    }

    assert build(VALID, machine_id, env) == build(VALID, machine_id)


def test_an_override_of_an_unknown_key_names_the_variable(machine_id: Path) -> None:
    """A typo in a variable's key is reported on the variable, with a hint."""
    assert problem(VALID, machine_id, {"COZE_EDGE_MQTT__HOTS": "x"}) == (
        "COZE_EDGE_MQTT__HOTS: unknown key mqtt.hots (did you mean 'host'?)"
    )


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("COZE_EDGE_MQT__HOST", "unknown section 'mqt' (did you mean 'mqtt'?)"),
        ("COZE_EDGE_STATE_DIRS", "unknown top-level key 'state_dirs' (did you mean 'state_dir'?)"),
        ("COZE_EDGE_MQTT", "mqtt is a section: set COZE_EDGE_MQTT__<KEY>"),
    ],
)
def test_an_override_of_an_unknown_name_is_a_problem(
    machine_id: Path, variable: str, expected: str
) -> None:
    """Unknown sections and top-level keys, and whole sections, are reported on the variable."""
    assert problem(VALID, machine_id, {variable: "x"}) == f"{variable}: {expected}"


def test_a_wrong_value_from_an_override_says_where_it_came_from(machine_id: Path) -> None:
    """The problem is on the dotted key, and names the variable that set it."""
    assert problem(VALID, machine_id, {"COZE_EDGE_MQTT__PORT": "70000"}) == (
        "mqtt.port: must be between 1 and 65535, got 70000 (from COZE_EDGE_MQTT__PORT)"
    )


def test_an_override_that_is_not_yaml_is_a_problem(machine_id: Path) -> None:
    """A value YAML cannot parse is reported on the variable."""
    message = problem(VALID, machine_id, {"COZE_EDGE_LOG__LEVEL": "[debug"})

    assert message.startswith("COZE_EDGE_LOG__LEVEL: not a YAML value: invalid YAML")


# --- problems ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("vad", "end_silence_ms", "700ms", "expected int, got '700ms'"),
        ("vad", "aggressiveness", True, "expected int, got True"),
        ("vad", "barge_in", "yes please", "expected bool, got 'yes please'"),
        ("vad", "barge_in", 1, "expected bool, got 1"),
        ("coze", "connect_timeout_s", "10", "expected float, got '10'"),
        ("coze", "voice_id", 1.5, "expected str or null, got 1.5"),
        ("coze", "bot_id", ["7"], "expected str, got ['7']"),
        ("audio", "file_input", "", "expected path or null, got ''"),
        ("audio", "input_device", 1.0, "expected str or int or null, got 1.0"),
        ("mqtt", "port", "1883", "expected int, got '1883'"),
        ("mqtt", "ca_file", "/etc/\0ca", "expected path or null, got '/etc/\\x00ca'"),
        ("wake", "sensitivity", 10**400, f"expected float, got 1{'0' * 56}..."),
    ],
)
def test_a_value_of_the_wrong_type_is_a_problem(
    machine_id: Path, section: str, key: str, value: object, expected: str
) -> None:
    """Wrong types are named with the expected type and the value given; bools are not ints."""
    assert problem(with_valid(**{section: {key: value}}), machine_id) == (
        f"{section}.{key}: {expected}"
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("vad", "aggressiveness", 4, "must be between 0 and 3, got 4"),
        ("vad", "aggressiveness", -1, "must be between 0 and 3, got -1"),
        ("vad", "end_silence_ms", 50, "must be between 100 ms and 5000 ms, got 50 ms"),
        ("vad", "pre_roll_ms", 2001, "must be between 0 ms and 2000 ms, got 2001 ms"),
        ("vad", "start_ms", 0, "must be between 20 ms and 1000 ms, got 0 ms"),
        ("vad", "max_utterance_ms", 500, "must be between 1000 ms and 120000 ms, got 500 ms"),
        ("mqtt", "port", 0, "must be between 1 and 65535, got 0"),
        ("mqtt", "port", 65536, "must be between 1 and 65535, got 65536"),
        ("mqtt", "keepalive_s", 1, "must be between 5 s and 3600 s, got 1 s"),
        ("audio", "volume", 101, "must be between 0 and 100, got 101"),
        ("audio", "chunk_ms", 120, "must be between 20 ms and 100 ms, got 120 ms"),
        ("audio", "chunk_ms", 50, "must be a multiple of 20 ms, got 50 ms"),
        ("audio", "codec", "mp3", "must be pcm or opus, got 'mp3'"),
        (
            "audio",
            "opus_bitrate",
            500,
            "must be between 6000 bit/s and 128000 bit/s, got 500 bit/s",
        ),
        ("audio", "block_ms", 10, "must be between 20 ms and 200 ms, got 10 ms"),
        ("audio", "block_ms", 25, "must be a multiple of 10 ms, got 25 ms"),
        ("audio", "prebuffer_ms", -1, "must be between 0 ms and 2000 ms, got -1 ms"),
        ("audio", "input_device", -1, "a device index must be 0 or more, got -1"),
        ("audio", "input_channel", -1, "must be between 0 and 31, got -1"),
        ("audio", "input_channel", 32, "must be between 0 and 31, got 32"),
        ("audio", "input_gain_db", 31, "must be between -20 dB and 30 dB, got 31 dB"),
        (
            "audio",
            "output_keep_open_s",
            0,
            "must be more than 0 s and at most 3600 s, got 0 s",
        ),
        ("audio", "output_warmup_ms", 2500, "must be between 0 ms and 2000 ms, got 2500 ms"),
        (
            "audio",
            "output_rate",
            11025,
            "must be 8000, 16000, 22050, 24000, 32000, 44100 or 48000 Hz, got 11025",
        ),
        ("audio", "capture_rate", 24000, "must be 8000, 16000, 32000 or 48000 Hz, got 24000"),
        ("audio", "capture_rate", 22050, "must be 8000, 16000, 32000 or 48000 Hz, got 22050"),
        ("coze", "reply_timeout_ms", 999, "must be between 1000 ms and 300000 ms, got 999 ms"),
        ("coze", "connect_timeout_s", 0, "must be more than 0 s and at most 300 s, got 0 s"),
        (
            "coze",
            "read_timeout_s",
            float("nan"),
            "must be more than 0 s and at most 600 s, got nan s",
        ),
        ("coze", "ping_interval_s", -1.5, "must be more than 0 s and at most 600 s, got -1.5 s"),
        ("wake", "sensitivity", 1.5, "must be between 0 and 1, got 1.5"),
    ],
)
def test_a_value_out_of_range_is_a_problem(
    machine_id: Path, section: str, key: str, value: object, expected: str
) -> None:
    """Numbers outside their range, or off their step, are named with the range."""
    assert problem(with_valid(**{section: {key: value}}), machine_id) == (
        f"{section}.{key}: {expected}"
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("coze", "region", "CN", "must be cn or com, got 'CN' (did you mean 'cn'?)"),
        ("coze", "region", "eu", "must be cn or com, got 'eu'"),
        (
            "coze",
            "turn_detection",
            "server",
            "must be client_interrupt or server_vad, got 'server' (did you mean 'server_vad'?)",
        ),
        ("auth", "method", "oauth", "must be device_code, pat or token_url, got 'oauth'"),
        (
            "audio",
            "backend",
            "alsa",
            "must be sounddevice or file, got 'alsa'",
        ),
        (
            "wake",
            "word",
            "hey_nabu",
            "must be okay_nabu, alexa, hey_jarvis, hey_mycroft or null, got 'hey_nabu'"
            " (did you mean 'okay_nabu'?)",
        ),
        (
            "log",
            "level",
            "WARN",
            "must be debug, info, warning or error, got 'WARN' (did you mean 'warning'?)",
        ),
    ],
)
def test_a_value_outside_its_choices_is_a_problem(
    machine_id: Path, section: str, key: str, value: object, expected: str
) -> None:
    """Enumerated keys list their choices, and the likeliest one when the value is close."""
    assert problem(with_valid(**{section: {key: value}}), machine_id) == (
        f"{section}.{key}: {expected}"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("api_base", "api.coze.cn", "must be a URL starting with http:// or https://"),
        ("api_base", "wss://api.coze.cn", "must be a URL starting with http:// or https://"),
        ("api_base", "https://", "must be a URL starting with http:// or https://"),
        ("ws_base", "https://ws.coze.cn", "must be a URL starting with ws:// or wss://"),
        ("ws_base", "wss://ws.coze.cn/?a=1", "must be a base URL without ?query or #fragment"),
        ("api_base", "http://[::1", "is not a URL"),
    ],
)
def test_a_base_url_with_the_wrong_scheme_is_a_problem(
    machine_id: Path, key: str, value: str, expected: str
) -> None:
    """REST bases are http(s)://, WebSocket bases ws(s)://, both with a host."""
    assert problem(with_valid(coze={key: value}), machine_id).startswith(f"coze.{key}: {expected}")


def test_bot_id_is_required(machine_id: Path) -> None:
    """A config without coze.bot_id (or with a blank one) says what to put there."""
    expected = "coze.bot_id: required: the id of the bot to talk to (from its URL in Coze)"

    assert problem({"auth": {"client_id": "1"}}, machine_id) == expected
    assert problem(with_valid(coze={"bot_id": "  "}), machine_id) == expected


def test_client_id_is_required_for_the_device_flow_only(machine_id: Path) -> None:
    """method device_code needs auth.client_id; method pat does not."""
    assert problem({"coze": {"bot_id": BOT}}, machine_id) == (
        "auth.client_id: required with method device_code "
        "(the OAuth app's client id: README, the Coze side)"
    )
    assert build({"coze": {"bot_id": BOT}, "auth": {"method": "pat"}}, machine_id).auth.method == (
        "pat"
    )


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("coze-edge/+", "must not contain the MQTT wildcards + or #"),
        ("coze-edge/#", "must not contain the MQTT wildcards + or #"),
        ("coze-edge/", "must not end in '/'"),
        ("$SYS/coze", "must not start with '$'"),
        ("", "must not be empty"),
    ],
)
def test_a_topic_prefix_that_mqtt_cannot_publish_under_is_a_problem(
    machine_id: Path, prefix: str, expected: str
) -> None:
    """Topic prefixes have no wildcards, no trailing '/', no leading '$'."""
    assert problem(with_valid(mqtt={"topic_prefix": prefix}), machine_id).startswith(
        f"mqtt.topic_prefix: {expected}"
    )


def test_a_url_for_the_broker_host_is_a_problem(machine_id: Path) -> None:
    """mqtt.host is a host name, not mqtt://..."""
    assert problem(with_valid(mqtt={"host": "mqtt://broker"}), machine_id) == (
        "mqtt.host: must be a host name or address, not a URL, got 'mqtt://broker'"
    )


@pytest.mark.parametrize(
    ("given", "missing"), [("cert_file", "key_file"), ("key_file", "cert_file")]
)
def test_cert_and_key_files_go_together(machine_id: Path, given: str, missing: str) -> None:
    """A client certificate without its key, or the reverse, is a problem on the missing one."""
    assert problem(with_valid(mqtt={given: "/etc/x.pem"}), machine_id) == (
        f"mqtt.{missing}: cert_file and key_file go together: set both or neither"
    )


def test_the_file_backend_needs_an_input_file(machine_id: Path) -> None:
    """backend: file without file_input says so."""
    assert problem(with_valid(audio={"backend": "file"}), machine_id) == (
        "audio.file_input: required with backend file: the WAV to use as the microphone"
    )


def test_the_file_backend_checks_its_files(tmp_path: Path, machine_id: Path) -> None:
    """file_input must be an existing file; file_output's directory must exist."""
    missing = tmp_path / "missing.wav"
    nowhere = tmp_path / "no" / "out.wav"

    found = problems(
        with_valid(
            audio={"backend": "file", "file_input": str(missing), "file_output": str(nowhere)}
        ),
        machine_id,
    )
    as_dir = problems(
        with_valid(
            audio={"backend": "file", "file_input": str(tmp_path), "file_output": str(tmp_path)}
        ),
        machine_id,
    )

    assert found == [
        ("audio.file_input", f"{missing} does not exist"),
        ("audio.file_output", f"{tmp_path / 'no'} (its directory) does not exist"),
    ]
    assert as_dir == [
        ("audio.file_input", f"{tmp_path} is a directory"),
        ("audio.file_output", f"{tmp_path} is a directory"),
    ]


def test_the_file_backend_accepts_a_new_output_file(tmp_path: Path, machine_id: Path) -> None:
    """An existing input and a not-yet-existing output in an existing directory are fine."""
    source = tmp_path / "in.wav"
    with wave.open(str(source), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(320))

    config = build(
        with_valid(
            audio={
                "backend": "file",
                "file_input": str(source),
                "file_output": str(tmp_path / "o.wav"),
            }
        ),
        machine_id,
    )

    assert config.audio.file_input == source
    assert config.audio.file_output == tmp_path / "o.wav"


def test_the_sounddevice_backend_ignores_the_file_keys(tmp_path: Path, machine_id: Path) -> None:
    """Files named for the file backend are not checked while it is not in use."""
    config = build(with_valid(audio={"file_input": str(tmp_path / "missing.wav")}), machine_id)

    assert config.audio.backend == "sounddevice"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_valid(mqtt={"hots": "x"}), "mqtt.hots: unknown key (did you mean 'host'?)"),
        (with_valid(mqt={"host": "x"}), "mqt: unknown key (did you mean 'mqtt'?)"),
        ({**VALID, "bot_id": BOT}, "bot_id: unknown key (did you mean coze.bot_id?)"),
        (with_valid(coze={"host": "x"}), "coze.host: unknown key (did you mean mqtt.host?)"),
        (
            with_valid(coze={"vad": {}}),
            "coze.vad: unknown key (vad is a section of its own, at the top)",
        ),
        (with_valid(vad={"zzz": 1}), "vad.zzz: unknown key"),
        (with_valid(vad={1: 1}), "vad.1: unknown key"),
    ],
)
def test_an_unknown_key_is_a_problem_with_a_hint(
    machine_id: Path, data: dict[Any, Any], expected: str
) -> None:
    """Unknown keys are errors, with the likeliest intended key when there is one."""
    assert problem(data, machine_id) == expected


@pytest.mark.parametrize("value", ["on", 5, ["host"]])
def test_a_section_that_is_not_a_mapping_is_a_problem(machine_id: Path, value: object) -> None:
    """'mqtt: on' is not a section."""
    message = problem(with_valid(mqtt=value), machine_id)

    assert message.startswith("mqtt: expected a mapping of keys, got ")


def test_every_problem_is_reported_at_once(tmp_path: Path, machine_id: Path) -> None:
    """One error lists every problem, in section order, so the file is fixed in one pass."""
    path = tmp_path / "kitchen.yaml"
    path.write_text(
        "mqtt:\n  hots: broker\n"
        "vad:\n  aggressiveness: 7\n  end_silence_ms: 700ms\n"
        "coze:\n  bot_id: '7496347519799787557'\n"
        "auth:\n  client_id: '1164'\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={}, machine_id_path=machine_id)

    assert str(caught.value) == (
        f"{path}: 3 problem(s)\n"
        "  vad.end_silence_ms: expected int, got '700ms'\n"
        "  vad.aggressiveness: must be between 0 and 3, got 7\n"
        "  mqtt.hots: unknown key (did you mean 'host'?)"
    )


def test_problems_of_every_kind_come_together(machine_id: Path) -> None:
    """Types, ranges, choices, unknown keys, requirements and overrides, all in one error."""
    found = problems(
        {
            "coze": {"region": "us", "reply_timeout_ms": "soon"},
            "auth": {"method": "device_code"},
            "audio": {"backend": "file", "volume": 200},
            "wake": {"wrd": "alexa"},
        },
        machine_id,
        {"COZE_EDGE_LOG__LEVELL": "debug"},
    )

    assert [key for key, _ in found] == [
        "coze.reply_timeout_ms",
        "coze.region",
        "coze.bot_id",
        "auth.client_id",
        "audio.file_input",
        "audio.volume",
        "wake.wrd",
        "COZE_EDGE_LOG__LEVELL",
    ]


# --- the file ---------------------------------------------------------------------------------


def test_a_config_file_is_read(tmp_path: Path, machine_id: Path) -> None:
    """load_config reads the YAML file and applies the environment to it."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**VALID, "mqtt": {"host": "broker.local"}}))

    config = load_config(path, env={"COZE_EDGE_MQTT__PORT": "8883"}, machine_id_path=machine_id)

    assert (config.mqtt.host, config.mqtt.port, config.coze.bot_id) == ("broker.local", 8883, BOT)


def test_load_config_reads_the_process_environment_by_default(
    tmp_path: Path, machine_id: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without env=, the overrides come from os.environ."""
    for name in [name for name in os.environ if name.startswith("COZE_EDGE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("COZE_EDGE_VAD__START_MS", "80")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(VALID))

    config = load_config(path, machine_id_path=machine_id)

    assert config.vad.start_ms == 80


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config file that does not exist is one problem, on the file."""
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    assert caught.value.source == str(path)
    assert caught.value.problems == [("", "cannot read the file: No such file or directory")]


def test_a_yaml_syntax_error_says_the_line(tmp_path: Path) -> None:
    """Invalid YAML is reported with its line and column."""
    path = tmp_path / "config.yaml"
    path.write_text("coze:\n  bot_id: '7'\nmqtt:\n  host: [broker\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    [(key, message)] = caught.value.problems
    assert key == ""
    assert message.startswith("invalid YAML at line 5, column 1: ")


def test_a_key_given_twice_is_a_problem(tmp_path: Path) -> None:
    """A repeated key would silently lose the first value: it is an error with its line."""
    path = tmp_path / "config.yaml"
    path.write_text("mqtt:\n  host: a\n  port: 1\n  host: b\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    assert caught.value.problems == [
        ("", "invalid YAML at line 4, column 3: 'host' is given twice")
    ]


def test_yaml_merge_keys_still_work(tmp_path: Path, machine_id: Path) -> None:
    """'<<' merges are not mistaken for repeated keys, and the local key wins."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "coze:\n  <<: {bot_id: '7', region: com}\n  region: cn\nauth: {client_id: '1'}\n"
    )

    config = load_config(path, env={}, machine_id_path=machine_id)

    assert (config.coze.bot_id, config.coze.region) == ("7", "cn")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string")])
def test_a_top_level_that_is_not_a_mapping_is_a_problem(
    tmp_path: Path, text: str, kind: str
) -> None:
    """The file must be a mapping of sections."""
    path = tmp_path / "config.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    assert caught.value.problems == [
        ("", f"expected a mapping of sections (coze:, audio:, ...) at the top, got {kind}")
    ]


def test_an_empty_file_asks_for_the_required_keys(tmp_path: Path, machine_id: Path) -> None:
    """An empty file is all defaults, so what has no default is what is missing."""
    path = tmp_path / "config.yaml"
    path.write_text("# nothing yet\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={}, machine_id_path=machine_id)

    assert [key for key, _ in caught.value.problems] == ["coze.bot_id", "auth.client_id"]


def test_the_example_config_loads_once_the_placeholders_are_filled(machine_id: Path) -> None:
    """config/coze-edge.example.yaml with bot_id and client_id set is exactly the defaults."""
    env = {"COZE_EDGE_COZE__BOT_ID": BOT, "COZE_EDGE_AUTH__CLIENT_ID": "1164"}

    config = load_config(EXAMPLE, env=env, machine_id_path=machine_id)

    assert config == build(VALID, machine_id)


def test_the_example_config_names_every_key() -> None:
    """Every field of every section is in the example file, and nothing else is."""
    example = yaml.safe_load(EXAMPLE.read_text())
    sections = {f.name: f.type for f in dataclasses.fields(Config)}

    assert list(example) == list(sections)
    for name, value in example.items():
        if isinstance(value, dict):
            cls = coze_edge.config.schema.SECTIONS[name]
            assert list(value) == [f.name for f in dataclasses.fields(cls)], name


def test_the_example_config_and_the_readme_name_every_wake_word() -> None:
    """The docs offer exactly the wake words the config accepts (WAKE_WORDS)."""
    [example] = [line for line in EXAMPLE.read_text().splitlines() if line.startswith("  word:")]
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    section = readme.partition("## Wake word")[2].partition("\n## ")[0]

    words = re.compile(r"\b(?:okay_|hey_)\w+|\balexa\b")

    assert words.findall(example) == [*WAKE_WORDS]
    assert sorted(set(words.findall(section))) == sorted(WAKE_WORDS)


# --- where the file is ------------------------------------------------------------------------


def test_the_command_line_path_comes_first() -> None:
    """-c FILE wins over every variable."""
    env = {"COZE_EDGE_CONFIG": "/env.yaml", "CONFIGURATION_DIRECTORY": "/etc/x"}

    assert resolve_config_path("/cli.yaml", env) == Path("/cli.yaml")
    assert resolve_config_path(Path("rel.yaml"), env) == Path("rel.yaml")


def test_the_config_variable_comes_second() -> None:
    """$COZE_EDGE_CONFIG wins over systemd's configuration directory."""
    env = {"COZE_EDGE_CONFIG": "/env.yaml", "CONFIGURATION_DIRECTORY": "/etc/x"}

    assert resolve_config_path(None, env) == Path("/env.yaml")


def test_the_systemd_configuration_directory_comes_third() -> None:
    """$CONFIGURATION_DIRECTORY/config.yaml, from the first directory if several."""
    env = {"CONFIGURATION_DIRECTORY": "/etc/coze-a:/etc/coze-b"}

    assert resolve_config_path(None, env) == Path("/etc/coze-a/config.yaml")


def test_the_default_path_comes_last() -> None:
    """With nothing set, the config is /etc/coze-edge/config.yaml."""
    assert resolve_config_path(None, {}) == Path("/etc/coze-edge/config.yaml")
    assert resolve_config_path("", {"COZE_EDGE_CONFIG": ""}) == Path("/etc/coze-edge/config.yaml")


# --- secrets ----------------------------------------------------------------------------------


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_secret_is_read_from_its_file_and_stripped(tmp_path: Path) -> None:
    """The *_file key's file wins over the credentials directory; whitespace is dropped."""
    creds = tmp_path / "creds"
    creds.mkdir()
    secret_file(creds / "coze_pat", "from-credentials")
    path = secret_file(tmp_path / "pat", "  pat_abc\n")

    secret = read_secret(path, "coze_pat", env={"CREDENTIALS_DIRECTORY": str(creds)})

    assert secret == "pat_abc"


def test_a_secret_comes_from_the_systemd_credentials_directory(tmp_path: Path) -> None:
    """Without a file key, $CREDENTIALS_DIRECTORY/<credential> is read."""
    secret_file(tmp_path / "mqtt_password", "hunter2\n")

    secret = read_secret(None, "mqtt_password", env={"CREDENTIALS_DIRECTORY": str(tmp_path)})

    assert secret == "hunter2"


def test_no_secret_anywhere_is_none(tmp_path: Path) -> None:
    """Without a file key and without that credential, there is no secret."""
    assert read_secret(None, "coze_pat", env={}) is None
    assert read_secret(None, "coze_pat", env={"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


def test_an_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    """A *_file that cannot be read is a ConfigError on its key."""
    with pytest.raises(ConfigError) as caught:
        read_secret(tmp_path / "absent", "coze_pat", env={})

    assert caught.value.problems == [
        ("auth.pat_file", f"cannot read {tmp_path / 'absent'}: No such file or directory")
    ]


@pytest.mark.parametrize("text", ["", " \n"])
def test_an_empty_secret_is_an_error(tmp_path: Path, text: str) -> None:
    """An empty password file or credential is a ConfigError naming it."""
    path = secret_file(tmp_path / "mqtt_password", text)

    with pytest.raises(ConfigError) as by_key:
        read_secret(path, "mqtt_password", env={})
    with pytest.raises(ConfigError) as by_credential:
        read_secret(None, "mqtt_password", env={"CREDENTIALS_DIRECTORY": str(tmp_path)})

    assert by_key.value.problems == [("mqtt.password_file", f"{path} is empty")]
    assert by_credential.value.problems == [("credential mqtt_password", f"{path} is empty")]


def test_a_world_readable_secret_is_warned_about_but_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret every user can read still works, with a warning that names the file only."""
    path = secret_file(tmp_path / "pat", "pat_sEcReT\n", mode=0o644)

    with caplog.at_level(logging.DEBUG, logger="coze_edge.config"):
        secret = read_secret(path, "coze_pat", env={})

    assert secret == "pat_sEcReT"
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert "sEcReT" not in caplog.text


def test_a_private_secret_gets_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Mode 0600 (or 0640) is quiet."""
    private = secret_file(tmp_path / "a", "x", mode=0o600)
    group = secret_file(tmp_path / "b", "x", mode=0o640)

    with caplog.at_level(logging.DEBUG, logger="coze_edge.config"):
        assert not warn_if_world_readable(private)
        assert not warn_if_world_readable(group)
        assert not warn_if_world_readable(tmp_path / "absent")

    assert caplog.records == []


# --- any input --------------------------------------------------------------------------------

_FIELDS = sorted(
    {f.name for cls in coze_edge.config.schema.SECTIONS.values() for f in dataclasses.fields(cls)}
)
_LIKELY = [
    "cn", "com", "file", "pat", "debug", "alexa", "server_vad", "http://h", "ws://h",
    "7", "0", "", "a/b", "<device.id>", 16000, 24000, 60, 700, 1, 0, -1, 0.5,
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(_LIKELY),
)
_keys = st.one_of(st.sampled_from(_FIELDS), st.text(max_size=6), st.integers())
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)
_sections = st.dictionaries(
    st.sampled_from([*coze_edge.config.schema.SECTIONS, "state_dir"]) | _keys,
    st.dictionaries(_keys, _values, max_size=6) | _values,
    max_size=6,
)
_env = st.dictionaries(
    st.sampled_from(["COZE_EDGE_MQTT__PORT", "COZE_EDGE_STATE_DIR", "COZE_EDGE_DEVICE__ID"])
    | st.text(max_size=12).map(lambda s: "COZE_EDGE_" + s),
    st.text(max_size=10) | st.sampled_from(["1884", "null", "[", "{a: 1}"]),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(data=_sections | _sections.map(lambda extra: {**VALID, **extra}), env=_env)
def test_any_mapping_gives_a_config_or_a_config_error(
    data: dict[Any, Any], env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Whatever the YAML and the environment hold, the loader never fails any other way."""
    machine_id = tmp_path_factory.getbasetemp() / "hypothesis-machine-id"
    machine_id.write_text(MACHINE_ID)

    outcome: Config | ConfigError
    try:
        outcome = config_from_mapping(data, env=env, machine_id_path=machine_id)
    except ConfigError as exc:
        outcome = exc

    if isinstance(outcome, ConfigError):
        assert outcome.problems
        assert all(isinstance(key, str) and message for key, message in outcome.problems)
    else:
        assert not list(outcome.problems())


@pytest.mark.parametrize(("value", "expected"), [("auto", "auto"), (True, True), (False, False)])
def test_echo_cancellation_is_auto_or_a_boolean(
    machine_id: Path, value: object, expected: object
) -> None:
    config = build(with_valid(audio={"echo_cancellation": value}), machine_id)
    assert config.audio.echo_cancellation == expected


def test_echo_cancellation_names_its_choices(machine_id: Path) -> None:
    message = problem(with_valid(audio={"echo_cancellation": "maybe"}), machine_id)
    assert message == "audio.echo_cancellation: must be auto, true or false, got 'maybe'"


def test_barge_in_level_is_a_level_below_full_scale(machine_id: Path) -> None:
    assert (
        build(with_valid(vad={"barge_in_level_dbfs": -30}), machine_id).vad.barge_in_level_dbfs
        == -30
    )
    message = problem(with_valid(vad={"barge_in_level_dbfs": 6}), machine_id)
    assert message.startswith("vad.barge_in_level_dbfs: must be between -90 dBFS and 0 dBFS")


def test_opus_packets_default_to_20_ms_and_last_at_most_60(machine_id: Path) -> None:
    audio = build(with_valid(audio={"codec": "opus"}), machine_id).audio
    assert (audio.codec, audio.append_ms, audio.opus_bitrate) == ("opus", 20, 24000)
    assert (
        build(with_valid(audio={"codec": "opus", "chunk_ms": 60}), machine_id).audio.append_ms == 60
    )
    message = problem(with_valid(audio={"codec": "opus", "chunk_ms": 80}), machine_id)
    assert message == "audio.chunk_ms: must be between 20 ms and 60 ms, got 80 ms"
    message = problem(with_valid(audio={"codec": "opus", "capture_rate": 32000}), machine_id)
    assert message == "audio.capture_rate: Opus runs at 8000, 16000 or 48000 Hz here, got 32000"


# --- mappings for Coze's chat_config ----------------------------------------------------------


def test_chat_config_mappings_are_read_and_kept_read_only(machine_id: Path) -> None:
    """custom_variables and meta_data are text (a number as written), parameters any JSON;
    the config holds them read-only."""
    config = build(
        with_valid(
            coze={
                "bot_id": BOT,
                "custom_variables": {"room": "kitchen", "floor": 2},
                "meta_data": {"site": "north"},
                "parameters": {"n": 3, "list": [1, "a"], "flag": False, "none": None},
            }
        ),
        machine_id,
    )
    assert dict(config.coze.custom_variables) == {"room": "kitchen", "floor": "2"}
    assert dict(config.coze.meta_data) == {"site": "north"}
    assert dict(config.coze.parameters) == {"n": 3, "list": [1, "a"], "flag": False, "none": None}
    with pytest.raises(TypeError):
        config.coze.meta_data["x"] = "y"  # type: ignore[index]
    assert dict(build(VALID, machine_id).coze.parameters) == {}


@pytest.mark.parametrize(
    ("coze", "expected"),
    [
        ({"custom_variables": ["a"]}, "coze.custom_variables: expected a mapping"),
        ({"custom_variables": {"a": {"b": 1}}}, "expected a mapping of text values"),
        ({"meta_data": {"k" * 65: "v"}}, "coze.meta_data.kkk"),
        ({"meta_data": {"k": ""}}, "values must be 1 to 512 characters"),
        ({"meta_data": {str(i): "v" for i in range(17)}}, "at most 16 pairs, got 17"),
        ({"parameters": {1.5: "x"}}, "expected a mapping with text keys"),
        ({"workflow_id": ""}, "coze.workflow_id: must not be empty"),
    ],
)
def test_bad_chat_config_mappings_are_named(
    machine_id: Path, coze: dict[str, Any], expected: str
) -> None:
    assert expected in problem(with_valid(coze={"bot_id": BOT, **coze}), machine_id)
