"""
What the device tells the outside world over MQTT: its state, its events, a pending login,
and the Home Assistant discovery documents that describe it. Pure: values in, bytes out.

Topics (all under ``mqtt.topic_prefix``, see CONTRACT.md):

* ``availability``    retained ``online`` / ``offline`` (the Last Will is ``offline``)
* ``state``           retained JSON, :meth:`DeviceStatus.to_json`
* ``login``           retained JSON while a login is pending, an empty retained message after
* ``event``           one JSON object per event, ``{"type": ..., ...}``
* ``cmd/<name>``      commands in (parsed by :mod:`coze_edge.core.commands`)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "AVAILABLE",
    "NOT_AVAILABLE",
    "TEXT_EVENTS",
    "Controls",
    "DeviceStatus",
    "LoginPrompt",
    "State",
    "StatusParts",
    "Topics",
    "discovery_messages",
    "event_payload",
    "login_payload",
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
    """The owner's settings that are state, not moments: kept across restarts and power
    cuts (``controls.json``), since a muted microphone must stay muted."""

    muted: bool = False
    volume: int = 100

    def to_document(self) -> dict[str, Any]:
        return {"muted": self.muted, "volume": self.volume}

    @classmethod
    def from_document(cls, data: Any) -> Controls:
        """From the parsed ``controls.json``; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        muted, volume = data.get("muted"), data.get("volume")
        if not isinstance(muted, bool):
            raise ValueError("'muted' must be true or false")
        if isinstance(volume, bool) or not isinstance(volume, int) or not 0 <= volume <= 100:
            raise ValueError("'volume' must be an integer 0..100")
        return cls(muted, volume)


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
        )


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """The device's state as published (retained) on the ``state`` topic."""

    state: State
    muted: bool = False
    volume: int = 100
    coze_connected: bool = False
    detail: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "state": self.state.value,
                "muted": self.muted,
                "volume": self.volume,
                "coze_connected": self.coze_connected,
                "detail": self.detail,
            },
            ensure_ascii=False,
        )


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
# document carries the keys the component's schema requires (sensor, binary_sensor: state_topic;
# switch, number, text, button: command_topic), a unique_id (without one an entity is not tied to
# its device) and the device block, whose identifiers make every entity one device. An empty
# retained config message removes an entity (and the one a broker may still hold).

MODEL: Final = "coze-edge voice assistant"
MANUFACTURER: Final = "coze-edge"
TEXT_STATE_MAX: Final = 255
"""Home Assistant refuses states longer than this (MAX_LENGTH_STATE_STATE)."""

_UNSAFE_ID = re.compile(r"[^a-zA-Z0-9_-]")


def _event_text(kind: str) -> str:
    # The event topic carries every event type; keep the entity's state (`this.state`) for
    # the others, and cut the text to what a Home Assistant state may hold.
    return (
        f"{{{{ value_json.text[:{TEXT_STATE_MAX}] if value_json.type == '{kind}'"
        " and value_json.text is defined else this.state }}"
    )


def discovery_messages(
    device_id: str,
    device_name: str,
    topics: Topics,
    discovery_prefix: str,
    sw_version: str,
    *,
    remote_listen: bool = True,
    publish_text: bool = True,
) -> list[tuple[str, bytes]]:
    """
    The retained Home Assistant discovery messages (topic, payload) of one device. Without
    ``remote_listen`` there is no listen button, without ``publish_text`` no last transcript
    and last reply sensors: their messages are empty, which removes what an earlier run with
    them announced.
    """
    node = "coze_edge_" + _UNSAFE_ID.sub("_", device_id)
    device = {
        "identifiers": [node],
        "name": device_name,
        "model": MODEL,
        "manufacturer": MANUFACTURER,
        "sw_version": sw_version,
    }
    common: dict[str, Any] = {
        "device": device,
        "origin": {"name": "coze-edge", "sw_version": sw_version},
        "availability_topic": topics.availability,
        "payload_available": AVAILABLE.decode(),
        "payload_not_available": NOT_AVAILABLE.decode(),
        "qos": 1,
    }
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
                "state_topic": topics.event,
                "value_template": _event_text("transcript"),
            },
        ),
        (
            "sensor",
            "reply",
            {
                "name": "Last reply",
                "icon": "mdi:message-reply-text-outline",
                "state_topic": topics.event,
                "value_template": _event_text("reply"),
            },
        ),
        (
            "sensor",
            "latency",
            {
                "name": "Last turn latency",
                "icon": "mdi:timer-outline",
                "state_topic": topics.event,
                # From the end of the user's speech to the first reply audio. Numeric sensors
                # ignore an empty rendering, so other events leave the value alone.
                "value_template": (
                    "{{ value_json.first_audio_ms if value_json.type == 'turn'"
                    " and value_json.first_audio_ms is defined else '' }}"
                ),
                "unit_of_measurement": "ms",
                "device_class": "duration",
                "state_class": "measurement",
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
        _button("listen", "Listen", "mdi:microphone", topics),
        _button("cancel", "Cancel", "mdi:stop-circle-outline", topics),
        _button("new_conversation", "New conversation", "mdi:chat-plus-outline", topics),
        (
            "text",
            "say",
            {
                "name": "Say",
                "icon": "mdi:bullhorn-outline",
                "command_topic": topics.cmd("say"),
                "min": 1,
                "max": TEXT_STATE_MAX,
                "mode": "text",
            },
        ),
    ]
    withdrawn = set()
    if not remote_listen:
        withdrawn.add("listen")
    if not publish_text:
        withdrawn |= {"transcript", "reply"}
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
