"""
What the device tells the outside world over MQTT: its state, its events, a pending login,
and the Home Assistant discovery documents that describe it. Pure: values in, bytes out.

Topics (all under ``mqtt.topic_prefix``, see CONTRACT.md):

* ``availability``    retained ``online`` / ``offline`` (the Last Will is ``offline``)
* ``state``           retained JSON, :meth:`DeviceStatus.to_json`
* ``login``           retained JSON while a login is pending, an empty retained message after
* ``event``           one JSON object per event, ``{"type": ..., ...}``
* ``last_turn``       retained JSON, :meth:`LastTurn.to_json`: what the last turn heard, said
                      and took, so Home Assistant has it after its own restart
* ``diagnostics``     retained JSON, :meth:`Diagnostics.to_json`: version, uptime, reconnects,
                      audio health, the last error
* ``update``          retained JSON, :meth:`UpdateInfo.to_json`: installed and latest version
* ``cmd/<name>``      commands in (parsed by :mod:`coze_edge.core.commands`)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from coze_edge.core.commands import MAX_SAY_CHARS, TURN_DETECTIONS, WAKE_WORD_OFF
from coze_edge.core.wake import WAKE_WORDS

__all__ = [
    "AVAILABLE",
    "HA_EVENT_TYPES",
    "NOT_AVAILABLE",
    "SAY_BOX_MAX",
    "TEXT_EVENTS",
    "Controls",
    "DeviceStatus",
    "Diagnostics",
    "LastTurn",
    "LoginPrompt",
    "State",
    "StatusParts",
    "Topics",
    "UpdateInfo",
    "discovery_messages",
    "event_payload",
    "login_payload",
    "next_last_turn",
]

AVAILABLE: Final = b"online"
NOT_AVAILABLE: Final = b"offline"


class State(StrEnum):
    """What the assistant is doing; the values are the ``state`` field users see."""

    STARTING = "starting"
    UNAUTHORIZED = "unauthorized"
    CONNECTING = "connecting"
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class LoginPrompt:
    """A pending OAuth device-flow login: what the user must enter, where, and until when."""

    user_code: str
    verification_url: str
    expires_at: datetime
    """When the code stops working; UTC (a naive value is read as UTC)."""


@dataclass(frozen=True, slots=True)
class Controls:
    """
    The owner's settings that are state, not moments: kept across restarts and power cuts
    (``controls.json``), since a muted microphone must stay muted.

    The wake word and the turn detection start as the config says (``configured``); a
    choice made since (Home Assistant's selects, ``ctl``) is kept with the config values it
    was made against, and holds until the config's own value changes: whichever of the two
    was changed last wins.
    """

    muted: bool = False
    volume: int = 100
    wake_word: str | None = None
    """One of core.wake.WAKE_WORDS; None = no wake word (any speech opens a turn)."""
    turn_detection: str = TURN_DETECTIONS[0]
    """One of core.commands.TURN_DETECTIONS."""

    def to_document(self, configured: Controls | None = None) -> dict[str, Any]:
        configured = configured or Controls()
        return {
            "muted": self.muted,
            "volume": self.volume,
            "wake_word": self.wake_word,
            "turn_detection": self.turn_detection,
            "configured": {
                "wake_word": configured.wake_word,
                "turn_detection": configured.turn_detection,
            },
        }

    @classmethod
    def from_document(cls, data: Any, configured: Controls | None = None) -> Controls:
        """
        From the parsed ``controls.json``; ValueError when it is not one. A wake word or
        turn detection that is missing, unknown, or was chosen against other config values
        than ``configured``'s gives way to ``configured``'s (a file of an older version has
        neither; an unknown value never costs the mute).
        """
        configured = configured or Controls()
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        muted, volume = data.get("muted"), data.get("volume")
        if not isinstance(muted, bool):
            raise ValueError("'muted' must be true or false")
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise ValueError("'volume' must be an integer 0..100")
        against = data.get("configured")
        against = against if isinstance(against, dict) else {}

        def kept(key: str, allowed: tuple[str | None, ...]) -> Any:
            ours = getattr(configured, key)
            if key not in data or key not in against or against[key] != ours:
                return ours
            return data[key] if data[key] in allowed else ours

        return cls(
            muted,
            volume,
            kept("wake_word", (*WAKE_WORDS, None)),
            kept("turn_detection", TURN_DETECTIONS),
        )


@dataclass(frozen=True, slots=True)
class StatusParts:
    """Everything the published state is made of, each part owned by one component."""

    state: State = State.STARTING
    """The conversation's own state (the session's)."""
    controls: Controls = Controls()
    login_pending: bool = False
    """A device login waits for the owner (the token keeper)."""
    audio_fault: str | None = None
    """Why the sound devices are not working (the conversation service's last failure)."""
    auth_fault: str | None = None
    """Why the device's credentials are refused where only a person can fix it (the token
    service refused its secret): it will lose Coze when its current token expires."""
    coze_fault: str | None = None
    """Why Coze refuses this bot or account (the session's ``fault``)."""
    connect_problem: str | None = None
    """Why Coze cannot be reached right now (the connection's or login's last failure)."""

    def status(self) -> DeviceStatus:
        """The one derivation of :class:`DeviceStatus`; the most pressing problem wins."""
        connected = self.state not in (State.STARTING, State.CONNECTING)
        state, detail = self.state, None
        if self.audio_fault is not None:
            state, detail = State.ERROR, f"audio: {self.audio_fault}"
        elif self.auth_fault is not None:
            state, detail = State.ERROR, f"auth: {self.auth_fault}"
        elif self.login_pending:
            state, detail = State.UNAUTHORIZED, "log in: `coze-edge ctl status` shows the code"
        elif self.coze_fault is not None:
            state, detail = State.ERROR, f"coze: {self.coze_fault}"
            connected = False
        elif self.state in (State.STARTING, State.CONNECTING):
            detail = self.connect_problem
        return DeviceStatus(
            state=state,
            muted=self.controls.muted,
            volume=self.controls.volume,
            coze_connected=connected,
            detail=detail,
            wake_word=self.controls.wake_word,
            turn_detection=self.controls.turn_detection,
        )


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """The device's state as published (retained) on the ``state`` topic."""

    state: State
    muted: bool = False
    volume: int = 100
    coze_connected: bool = False
    detail: str | None = None
    wake_word: str | None = None
    turn_detection: str = TURN_DETECTIONS[0]

    def to_json(self) -> str:
        return json.dumps(
            {
                "state": self.state.value,
                "muted": self.muted,
                "volume": self.volume,
                "coze_connected": self.coze_connected,
                "detail": self.detail,
                "wake_word": self.wake_word,
                "turn_detection": self.turn_detection,
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """
    How the device is doing, for Home Assistant's diagnostic entities (the retained
    ``diagnostics`` topic). Each field has one owner, who replaces only it.
    """

    version: str
    started_at: datetime
    """When the daemon started (Home Assistant shows the uptime from it)."""
    coze_reconnects: int = 0
    """Times the Coze session was lost or renewed since start (the status board)."""
    mqtt_reconnects: int = 0
    """Connections to the broker since start, less the first (the publisher)."""
    audio_problem: str | None = None
    """Why the sound devices do not work; None = they do (the status board)."""
    last_error: Mapping[str, Any] | None = None
    """The last ``error`` event, with ``at`` (the publisher); None = none since start."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "started_at": iso_utc(self.started_at),
                "coze_reconnects": self.coze_reconnects,
                "mqtt_reconnects": self.mqtt_reconnects,
                "audio_ok": self.audio_problem is None,
                "audio_problem": self.audio_problem,
                "last_error": dict(self.last_error) if self.last_error is not None else None,
            },
            ensure_ascii=False,
            default=str,
        )


@dataclass(frozen=True, slots=True)
class LastTurn:
    """
    The last turn as the retained ``last_turn`` topic has it: when, what the user said and
    the bot answered (only with ``mqtt.publish_text``), and the ``turn`` event's figures.
    Built from the events by :func:`next_last_turn`.
    """

    at: datetime
    """When it last changed."""
    transcript: str | None = None
    reply: str | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)
    """The ``turn`` event's fields: chat_id, speech_ms, total_ms, first_audio_ms, ..."""
    finished: bool = False
    """The ``turn`` event came: the next transcript or reply starts another."""

    def to_json(self) -> str:
        document: dict[str, Any] = {"at": iso_utc(self.at)}
        if self.transcript is not None:
            document["transcript"] = self.transcript
        if self.reply is not None:
            document["reply"] = self.reply
        return json.dumps({**document, **self.figures}, ensure_ascii=False, default=str)


def next_last_turn(
    current: LastTurn | None, event: Mapping[str, Any], now: datetime, *, with_text: bool
) -> LastTurn | None:
    """
    The last turn after ``event``; None when the event changes nothing (other kinds, and
    the transcript and reply without ``with_text``: they are never even kept). A transcript
    starts a turn; a reply joins the open one (several are joined by line breaks); a
    ``turn`` event brings the figures and closes it.
    """
    kind = event.get("type")
    open_turn = current if current is not None and not current.finished else None
    if kind == "transcript" and with_text:
        return LastTurn(at=now, transcript=str(event.get("text", "")))
    if kind == "reply" and with_text:
        text = str(event.get("text", ""))
        if open_turn is None:
            return LastTurn(at=now, reply=text)
        joined = text if open_turn.reply is None else f"{open_turn.reply}\n{text}"
        return replace(open_turn, at=now, reply=joined)
    if kind == "turn":
        figures = {key: value for key, value in event.items() if key != "type"}
        base = open_turn or LastTurn(at=now)
        return replace(base, at=now, figures=figures, finished=True)
    return None


RELEASE_PAGE: Final = "https://pypi.org/project/coze-edge/{version}/"
HOW_TO_UPDATE: Final = (
    "Update it where it is installed: sudo scripts/install from the new release's source, "
    "or sudo /opt/coze-edge/venv/bin/pip install --upgrade coze-edge; then sudo systemctl "
    "restart coze-edge. coze-edge does not install updates itself."
)


@dataclass(frozen=True, slots=True)
class UpdateInfo:
    """What the retained ``update`` topic says: the installed release and PyPI's newest."""

    installed: str
    latest: str | None = None
    """None: not known yet (never checked, or no answer since the device started)."""

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "installed_version": self.installed,
            "title": "coze-edge",
            "release_summary": HOW_TO_UPDATE,
        }
        if self.latest is not None:
            document["latest_version"] = self.latest
            document["release_url"] = RELEASE_PAGE.format(version=self.latest)
        return json.dumps(document, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Topics:
    """The MQTT topics of one device, under ``prefix`` (``mqtt.topic_prefix``)."""

    prefix: str

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def login(self) -> str:
        return f"{self.prefix}/login"

    @property
    def event(self) -> str:
        return f"{self.prefix}/event"

    @property
    def last_turn(self) -> str:
        return f"{self.prefix}/last_turn"

    @property
    def diagnostics(self) -> str:
        return f"{self.prefix}/diagnostics"

    @property
    def update(self) -> str:
        return f"{self.prefix}/update"

    def cmd(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}"

    @property
    def cmd_wildcard(self) -> str:
        """The subscription that receives every command."""
        return f"{self.prefix}/cmd/+"

    def command_name(self, topic: str) -> str | None:
        """The command a message on ``topic`` carries, or None if it is not a command topic."""
        head = f"{self.prefix}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None


TEXT_EVENTS: Final = frozenset({"transcript", "reply"})
"""The events that carry what the user said or the bot answered (``mqtt.publish_text``)."""


def event_payload(type: str, /, **fields: Any) -> bytes:
    """One ``event`` message: ``{"type": type, **fields}``; values JSON can't hold become text."""
    return json.dumps({"type": type, **fields}, ensure_ascii=False, default=str).encode()


def login_payload(prompt: LoginPrompt | None) -> bytes:
    """The retained ``login`` message; empty (which clears the retained one) when None."""
    if prompt is None:
        return b""
    return json.dumps(
        {
            "user_code": prompt.user_code,
            "verification_url": prompt.verification_url,
            "expires_at": iso_utc(prompt.expires_at),
        },
        ensure_ascii=False,
    ).encode()


def iso_utc(moment: datetime) -> str:
    """``2025-01-31T08:00:00Z``: ISO 8601 in UTC, whole seconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Home Assistant MQTT discovery -------------------------------------------------------------
#
# One config message per entity at <discovery_prefix>/<component>/<node_id>/<object_id>/config
# (Home Assistant's discovery.py matches node_id and object_id against [a-zA-Z0-9_-]+). Each
# document carries the keys the component's schema requires (sensor, binary_sensor, event:
# state_topic; switch, number, text, button, notify, select: command_topic; event also
# event_types, select options), a unique_id (without one an entity is not tied to its
# device) and the device block, whose identifiers make every entity one device. An empty
# retained config message removes an entity (and the one a broker may still hold).

MODEL: Final = "coze-edge voice assistant"
MANUFACTURER: Final = "coze-edge"
TEXT_STATE_MAX: Final = 255
"""Home Assistant refuses states longer than this (MAX_LENGTH_STATE_STATE), and an MQTT
text entity whose ``max`` is above it (mqtt/text.py: "max text length must be <= 255")."""

SAY_BOX_MAX: Final = min(MAX_SAY_CHARS, TEXT_STATE_MAX)
"""The say box's real limit: the daemon takes MAX_SAY_CHARS, Home Assistant's text entity
no more than TEXT_STATE_MAX. Longer text goes through the notify entity, which has no limit
of its own (``notify.send_message`` -> ``cmd/say``)."""

HA_EVENT_TYPES: Final = ("wake_word", "turn", "error")
"""The events Home Assistant's event entity fires (automation triggers); the others (the
transcript and the reply) have their sensors."""

_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")

# Home Assistant's event entity wants JSON with an `event_type` among `event_types`; ours
# carry `type`. Other events render empty, which the entity ignores.
_EVENT_TEMPLATE: Final = (
    f"{{% if value_json.type in {list(HA_EVENT_TYPES)!r} %}}"
    "{{ dict(value_json, event_type=value_json.type) | tojson }}{% endif %}"
)


def _turn_text(key: str) -> str:
    # Cut to what a Home Assistant state may hold; a turn without it (a reply with no
    # transcript before it) shows empty.
    return f"{{{{ (value_json.get('{key}') or '')[:{TEXT_STATE_MAX}] }}}}"


def discovery_messages(
    device_id: str,
    device_name: str,
    topics: Topics,
    discovery_prefix: str,
    sw_version: str,
    *,
    remote_listen: bool = True,
    publish_text: bool = True,
    updates: bool = True,
    configuration_url: str | None = None,
    suggested_area: str | None = None,
) -> list[tuple[str, bytes]]:
    """
    The retained Home Assistant discovery messages (topic, payload) of one device. Without
    ``remote_listen`` there is no listen button (and the wake word select cannot turn the
    wake word off), without ``publish_text`` no last transcript and last reply sensors,
    without ``updates`` no update entity: their messages are empty, which removes what an
    earlier run with them announced.
    """
    node = "coze_edge_" + _UNSAFE_ID.sub("_", device_id)
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": device_name,
        "model": MODEL,
        "manufacturer": MANUFACTURER,
        "sw_version": sw_version,
    }
    if configuration_url is not None:
        device["configuration_url"] = configuration_url
    if suggested_area is not None:
        device["suggested_area"] = suggested_area
    common: dict[str, Any] = {
        "device": device,
        "origin": {"name": "coze-edge", "sw_version": sw_version},
        "availability_topic": topics.availability,
        "payload_available": AVAILABLE.decode(),
        "payload_not_available": NOT_AVAILABLE.decode(),
        "qos": 1,
    }
    diagnostic = {"entity_category": "diagnostic", "state_topic": topics.diagnostics}
    wake_words = [*([WAKE_WORD_OFF] if remote_listen else []), *WAKE_WORDS]
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (
            "sensor",
            "state",
            {
                "name": "State",
                "icon": "mdi:robot-outline",
                "state_topic": topics.state,
                "value_template": "{{ value_json.state }}",
                "device_class": "enum",
                "options": [state.value for state in State],
                "json_attributes_topic": topics.state,
            },
        ),
        (
            "sensor",
            "transcript",
            {
                "name": "Last transcript",
                "icon": "mdi:account-voice",
                "state_topic": topics.last_turn,
                "value_template": _turn_text("transcript"),
            },
        ),
        (
            "sensor",
            "reply",
            {
                "name": "Last reply",
                "icon": "mdi:message-reply-text-outline",
                "state_topic": topics.last_turn,
                "value_template": _turn_text("reply"),
            },
        ),
        (
            "sensor",
            "latency",
            {
                "name": "Last turn latency",
                "icon": "mdi:timer-outline",
                "state_topic": topics.last_turn,
                # From the end of the user's speech to the first reply audio. Numeric sensors
                # ignore an empty rendering: a turn still under way leaves the value alone.
                "value_template": "{{ value_json.get('first_audio_ms', '') }}",
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
            },
        ),
        (
            "event",
            "activity",
            {
                "name": "Activity",
                "icon": "mdi:bell-ring-outline",
                "state_topic": topics.event,
                "event_types": list(HA_EVENT_TYPES),
                "value_template": _EVENT_TEMPLATE,
            },
        ),
        (
            "sensor",
            "login_code",
            {
                "name": "Login code",
                "icon": "mdi:key-outline",
                "entity_category": "diagnostic",
                "state_topic": topics.login,
                # An empty message (login done) renders "None", which Home Assistant shows
                # as unknown.
                "value_template": "{{ value_json.user_code if value else 'None' }}",
                "json_attributes_topic": topics.login,
                "json_attributes_template": "{{ value if value else '{}' }}",
            },
        ),
        (
            "binary_sensor",
            "coze",
            {
                "name": "Coze connection",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": topics.state,
                "value_template": "{{ 'ON' if value_json.coze_connected else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        ),
        (
            "sensor",
            "last_error",
            {
                **diagnostic,
                "name": "Last error",
                "icon": "mdi:alert-circle-outline",
                "value_template": (
                    "{{ (value_json.last_error.message or '')"
                    f"[:{TEXT_STATE_MAX}] if value_json.last_error else 'None' }}}}"
                ),
                "json_attributes_topic": topics.diagnostics,
                "json_attributes_template": "{{ (value_json.last_error or {}) | tojson }}",
            },
        ),
        (
            "sensor",
            "started",
            {
                **diagnostic,
                "name": "Started",
                "device_class": "timestamp",
                "value_template": "{{ value_json.started_at }}",
            },
        ),
        (
            "sensor",
            "coze_reconnects",
            {
                **diagnostic,
                "name": "Coze reconnects",
                "icon": "mdi:cloud-refresh-outline",
                "value_template": "{{ value_json.coze_reconnects }}",
                "state_class": "total_increasing",
            },
        ),
        (
            "sensor",
            "mqtt_reconnects",
            {
                **diagnostic,
                "name": "MQTT reconnects",
                "icon": "mdi:lan-pending",
                "value_template": "{{ value_json.mqtt_reconnects }}",
                "state_class": "total_increasing",
            },
        ),
        (
            "binary_sensor",
            "audio",
            {
                **diagnostic,
                "name": "Audio",
                "device_class": "problem",
                "value_template": "{{ 'OFF' if value_json.audio_ok else 'ON' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "json_attributes_topic": topics.diagnostics,
                "json_attributes_template": (
                    "{{ {'problem': value_json.audio_problem} | tojson }}"
                ),
            },
        ),
        (
            "sensor",
            "version",
            {
                **diagnostic,
                "name": "Version",
                "icon": "mdi:tag-outline",
                "value_template": "{{ value_json.version }}",
            },
        ),
        (
            "switch",
            "mute",
            {
                "name": "Microphone mute",
                "icon": "mdi:microphone-off",
                "state_topic": topics.state,
                "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
                "command_topic": topics.cmd("muted"),
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        ),
        (
            "number",
            "volume",
            {
                "name": "Volume",
                "icon": "mdi:volume-high",
                "state_topic": topics.state,
                "value_template": "{{ value_json.volume }}",
                "command_topic": topics.cmd("volume"),
                "min": 0,
                "max": 100,
                "step": 1,
                "mode": "slider",
                "unit_of_measurement": "%",
            },
        ),
        (
            "select",
            "wake_word",
            {
                "name": "Wake word",
                "icon": "mdi:account-voice",
                "entity_category": "config",
                "state_topic": topics.state,
                "value_template": f"{{{{ value_json.wake_word or '{WAKE_WORD_OFF}' }}}}",
                "command_topic": topics.cmd("wake_word"),
                "options": wake_words,
            },
        ),
        (
            "select",
            "turn_detection",
            {
                "name": "Turn detection",
                "icon": "mdi:account-tie-voice-outline",
                "entity_category": "config",
                "state_topic": topics.state,
                "value_template": "{{ value_json.turn_detection }}",
                "command_topic": topics.cmd("turn_detection"),
                "options": list(TURN_DETECTIONS),
            },
        ),
        _button("listen", "Listen", "mdi:microphone", topics),
        _button("cancel", "Cancel", "mdi:stop-circle-outline", topics),
        _button("new_conversation", "New conversation", "mdi:chat-plus-outline", topics),
        (
            "button",
            "restart",
            {
                "name": "Restart",
                "device_class": "restart",
                "entity_category": "config",
                "command_topic": topics.cmd("restart"),
                "payload_press": "PRESS",
            },
        ),
        (
            "text",
            "say",
            {
                "name": "Say",
                "icon": "mdi:bullhorn-outline",
                "command_topic": topics.cmd("say"),
                "min": 1,
                "max": SAY_BOX_MAX,
                "mode": "text",
            },
        ),
        (
            "notify",
            "announce",
            {
                # notify.send_message's message becomes the payload; up to MAX_SAY_CHARS.
                "name": "Announce",
                "icon": "mdi:bullhorn",
                "command_topic": topics.cmd("say"),
            },
        ),
        (
            "update",
            "software",
            {
                "name": "Software",
                "entity_category": "config",
                "state_topic": topics.update,
            },
        ),
    ]
    withdrawn = set()
    if not remote_listen:
        withdrawn.add("listen")
    if not publish_text:
        withdrawn |= {"transcript", "reply"}
    if not updates:
        withdrawn.add("software")
    messages: list[tuple[str, bytes]] = []
    for component, key, fields in entities:
        topic = f"{discovery_prefix}/{component}/{node}/{key}/config"
        if key in withdrawn:
            messages.append((topic, b""))
            continue
        document = {**fields, "unique_id": f"{node}_{key}", **common}
        messages.append((topic, json.dumps(document, ensure_ascii=False).encode()))
    return messages


def _button(command: str, name: str, icon: str, topics: Topics) -> tuple[str, str, dict[str, Any]]:
    return (
        "button",
        command,
        {
            "name": name,
            "icon": icon,
            "command_topic": topics.cmd(command),
            "payload_press": "PRESS",
        },
    )
