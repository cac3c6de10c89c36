"""
Device-side plugins (Coze's 端插件), the pure parts: what a tool's output looks like, how
long it may be, the config's little tables, and which Home Assistant entities and services
the bot may touch. No I/O.

Every tool call is answered with a string (Coze's ``tool_outputs[].output``). A failure is
JSON with an ``error`` the bot can put in words (:func:`error_output`): the user hears
"the garage door is not something I may open", not silence.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

TOOL_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A tool name as Coze's plugin editor takes it (and as this device accepts one)."""

ENTITY_ID: Final = re.compile(r"[a-z0-9_]+\.[a-z0-9_]+")
"""A Home Assistant entity id, ``domain.object_id`` (lower case, digits, underscores)."""

SERVICE: Final = re.compile(r"[a-z0-9_]+")
"""A Home Assistant service name (``turn_on``), or a domain (``light``)."""

CUT_MARK: Final = " [cut]"

BUILTIN_TOOLS: Final = ("get_volume", "set_volume", "mute", "stop", "device_status", "local_time")
"""The built-in tools' names (``tools.builtin``)."""
HOME_ASSISTANT_TOOLS: Final = ("ha_list_entities", "ha_get_state", "ha_call_service")
"""The Home Assistant tools' names (``homeassistant.url``)."""
RESERVED_TOOLS: Final = frozenset(BUILTIN_TOOLS + HOME_ASSISTANT_TOOLS)
"""Names a command tool may not take."""


class ToolError(Exception):
    """A tool call that cannot be carried out. The message is for the bot, which says it to
    the user: plain words, no traceback, no secret; ``details`` go in the error output
    beside it (what a failed program printed, say)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details

    def output(self) -> str:
        """The error output for this failure."""
        return error_output(str(self), **self.details)


def error_output(message: str, **details: Any) -> str:
    """The output of a failed call: ``{"error": message, ...details}`` as JSON."""
    return json.dumps({"error": message, **details}, ensure_ascii=False)


def as_output(result: Any) -> str:
    """A tool's result as the string Coze takes: text as it is, anything else as JSON."""
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False)


def bounded(output: str, limit: int) -> str:
    """``output`` if it fits in ``limit`` bytes of UTF-8; else its start, cut on a character
    boundary, with :data:`CUT_MARK` after it, the whole within ``limit``."""
    encoded = output.encode()
    if len(encoded) <= limit:
        return output
    room = max(0, limit - len(CUT_MARK.encode()))
    return encoded[:room].decode(errors="ignore") + CUT_MARK


def arguments(text: str) -> dict[str, Any]:
    """A call's ``arguments`` (a JSON object as a string; empty means none)."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ToolError("the arguments are not JSON") from None
    if not isinstance(value, dict):
        raise ToolError("the arguments must be a JSON object")
    return value


# --------------------------------------------------------------------------- config values


def word_list(text: str | None) -> list[str]:
    """The words of a config value: separated by spaces, commas or lines; ``#`` comments."""
    words: list[str] = []
    for line in (text or "").splitlines():
        words += line.split("#", 1)[0].replace(",", " ").split()
    return words


def command_argv(value: Any) -> tuple[str, ...]:
    """A command tool's program and arguments from the config: a list of strings as it is,
    or one string split as a shell would (quotes keep spaces; nothing is expanded, no shell
    runs it). ValueError saying what is wrong otherwise."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ValueError(f"cannot split into arguments: {exc}") from None
    if isinstance(value, list) and all(isinstance(word, str) for word in value):
        return tuple(value)
    raise ValueError("must be a list of the program and its arguments, or one string")


def _service_names(value: Any) -> list[str]:
    if isinstance(value, str):
        return word_list(value)
    if isinstance(value, list) and all(isinstance(word, str) for word in value):
        return list(value)
    raise ValueError("must be a list of service names")


# --------------------------------------------------------------------------- Home Assistant


@dataclass(frozen=True, slots=True)
class Exposure:
    """
    What the bot may touch in Home Assistant, after HA's own "exposed entities": only the
    listed entities, read (state) always, and only the services granted to the entity
    itself or to its whole domain. Everything else is refused with a reason the bot can say.
    """

    entities: tuple[str, ...] = ()
    """The exposed entity ids, in the config's order."""
    services: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Granted services by entity id or by domain (``light``: every exposed light)."""

    @classmethod
    def parse(cls, entities: str | None, services: Mapping[str, Any]) -> Exposure:
        """From ``homeassistant.entities`` (ids separated by spaces, commas or lines) and
        ``homeassistant.services`` (a domain or entity id -> its services, a list or one
        string); ValueError with every problem, one per line, each ``key: what``."""
        problems: list[str] = []
        listed: list[str] = []
        for word in word_list(entities):
            if not ENTITY_ID.fullmatch(word):
                problems.append(f"entities: {word!r} is not an entity id (domain.name)")
            elif word not in listed:
                listed.append(word)
        granted: dict[str, frozenset[str]] = {}
        for key, value in services.items():
            where = f"services.{key}"
            if not (ENTITY_ID.fullmatch(key) or SERVICE.fullmatch(key)):
                problems.append(f"{where}: not an entity id or a domain")
                continue
            if "." in key and key not in listed:
                problems.append(f"{where}: not in entities")
            try:
                names = _service_names(value)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            bad = [name for name in names if not SERVICE.fullmatch(name)]
            if bad:
                problems.append(f"{where}: {', '.join(map(repr, bad))} not a service name")
            if not names:
                problems.append(f"{where}: no services")
            granted[key] = frozenset(names)
        if problems:
            raise ValueError("\n".join(problems))
        return cls(tuple(listed), granted)

    def services_of(self, entity_id: str) -> frozenset[str]:
        """The services the bot may call on ``entity_id`` (none if it is not exposed)."""
        if entity_id not in self.entities:
            return frozenset()
        domain = entity_id.partition(".")[0]
        empty: frozenset[str] = frozenset()
        return self.services.get(entity_id, empty) | self.services.get(domain, empty)

    def refuse_read(self, entity_id: str) -> str | None:
        """Why the bot may not read ``entity_id``'s state; None: it may."""
        if not ENTITY_ID.fullmatch(entity_id):
            return f"{entity_id!r} is not an entity id (domain.name, such as light.kitchen)"
        if entity_id not in self.entities:
            return f"{entity_id} is not exposed to this assistant"
        return None

    def refuse_call(self, entity_id: str, service: str) -> str | None:
        """Why the bot may not call ``service`` on ``entity_id``; None: it may."""
        refused = self.refuse_read(entity_id)
        if refused is not None:
            return refused
        if not SERVICE.fullmatch(service):
            return f"{service!r} is not a service name (such as turn_on)"
        allowed = self.services_of(entity_id)
        if not allowed:
            return f"{entity_id} may be read but not controlled by this assistant"
        if service not in allowed:
            return f"{service} is not allowed on {entity_id}; allowed: {', '.join(sorted(allowed))}"
        return None
