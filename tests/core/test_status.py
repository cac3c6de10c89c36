"""
Status, topics, payloads and Home Assistant discovery documents.

The discovery checks mirror Home Assistant's own validation (homeassistant/components/mqtt,
read from its source): sensor and binary_sensor use MQTT_RO_SCHEMA (state_topic required),
switch, number, text and select MQTT_RW_SCHEMA (command_topic required), button and notify
require command_topic; select requires options, event state_topic and event_types, update
(MQTT_RO_SCHEMA) state_topic; the device block needs identifiers or connections (schemas.py
validate_device_has_at_least_one_identifier) and ties entities to it only with a unique_id;
text needs min < max <= 255 (text.py); sensor options only with device_class enum and never
with a unit or state class (sensor.py); discovery.py's TOPIC_MATCHER takes
<component>/[<node_id>/]<object_id>/config with ids of [a-zA-Z0-9_-]. scripts/ha-check runs
all of it in a real Home Assistant.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from coze_edge.core.commands import (
    MAX_SAY_CHARS,
    CommandError,
    Listen,
    Mute,
    RestartDaemon,
    Say,
    SetTurnDetection,
    SetVolume,
    SetWakeWord,
    Unmute,
    parse_command,
)
from coze_edge.core.status import (
    HA_EVENT_TYPES,
    SAY_BOX_MAX,
    TEXT_EVENTS,
    Controls,
    DeviceStatus,
    Diagnostics,
    LastTurn,
    LoginPrompt,
    State,
    StatusParts,
    Topics,
    UpdateInfo,
    discovery_messages,
    event_payload,
    login_payload,
    next_last_turn,
)
from coze_edge.core.wake import WAKE_WORDS

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
    "notify": {"command_topic"},
    "select": {"command_topic", "options"},
    "event": {"state_topic", "event_types"},
    "update": {"state_topic"},
}
COMMON = {"unique_id", "device", "availability_topic", "name"}


def documents(device_id: str = "42", **options: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """object_id -> (component, document)."""
    found = {}
    messages = discovery_messages(device_id, "Kitchen", TOPICS, "homeassistant", "1.2", **options)
    for topic, payload in messages:
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
        "wake_word": None,
        "turn_detection": "client_interrupt",
    }


def test_the_state_carries_the_chosen_wake_word_and_turn_detection() -> None:
    """What the selects show comes with the state, from the controls."""
    controls = Controls(wake_word="alexa", turn_detection="server_vad")

    status = StatusParts(State.IDLE, controls=controls).status()

    assert (status.wake_word, status.turn_detection) == ("alexa", "server_vad")


def test_topics_sit_under_the_prefix() -> None:
    """Every topic is the prefix plus the contract's name."""
    assert TOPICS.availability == "coze-edge/42/availability"
    assert TOPICS.state == "coze-edge/42/state"
    assert TOPICS.login == "coze-edge/42/login"
    assert TOPICS.event == "coze-edge/42/event"
    assert TOPICS.last_turn == "coze-edge/42/last_turn"
    assert TOPICS.diagnostics == "coze-edge/42/diagnostics"
    assert TOPICS.update == "coze-edge/42/update"
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
    """State, the last turn, activity events, login, diagnostics, mute, volume, wake word
    and turn detection, four buttons, say, announce, the update."""
    found = {key: component for key, (component, _) in documents().items()}

    assert found == {
        "state": "sensor",
        "transcript": "sensor",
        "reply": "sensor",
        "latency": "sensor",
        "activity": "event",
        "login_code": "sensor",
        "coze": "binary_sensor",
        "last_error": "sensor",
        "started": "sensor",
        "coze_reconnects": "sensor",
        "mqtt_reconnects": "sensor",
        "audio": "binary_sensor",
        "version": "sensor",
        "mute": "switch",
        "volume": "number",
        "wake_word": "select",
        "turn_detection": "select",
        "listen": "button",
        "cancel": "button",
        "new_conversation": "button",
        "restart": "button",
        "say": "text",
        "announce": "notify",
        "software": "update",
    }


