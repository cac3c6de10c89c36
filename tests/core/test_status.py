"""
Status, topics, payloads and Home Assistant discovery documents.

The discovery checks mirror Home Assistant's own validation (homeassistant/components/mqtt,
read from its source): sensor and binary_sensor use MQTT_RO_SCHEMA (state_topic required),
switch, number and text MQTT_RW_SCHEMA (command_topic required), button requires
command_topic; the device block needs identifiers or connections (schemas.py
validate_device_has_at_least_one_identifier) and ties entities to it only with a unique_id;
text needs min < max <= 255 (text.py); sensor options only with device_class enum and never
with a unit or state class (sensor.py); discovery.py's TOPIC_MATCHER takes
<component>/[<node_id>/]<object_id>/config with ids of [a-zA-Z0-9_-].
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from coze_edge.core.commands import (
    CommandError,
    Listen,
    Mute,
    Say,
    SetVolume,
    Unmute,
    parse_command,
)
from coze_edge.core.status import (
    TEXT_EVENTS,
    DeviceStatus,
    LoginPrompt,
    State,
    StatusParts,
    Topics,
    discovery_messages,
    event_payload,
    login_payload,
)

TOPICS = Topics("coze-edge/42")

# <discovery_prefix>/ then Home Assistant's TOPIC_MATCHER (discovery.py).
HA_TOPIC = re.compile(
    r"homeassistant/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)"
    r"?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "number": {"command_topic"},
    "text": {"command_topic"},
    "button": {"command_topic"},
}
COMMON = {"unique_id", "device", "availability_topic", "name"}


def documents(device_id: str = "42") -> dict[str, tuple[str, dict[str, Any]]]:
    """object_id -> (component, document)."""
    found = {}
    for topic, payload in discovery_messages(device_id, "Kitchen", TOPICS, "homeassistant", "1.2"):
        match = HA_TOPIC.fullmatch(topic)
        assert match, topic
        found[match["object_id"]] = (match["component"], json.loads(payload))
    return found


def test_state_values_are_the_contract_list() -> None:
    """The state field takes exactly the values CONTRACT.md lists."""
    assert [state.value for state in State] == [
        "starting",
        "unauthorized",
        "connecting",
        "idle",
        "listening",
        "thinking",
        "speaking",
        "error",
    ]


def test_status_json_has_every_field() -> None:
    """The state payload carries state, muted, volume, coze_connected and detail."""
    status = DeviceStatus(State.SPEAKING, muted=True, volume=35, coze_connected=True, detail="x")

    assert json.loads(status.to_json()) == {
        "state": "speaking",
        "muted": True,
        "volume": 35,
        "coze_connected": True,
        "detail": "x",
    }


def test_topics_sit_under_the_prefix() -> None:
    """Every topic is the prefix plus the contract's name."""
    assert TOPICS.availability == "coze-edge/42/availability"
    assert TOPICS.state == "coze-edge/42/state"
    assert TOPICS.login == "coze-edge/42/login"
    assert TOPICS.event == "coze-edge/42/event"
    assert TOPICS.cmd("volume") == "coze-edge/42/cmd/volume"
    assert TOPICS.cmd_wildcard == "coze-edge/42/cmd/+"


@pytest.mark.parametrize(
    ("topic", "name"),
    [
        ("coze-edge/42/cmd/say", "say"),
        ("coze-edge/42/cmd/", None),
        ("coze-edge/42/cmd/a/b", None),
        ("coze-edge/42/state", None),
        ("coze-edge/421/cmd/say", None),
    ],
)
def test_command_names_come_from_command_topics_only(topic: str, name: str | None) -> None:
    """Only a single level under cmd/ names a command."""
    assert TOPICS.command_name(topic) == name


def test_event_payload_is_one_json_object_with_its_type() -> None:
    """An event is its type plus its fields; values JSON lacks become text, UTF-8 stays."""
    payload = event_payload("reply", text="晴", at=datetime(2025, 1, 1, tzinfo=UTC))

    assert json.loads(payload) == {"type": "reply", "text": "晴", "at": "2025-01-01 00:00:00+00:00"}
    assert "晴".encode() in payload


