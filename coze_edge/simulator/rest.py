"""
The REST side of Coze the device uses, beside OAuth: the logid every answer carries, the
``{code, msg, data, detail}`` envelope (coze-protocol.md 1.4), bind device, the voice list
and creating a conversation.

Business errors are answered with HTTP 200 and a code, as coze-py's own tests mock them;
the real server's status for them is not pinned down (coze-protocol.md 1.5).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from coze_edge.simulator.conversations import Conversations
from coze_edge.simulator.faults import Faults
from coze_edge.simulator.ids import logid_for

LOGID: Final = web.RequestKey("logid", str)
"""The logid of the request, for the body's ``detail.logid``."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Authorize = Callable[[web.Request], str | None]
"""The request's bearer token if it is good (a PAT or a live access token), else None."""


@web.middleware
async def logid_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer carries ``X-Tt-Logid`` (coze-protocol.md 1.3), errors included; the
    shape is REST's or, for a WebSocket's handshake, the WebSocket one (ids.py)."""
    logid = logid_for(request.path)
    request[LOGID] = logid
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers["X-Tt-Logid"] = logid
        raise
    if not response.prepared:
        response.headers["X-Tt-Logid"] = logid
    return response


def ok(request: web.Request, data: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": 0, "msg": "", "detail": {"logid": request[LOGID]}}
    if data is not None:
        body["data"] = data
    return web.json_response(body)


def fail(request: web.Request, code: int, msg: str, status: int = 200) -> web.Response:
    body = {"code": code, "msg": msg, "detail": {"logid": request[LOGID]}}
    return web.json_response(body, status=status)


def unauthorized(request: web.Request) -> web.Response:
    return fail(request, 4100, "authentication is invalid", 401)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or HTTP 400."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body is not a JSON object")
    return body


class Rest:
    """Bind device, voices and conversations, behind a bearer token."""

    def __init__(
        self, *, authorize: Authorize, faults: Callable[[], Faults], conversations: Conversations
    ) -> None:
        self._authorize = authorize
        self._faults = faults
        self._conversations = conversations
        self.bindings: list[dict[str, Any]] = []
        """Every accepted bind request: ``connector_id`` and the body."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/connectors/{connector_id}/user_configs", self._bind),
            web.get("/v1/audio/voices", self._voices),
            web.post("/v1/conversation/create", self._create_conversation),
        ]

    async def _bind(self, request: web.Request) -> web.Response:
        if self._authorize(request) is None:
            return unauthorized(request)
        code = self._faults().bind_error_code
        if code is not None:
            return fail(request, code, "simulated bind failure")
        body = await read_json(request)
        configs = body.get("configs")
        valid = (
            isinstance(configs, list)
            and configs
            and all(
                isinstance(c, dict)
                and isinstance(c.get("key"), str)
                and isinstance(c.get("enums"), list)
                and all(
                    isinstance(e, dict)
                    and isinstance(e.get("label"), str)
                    and isinstance(e.get("value"), str)
                    for e in c["enums"]
                )
                for c in configs
            )
        )
        if not valid:
            return fail(request, 4000, "configs must be [{key, enums:[{label, value}]}]")
        self.bindings.append({"connector_id": request.match_info["connector_id"], **body})
        return ok(request)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """The answer when the token is bad or ``Faults.rest_error_code`` is set."""
        if self._authorize(request) is None:
            return unauthorized(request)
        faults = self._faults()
        if faults.rest_error_code is not None:
            return fail(
                request, faults.rest_error_code, "simulated error", faults.rest_error_status
            )
        return None

    async def _voices(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        voices = [
            _voice("7426720361733046281", "柔美女友", "zh", "中文"),
            _voice("7426720361733144585", "阳光少年", "zh", "中文"),
            _voice("7426725529589661723", "Warm Narrator", "en", "English"),
        ]
        size = max(1, min(100, int(request.query.get("page_size", "100"))))
        page = max(1, int(request.query.get("page_num", "1")))
        chunk = voices[(page - 1) * size : page * size]
        return ok(request, {"voice_list": chunk, "has_more": page * size < len(voices)})

    async def _create_conversation(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        body = await read_json(request) if request.body_exists else {}
        bot_id = body.get("bot_id")
        conversation = self._conversations.issue(None if bot_id is None else str(bot_id))
        return ok(
            request,
            {
                "id": conversation,
                "created_at": int(time.time()),
                "meta_data": {},
                "last_section_id": conversation,
            },
        )


def _voice(voice_id: str, name: str, code: str, language: str) -> dict[str, Any]:
    return {
        "voice_id": voice_id,
        "name": name,
        "is_system_voice": True,
        "language_code": code,
        "language_name": language,
        "preview_text": "你好",
        "preview_audio": "",
        "available_training_times": 0,
        "create_time": 1720000000,
        "update_time": 1720000000,
        "model_type": "big",
        "state": "init",
        "support_emotions": [],
    }