def test_the_device_block_has_the_configured_link_and_area() -> None:
    """configuration_url and suggested_area go into the device block, when configured."""
    plain = documents()["state"][1]["device"]
    placed = documents(configuration_url="http://kitchen.local", suggested_area="Kitchen")
    device = placed["state"][1]["device"]

    assert "configuration_url" not in plain
    assert "suggested_area" not in plain
    assert device["configuration_url"] == "http://kitchen.local"
    assert device["suggested_area"] == "Kitchen"


def test_the_say_box_declares_the_real_limit_and_announce_takes_the_rest() -> None:
    """The text entity allows what both Home Assistant (255) and the daemon take; the notify
    entity sends any length to cmd/say, where the daemon's own limit applies."""
    found = documents()
    say, announce = found["say"][1], found["announce"][1]

    assert say["max"] == SAY_BOX_MAX == min(255, MAX_SAY_CHARS)
    assert announce["command_topic"] == say["command_topic"] == TOPICS.cmd("say")
    assert "command_template" not in announce  # the message itself is the payload
    long_text = "Word. " * (MAX_SAY_CHARS // 6)
    assert parse_command("say", long_text.encode()) == Say(long_text.strip())


def test_the_event_entity_fires_wake_word_turn_and_error() -> None:
    """The event entity reads the event topic and declares the three event types."""
    _, event = documents()["activity"]

    assert event["state_topic"] == TOPICS.event
    assert event["event_types"] == list(HA_EVENT_TYPES) == ["wake_word", "turn", "error"]
    assert all(kind in event["value_template"] for kind in HA_EVENT_TYPES)
    assert "event_type" in event["value_template"]


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
        if component == "sensor" and "options" in document:
            assert document["device_class"] == "enum"
            assert document["options"]
            assert "unit_of_measurement" not in document
            assert "state_class" not in document
        if component in {"sensor", "binary_sensor"}:
            assert document.get("entity_category") in {None, "diagnostic"}
        if component == "select":
            assert document["options"]
            assert document.get("entity_category") == "config"


def test_topics_bound_in_discovery_are_the_device_topics() -> None:
    """Entities read the state, event and login topics and write to cmd/ topics."""
    ours = {
        TOPICS.state,
        TOPICS.event,
        TOPICS.login,
        TOPICS.last_turn,
        TOPICS.diagnostics,
        TOPICS.update,
    }
    for _, document in documents().values():
        if "state_topic" in document:
            assert document["state_topic"] in ours
        if "command_topic" in document:
            assert TOPICS.command_name(document["command_topic"]) is not None


def test_templates_read_only_fields_the_payloads_have() -> None:
    """Every value_json field a template reads exists in what that topic carries."""
    turn = LastTurn(AT, "hi", "hello", {"first_audio_ms": 640}, finished=True)
    diagnostics = Diagnostics("1.2", AT, last_error={"message": "x", "at": "t"})
    fields = {
        TOPICS.state: set(json.loads(DeviceStatus(State.IDLE).to_json())),
        TOPICS.event: {"type"},
        TOPICS.login: {"user_code", "verification_url", "expires_at"},
        TOPICS.last_turn: set(json.loads(turn.to_json())),
        TOPICS.diagnostics: set(json.loads(diagnostics.to_json())) | {"message"},
        TOPICS.update: set(),
    }
    for key, (_, document) in documents().items():
        if "state_topic" not in document:
            continue
        templates = document.get("value_template", "") + document.get(
            "json_attributes_template", ""
        )
        used = set(re.findall(r"value_json\.(\w+)", templates)) - {"get"}
        used |= set(re.findall(r"value_json\.get\('(\w+)'", templates))
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
    assert send("announce", "hello") == Say("hello")
    assert send("restart", found["restart"][1]["payload_press"]) == RestartDaemon()
    words = [send("wake_word", option) for option in found["wake_word"][1]["options"]]
    assert words == [SetWakeWord(None), *map(SetWakeWord, WAKE_WORDS)]
    modes = [send("turn_detection", option) for option in found["turn_detection"][1]["options"]]
    assert modes == [SetTurnDetection("client_interrupt"), SetTurnDetection("server_vad")]
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
    wake_word = json.loads(messages["homeassistant/select/coze_edge_42/wake_word/config"])
    assert wake_word["options"] == list(WAKE_WORDS)  # no "off": any speech would be a turn


def test_without_update_checks_the_update_entity_is_withdrawn() -> None:
    """mqtt.check_updates off: the update entity's config is the empty message."""
    messages = dict(discovery_messages("42", "K", TOPICS, "homeassistant", "1", updates=False))

    assert messages.pop("homeassistant/update/coze_edge_42/software/config") == b""
    assert all(payload for payload in messages.values())


def test_without_publish_text_the_text_sensors_are_withdrawn() -> None:
    """publish_text off: no last transcript or last reply sensor; nothing else reads text."""
    messages = dict(
        discovery_messages("42", "Kitchen", TOPICS, "homeassistant", "1", publish_text=False)
    )

    assert messages.pop("homeassistant/sensor/coze_edge_42/transcript/config") == b""
    assert messages.pop("homeassistant/sensor/coze_edge_42/reply/config") == b""
    assert all(payload for payload in messages.values())
    templates = [json.loads(payload).get("value_template", "") for payload in messages.values()]
    assert not [t for t in templates if "transcript" in t or "reply" in t or ".text" in t]


def test_the_sensors_that_show_text_show_what_the_text_events_brought() -> None:
    """The two text sensors read the last turn's transcript and reply: what TEXT_EVENTS,
    which publish_text keeps off MQTT, put there."""
    shown = set()
    for _, document in documents().values():
        shown |= set(
            re.findall(r"value_json\.get\('(\w+)'\) or ''", document.get("value_template", ""))
        )

    assert shown == {"transcript", "reply"} == TEXT_EVENTS


# --- the documents behind the sensors ------------------------------------------------------------

AT = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)