def test_login_payload_has_code_url_and_utc_expiry() -> None:
    """expires_at is ISO 8601 in UTC with a Z, whatever zone the prompt came in."""
    east = timezone(timedelta(hours=8))
    prompt = LoginPrompt(
        "ABCD", "https://www.coze.cn/device", datetime(2025, 1, 1, 8, 0, 30, 5, east)
    )

    assert json.loads(login_payload(prompt)) == {
        "user_code": "ABCD",
        "verification_url": "https://www.coze.cn/device",
        "expires_at": "2025-01-01T00:00:30Z",
    }


def test_a_naive_expiry_is_taken_as_utc() -> None:
    """A datetime without a zone is read as UTC."""
    prompt = LoginPrompt("ABCD", "u", datetime(2025, 1, 1, 8, 0))

    assert json.loads(login_payload(prompt))["expires_at"] == "2025-01-01T08:00:00Z"


def test_no_login_is_the_empty_message_that_clears_the_retained_one() -> None:
    """With nothing pending the login payload is empty."""
    assert login_payload(None) == b""


# --- discovery -------------------------------------------------------------------------------


def test_discovery_describes_the_entities_of_the_issue() -> None:
    """State, transcript, reply, latency, Coze link, mute, volume, three buttons, say, login."""
    found = {key: component for key, (component, _) in documents().items()}

    assert found == {
        "state": "sensor",
        "transcript": "sensor",
        "reply": "sensor",
        "latency": "sensor",
        "login_code": "sensor",
        "coze": "binary_sensor",
        "mute": "switch",
        "volume": "number",
        "listen": "button",
        "cancel": "button",
        "new_conversation": "button",
        "say": "text",
    }


def test_every_document_has_the_keys_home_assistant_requires() -> None:
    """Each component's required topic, a unique_id, the availability topic and the device."""
    for key, (component, document) in documents().items():
        missing = (REQUIRED[component] | COMMON) - document.keys()
        assert not missing, f"{key}: {missing}"
        assert document["availability_topic"] == TOPICS.availability
        assert (document["payload_available"], document["payload_not_available"]) == (
            "online",
            "offline",
        )


def test_all_entities_belong_to_one_device() -> None:
    """One device block: identifiers from the device id, its name, model and software version."""
    devices = [document["device"] for _, document in documents().values()]

    assert all(device == devices[0] for device in devices)
    assert devices[0]["identifiers"] == ["coze_edge_42"]
    assert devices[0]["name"] == "Kitchen"
    assert devices[0]["sw_version"] == "1.2"
    assert devices[0]["model"]


def test_unique_ids_are_unique_and_stable() -> None:
    """Each entity's unique_id is derived from the device id and the entity."""
    ids = [document["unique_id"] for _, document in documents().values()]

    assert len(set(ids)) == len(ids)
    assert "coze_edge_42_volume" in ids


def test_component_specific_rules_hold() -> None:
    """Text length limits, number range, and enum options without unit or state class."""
    for component, document in documents().values():
        if component == "text":
            assert 0 <= document["min"] < document["max"] <= 255
        if component == "number":
            assert document["min"] < document["max"]
            assert document["step"] > 0
        if "options" in document:
            assert document["device_class"] == "enum"
            assert document["options"]
            assert "unit_of_measurement" not in document
            assert "state_class" not in document
        if component in {"sensor", "binary_sensor"}:
            assert document.get("entity_category") in {None, "diagnostic"}


def test_topics_bound_in_discovery_are_the_device_topics() -> None:
    """Entities read the state, event and login topics and write to cmd/ topics."""
    ours = {TOPICS.state, TOPICS.event, TOPICS.login}
    for _, document in documents().values():
        if "state_topic" in document:
            assert document["state_topic"] in ours
        if "command_topic" in document:
            assert TOPICS.command_name(document["command_topic"]) is not None


