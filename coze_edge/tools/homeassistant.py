"""
Home Assistant tools (``homeassistant.url``): the bot reads an entity's state and calls a
service on an entity through Home Assistant's REST API, with a long-lived access token, and
only where the config exposes it (:class:`~coze_edge.core.tools.Exposure`, after Home
Assistant's own "exposed entities"). A refusal is decided here, before any request, and
comes back as an error output the bot can say.

| tool               | arguments                               | request                         |
| ------------------ | --------------------------------------- | ------------------------------- |
| `ha_list_entities` | none                                    | none: the exposed entities      |
| `ha_get_state`     | `entity_id`                             | ``GET /api/states/<entity_id>`` |
| `ha_call_service`  | `entity_id`, `service`, optional `data` | ``POST /api/services/<d>/<s>``  |

The service is called in the entity's own domain, on that one entity: ``data`` may carry
the service's own fields (``brightness_pct``), never another target (``entity_id``,
``area_id``, ``device_id``, ...). The token goes only to ``homeassistant.url``: a redirect
is refused, not followed; answers are read up to a bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path
from typing import Any, Final

import httpx

from coze_edge.core.tools import HOME_ASSISTANT_TOOLS, SERVICE, Exposure, ToolError
from coze_edge.tools import Tool

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES: Final = 256 * 1024
"""The longest answer read from Home Assistant."""
MAX_DATA_FIELDS: Final = 16
TARGET_KEYS: Final = frozenset(
    {"entity_id", "device_id", "area_id", "floor_id", "label_id", "target"}
)
"""Service data keys that would aim the call at something else than the exposed entity."""
MAX_ATTRIBUTE_CHARS: Final = 200
"""An attribute's text longer than this is left out of a state (pictures, long lists)."""

NAMES: Final = HOME_ASSISTANT_TOOLS