def turn_of(*events: dict[str, Any], with_text: bool = True) -> LastTurn | None:
    """The last turn after ``events``, each a second after the one before."""
    turn = None
    for n, event in enumerate(events):
        turn = next_last_turn(turn, event, AT + timedelta(seconds=n), with_text=with_text) or turn
    return turn


def test_a_turn_gathers_its_transcript_reply_and_figures() -> None:
    """Transcript, reply, then the turn's figures make one document, dated by the last."""
    turn = turn_of(
        {"type": "transcript", "text": "what is the weather"},
        {"type": "reply", "text": "晴", "chat_id": "c1"},
        {"type": "turn", "chat_id": "c1", "first_audio_ms": 640, "total_ms": 2400},
    )

    assert turn is not None
    assert json.loads(turn.to_json()) == {
        "at": "2025-04-01T12:00:02Z",
        "transcript": "what is the weather",
        "reply": "晴",
        "chat_id": "c1",
        "first_audio_ms": 640,
        "total_ms": 2400,
    }


def test_the_next_transcript_starts_a_new_turn_and_replies_join() -> None:
    """After a finished turn a transcript starts afresh; two replies of one turn are joined."""
    turn = turn_of(
        {"type": "transcript", "text": "one"},
        {"type": "reply", "text": "a"},
        {"type": "turn", "first_audio_ms": 1},
        {"type": "transcript", "text": "two"},
        {"type": "reply", "text": "b"},
        {"type": "reply", "text": "c"},
    )

    assert turn == LastTurn(AT + timedelta(seconds=5), "two", "b\nc")


def test_a_reply_after_a_finished_turn_starts_a_new_one() -> None:
    """A reply with no transcript before it (a said text) is a turn of its own."""
    turn = turn_of(
        {"type": "transcript", "text": "one"}, {"type": "turn"}, {"type": "reply", "text": "x"}
    )

    assert turn == LastTurn(AT + timedelta(seconds=2), reply="x")


def test_without_text_a_turn_keeps_only_its_figures() -> None:
    """with_text off: transcript and reply change nothing, and are never kept."""
    turn = turn_of(
        {"type": "transcript", "text": "secret"},
        {"type": "reply", "text": "secret too"},
        {"type": "turn", "first_audio_ms": 640},
        with_text=False,
    )

    assert turn is not None
    assert "secret" not in turn.to_json()
    assert json.loads(turn.to_json()) == {"at": "2025-04-01T12:00:02Z", "first_audio_ms": 640}
    assert next_last_turn(None, {"type": "transcript", "text": "x"}, AT, with_text=False) is None


def test_other_events_change_no_turn() -> None:
    """Errors and wake words are not part of the last turn."""
    for kind in ("error", "wake_word"):
        assert next_last_turn(None, {"type": kind, "message": "x"}, AT, with_text=True) is None


