"""
Device-side plugins (Coze's 端插件): the tools the bot may call on this device.

When the bot calls one, Coze sends ``conversation.chat.requires_action``; the session hands
the calls to the conversation driver, which runs them here (:meth:`Toolbox.run`) off the
audio path, and the outputs go back with ``conversation.chat.submit_tool_outputs``.

The kinds, one module each:

* ``builtin``        volume, mute, stop, device status, local time (``tools.builtin``)
* ``homeassistant``  an entity's state and a service call on it, through Home Assistant's
                     REST API, only for what ``homeassistant.entities`` and ``.services``
                     expose (``homeassistant.url``)
* ``command``        a local program per tool (``tools.commands``): the arguments as JSON
                     on its stdin, its stdout as the output

A call never raises: a failure is an output with an ``error`` the bot can say. What a tool
prints is logged only through :func:`coze_edge.logs.redact`, and cut at
``tools.max_output_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from coze_edge.core.events import ToolCall
from coze_edge.core.tools import ToolError, arguments, as_output, bounded, error_output
from coze_edge.logs import redact

__all__ = ["Tool", "ToolError", "Toolbox"]

log = logging.getLogger(__name__)

PREVIEW_CHARS: Final = 200
"""How much of a call's arguments and output an info log line shows."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool: what Coze's plugin editor needs to declare it, and the coroutine that runs it
    with the call's arguments (a JSON object). It returns text, or anything JSON can hold;
    it raises :class:`ToolError` with words for the bot when it cannot do what was asked."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(repr=False)
    """The arguments as JSON schema (an ``object``)."""
    run: Callable[[dict[str, Any]], Awaitable[Any]] = field(repr=False, compare=False)

    def declaration(self) -> dict[str, Any]:
        """The tool as Coze's plugin editor asks for it: name, description, parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


class Toolbox:
    """The tools this device offers, by name; ``max_output_bytes`` bounds every output."""

    def __init__(self, tools: Iterable[Tool], *, max_output_bytes: int = 4096) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool
        self._max_output_bytes = max_output_bytes

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        """Every tool as Coze's plugin editor asks for it, in the order given."""
        return [tool.declaration() for tool in self._tools.values()]

    async def run(self, call: ToolCall) -> str:
        """The output of ``call``: the tool's result, or an error output; never raises
        (cancellation aside: the deadline passed)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        tool = self._tools.get(call.name)
        try:
            if tool is None:
                raise ToolError(f"this device has no tool {call.name!r}")
            output = as_output(await tool.run(arguments(call.arguments)))
            failed = False
        except ToolError as exc:
            output, failed = exc.output(), True
        except Exception as exc:  # a bug in a tool: the bot still gets an answer
            log.exception("! tool %s failed", call.name)
            output, failed = error_output(f"the tool failed ({type(exc).__name__})"), True
        output = bounded(output, self._max_output_bytes)
        log.info(
            "tool %s(%s)%s %s (%.0f ms)",
            call.name,
            redact(_preview(call.arguments)),
            " failed:" if failed else ":",
            redact(_preview(output)),
            (loop.time() - started) * 1000,
        )
        return output