def test_templates_read_only_fields_the_payloads_have() -> None:
    """Every value_json field a template reads exists in what that topic carries."""
    fields = {
        TOPICS.state: set(json.loads(DeviceStatus(State.IDLE).to_json())),
        TOPICS.event: {"type", "text", "first_audio_ms"},
        TOPICS.login: {"user_code", "verification_url", "expires_at"},
    }
    for key, (_, document) in documents().items():
        if "state_topic" not in document:
            continue
        used = set(re.findall(r"value_json\.(\w+)", document.get("value_template", "")))
        assert used <= fields[document["state_topic"]], key


def test_what_home_assistant_sends_is_understood() -> None:
    """Button presses, switch ON/OFF, a number and a text parse as the intended commands."""
    found = documents()

    def send(key: str, payload: str) -> object:
        name = TOPICS.command_name(found[key][1]["command_topic"])
        assert name is not None
        return parse_command(name, payload.encode())

    assert send("listen", found["listen"][1]["payload_press"]) == Listen()
    assert send("mute", found["mute"][1]["payload_on"]) == Mute()
    assert send("mute", found["mute"][1]["payload_off"]) == Unmute()
    assert send("volume", "35") == SetVolume(35)
    assert send("volume", "35.0") == SetVolume(35)
    assert send("say", "hello") == Say("hello")
    with pytest.raises(CommandError):
        send("volume", "loud")


def test_odd_device_ids_still_give_topics_home_assistant_accepts() -> None:
    """Characters discovery ids may not hold are replaced."""
    for topic, _ in discovery_messages("a b/c+#", "x", TOPICS, "homeassistant", "1"):
        assert HA_TOPIC.fullmatch(topic), topic


def test_discovery_payloads_are_plain_utf8_json() -> None:
    """A device name in Chinese is sent as UTF-8, not escaped."""
    messages = discovery_messages("42", "客厅音箱", TOPICS, "homeassistant", "1")

    assert all("客厅音箱".encode() in payload for _, payload in messages)


def test_without_remote_listen_the_listen_button_is_withdrawn() -> None:
    """remote_listen off: the listen button's config is the empty message that removes it."""
    messages = dict(
        discovery_messages("42", "Kitchen", TOPICS, "homeassistant", "1", remote_listen=False)
    )

    assert messages.pop("homeassistant/button/coze_edge_42/listen/config") == b""
    assert all(payload for payload in messages.values())
    assert len(messages) == len(documents()) - 1


def test_without_publish_text_the_text_sensors_are_withdrawn() -> None:
    """publish_text off: no last transcript or last reply sensor; nothing else reads text."""
    messages = dict(
        discovery_messages("42", "Kitchen", TOPICS, "homeassistant", "1", publish_text=False)
    )

    assert messages.pop("homeassistant/sensor/coze_edge_42/transcript/config") == b""
    assert messages.pop("homeassistant/sensor/coze_edge_42/reply/config") == b""
    assert all(payload for payload in messages.values())
    templates = [json.loads(payload).get("value_template", "") for payload in messages.values()]
    assert not [template for template in templates if "value_json.text" in template]


def test_the_events_home_assistant_shows_the_text_of_are_the_text_events() -> None:
    """TEXT_EVENTS, what publish_text keeps off MQTT, are the events whose text is shown."""
    shown = set()
    for _, document in documents().values():
        template = document.get("value_template", "")
        if "value_json.text" in template:
            shown |= set(re.findall(r"value_json\.type == '(\w+)'", template))

    assert shown == TEXT_EVENTS


def test_refused_credentials_are_an_error_over_anything_but_a_lost_sound_card() -> None:
    """The token service refusing the device shows as ``error`` with ``auth:`` first, even
    while a turn runs on the token that is left; only a lost sound card says more."""
    refused = StatusParts(state=State.SPEAKING, auth_fault="secret refused")

    assert refused.status().state is State.ERROR
    assert refused.status().detail == "auth: secret refused"
    assert StatusParts(auth_fault="a", login_pending=True).status().detail == "auth: a"
    assert StatusParts(auth_fault="a", audio_fault="gone").status().detail == "audio: gone"