def test_diagnostics_say_version_start_reconnects_audio_and_last_error() -> None:
    """Every field the diagnostic entities read, with the start in UTC."""
    diagnostics = Diagnostics(
        "1.2",
        AT,
        coze_reconnects=2,
        mqtt_reconnects=1,
        audio_problem="microphone lost",
        last_error={"message": "bad", "command": "volume", "at": "2025-04-01T12:01:00Z"},
    )

    assert json.loads(diagnostics.to_json()) == {
        "version": "1.2",
        "started_at": "2025-04-01T12:00:00Z",
        "coze_reconnects": 2,
        "mqtt_reconnects": 1,
        "audio_ok": False,
        "audio_problem": "microphone lost",
        "last_error": {"message": "bad", "command": "volume", "at": "2025-04-01T12:01:00Z"},
    }
    assert json.loads(Diagnostics("1.2", AT).to_json())["audio_ok"] is True


def test_the_update_document_says_how_to_update_and_leaves_out_an_unknown_latest() -> None:
    """Installed and latest version, the release page, and the how-to (Home Assistant cuts
    summaries at 255 characters, so it fits)."""
    known = json.loads(UpdateInfo("0.1.0", "0.2.0").to_json())
    unknown = json.loads(UpdateInfo("0.1.0").to_json())

    assert known["installed_version"] == "0.1.0"
    assert known["latest_version"] == "0.2.0"
    assert known["release_url"] == "https://pypi.org/project/coze-edge/0.2.0/"
    assert "pip install --upgrade coze-edge" in known["release_summary"]
    assert len(known["release_summary"]) <= 255
    assert "latest_version" not in unknown
    assert "release_url" not in unknown


# --- controls.json ------------------------------------------------------------------------------

CONFIGURED = Controls(volume=80, wake_word="alexa", turn_detection="client_interrupt")


def test_controls_come_back_as_they_were_saved() -> None:
    """Mute, volume, wake word and turn detection survive the round trip."""
    chosen = Controls(True, 35, "hey_jarvis", "server_vad")

    assert Controls.from_document(chosen.to_document(CONFIGURED), CONFIGURED) == chosen


def test_a_file_from_before_the_selects_keeps_its_mute_and_takes_the_config() -> None:
    """A controls.json with only mute and volume: those stand, the rest is the config's."""
    restored = Controls.from_document({"muted": True, "volume": 35}, CONFIGURED)

    assert restored == Controls(True, 35, "alexa", "client_interrupt")


def test_a_config_changed_since_the_choice_wins() -> None:
    """A choice made against another config value gives way to the config's new one;
    unchanged config values keep theirs."""
    chosen = Controls(True, 35, "hey_jarvis", "server_vad").to_document(CONFIGURED)
    edited = Controls(volume=80, wake_word="okay_nabu", turn_detection="client_interrupt")

    assert Controls.from_document(chosen, edited) == Controls(True, 35, "okay_nabu", "server_vad")


@pytest.mark.parametrize("field", ["wake_word", "turn_detection"])
def test_an_unknown_choice_gives_way_without_costing_the_mute(field: str) -> None:
    """A wake word no model exists for (or an odd turn detection) falls back to the config;
    the file is not thrown away, so the microphone stays muted."""
    document = Controls(True, 35, "hey_jarvis", "server_vad").to_document(CONFIGURED)
    document[field] = "hey_siri"

    restored = Controls.from_document(document, CONFIGURED)

    assert restored.muted
    assert getattr(restored, field) == getattr(CONFIGURED, field)


def test_refused_credentials_are_an_error_over_anything_but_a_lost_sound_card() -> None:
    """The token service refusing the device shows as ``error`` with ``auth:`` first, even
    while a turn runs on the token that is left; only a lost sound card says more."""
    refused = StatusParts(state=State.SPEAKING, auth_fault="secret refused")

    assert refused.status().state is State.ERROR
    assert refused.status().detail == "auth: secret refused"
    assert StatusParts(auth_fault="a", login_pending=True).status().detail == "auth: a"
    assert StatusParts(auth_fault="a", audio_fault="gone").status().detail == "audio: gone"