class HomeAssistant:
    """Home Assistant's REST API at ``url`` (``http(s)://host:8123``), as ``token``."""

    def __init__(
        self,
        url: str,
        token: str,
        exposure: Exposure,
        *,
        timeout_s: float = 5.0,
        ca_file: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.exposure = exposure
        self._timeout = httpx.Timeout(timeout_s)
        self._ca_file = ca_file
        self._tls: ssl.SSLContext | None = None

    async def _verify(self) -> ssl.SSLContext:
        """The TLS settings, made at the first request (in a thread: loading the CA bundle
        takes a while on a small board, and the loop plays audio) and kept."""
        if self._tls is None:
            cafile = str(self._ca_file) if self._ca_file else None
            try:
                self._tls = await asyncio.to_thread(ssl.create_default_context, cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                log.warning("! cannot load the CAs for Home Assistant (%s): %s", cafile, exc)
                raise ToolError("the device cannot check Home Assistant's certificate") from None
        return self._tls

    # ------------------------------------------------------------------ the REST API

    async def _request(self, method: str, path: str, body: Any = None, *, about: str) -> Any:
        """The JSON answer to one request about the entity ``about``; ToolError with words
        for the bot otherwise."""
        verify = await self._verify()
        async with httpx.AsyncClient(
            base_url=self.url,
            headers=self._headers,
            timeout=self._timeout,
            verify=verify,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the token goes to url only
        ) as http:
            try:
                async with http.stream(method, path, json=body) as answer:
                    text = await self._read(answer, about)
            except httpx.TimeoutException:
                raise ToolError("Home Assistant did not answer in time") from None
            except httpx.HTTPError as exc:
                log.warning("! Home Assistant at %s: %s", self.url, exc)
                raise ToolError("Home Assistant cannot be reached") from None
        return _json(text)

    async def _read(self, answer: httpx.Response, about: str) -> str:
        status = answer.status_code
        if answer.is_redirect:
            where = answer.headers.get("location", "?")
            log.warning(
                "! Home Assistant redirected to %s: not followed (homeassistant.url)", where
            )
            raise ToolError("Home Assistant answered with a redirect; the device did not follow")
        body = bytearray()
        async for chunk in answer.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise ToolError("Home Assistant's answer is too long")
        text = body.decode(errors="replace")
        if status == 401:
            log.warning("! Home Assistant refused the token (HTTP 401): homeassistant.token_file")
            raise ToolError("Home Assistant refused this device's access token")
        if status == 404:
            raise ToolError(f"Home Assistant has no entity {about}")
        if status == 400:
            raise ToolError(f"Home Assistant refused the request: {_message(text)}")
        if not 200 <= status < 300:
            raise ToolError(f"Home Assistant answered with HTTP {status}")
        return text

    # ------------------------------------------------------------------ the tools

    async def list_entities(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "entities": [
                {"entity_id": entity, "services": sorted(self.exposure.services_of(entity))}
                for entity in self.exposure.entities
            ]
        }

    async def get_state(self, args: dict[str, Any]) -> dict[str, Any]:
        entity_id = _text(args, "entity_id")
        refused = self.exposure.refuse_read(entity_id)
        if refused is not None:
            raise ToolError(refused)
        state = await self._request("GET", f"/api/states/{entity_id}", about=entity_id)
        return _state(state, entity_id)

    async def call_service(self, args: dict[str, Any]) -> dict[str, Any]:
        entity_id = _text(args, "entity_id")
        service = _text(args, "service")
        domain = entity_id.partition(".")[0]
        if service.startswith(f"{domain}."):  # "light.turn_on" for a light is fine too
            service = service[len(domain) + 1 :]
        refused = self.exposure.refuse_call(entity_id, service)
        if refused is not None:
            raise ToolError(refused)
        data = _service_data(args.get("data"))
        changed = await self._request(
            "POST",
            f"/api/services/{domain}/{service}",
            {**data, "entity_id": entity_id},
            about=entity_id,
        )
        result: dict[str, Any] = {"ok": True, "entity_id": entity_id, "service": service}
        if isinstance(changed, list):
            for state in changed:
                if isinstance(state, dict) and state.get("entity_id") == entity_id:
                    result["state"] = state.get("state")
        return result

    def tools(self) -> list[Tool]:
        entity = {"type": "string", "description": "an entity id, such as light.kitchen"}
        return [
            Tool(
                "ha_list_entities",
                "The Home Assistant entities this speaker may read, and the services it may "
                "call on each.",
                {"type": "object", "properties": {}},
                self.list_entities,
            ),
            Tool(
                "ha_get_state",
                "The state and attributes of a Home Assistant entity.",
                {"type": "object", "properties": {"entity_id": entity}, "required": ["entity_id"]},
                self.get_state,
            ),
            Tool(
                "ha_call_service",
                "Call a Home Assistant service on an entity: turn_on, turn_off, toggle, "
                "open_cover, ... with optional service data such as brightness_pct.",
                {
                    "type": "object",
                    "properties": {
                        "entity_id": entity,
                        "service": {
                            "type": "string",
                            "description": "the service, in the entity's domain: turn_on",
                        },
                        "data": {
                            "type": "object",
                            "description": "the service's fields, such as brightness_pct",
                        },
                    },
                    "required": ["entity_id", "service"],
                },
                self.call_service,
            ),
        ]


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"{key} is missing")
    return value.strip()


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        raise ToolError("Home Assistant's answer is not JSON") from None


def _message(text: str) -> str:
    """The ``message`` of an error answer, else its start."""
    try:
        value = _json(text)
    except ToolError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])[:MAX_ATTRIBUTE_CHARS]
    return text.strip()[:MAX_ATTRIBUTE_CHARS] or "no reason given"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _state(state: Any, entity_id: str) -> dict[str, Any]:
    """An entity's state for the bot: its short attributes only."""
    if not isinstance(state, dict):
        raise ToolError("Home Assistant's answer is not a state")
    attributes = state.get("attributes")
    kept = {
        key: value
        for key, value in (attributes.items() if isinstance(attributes, dict) else ())
        if _scalar(value) and len(str(value)) <= MAX_ATTRIBUTE_CHARS
    }
    return {
        "entity_id": entity_id,
        "state": state.get("state"),
        "attributes": kept,
        "last_changed": state.get("last_changed"),
    }


def _service_data(data: Any) -> dict[str, Any]:
    """The service's own fields from the call; never another target."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ToolError("data must be an object of the service's fields")
    if len(data) > MAX_DATA_FIELDS:
        raise ToolError(f"data may have {MAX_DATA_FIELDS} fields at most")
    for key, value in data.items():
        if key in TARGET_KEYS:
            raise ToolError(f"data may not name {key}: the call acts on entity_id only")
        if not SERVICE.fullmatch(key):
            raise ToolError(f"{key!r} is not a field name")
        if not (_scalar(value) or (isinstance(value, list) and all(map(_scalar, value)))):
            raise ToolError(f"{key} must be a number, text, true/false or a list of those")
    return data
