"""
Device-side plugins (端插件) in the simulator: a turn answered with a tool call.

With ``sim.faults.tool_call = ToolCallTurn("set_volume", {"volume": 30})`` every turn's chat
goes ``requires_action`` with that call (after a ``function_call`` message, as Coze's HTTP
streams show), then waits for ``conversation.chat.submit_tool_outputs``. The outputs it gets
become the reply's text, ``tool said: <output>`` (several joined with ``; ``), and the
recorded reply's audio follows, so a test sees what reached Coze in the ``reply`` event.
A chat whose outputs do not come within ``wait_s`` fails [INF: how long Coze really waits,
and how it ends such a chat, is not documented].
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from coze_edge.simulator.ids import numeric_id

SAID: Final = "tool said: "
"""What the reply's text starts with: the outputs follow."""


@dataclass(frozen=True)
class ToolCallTurn:
    """Answer each turn with a call of the tool ``name`` with ``arguments``."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    """A JSON object, or the exact ``arguments`` string to send (malformed ones too)."""
    wait_s: float = 30.0
    """How long the chat waits for the outputs before it fails."""

    def tool_call(self) -> dict[str, Any]:
        """The call as ``required_action.submit_tool_outputs.tool_calls[]`` holds it."""
        arguments = self.arguments
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        return {
            "id": f"call_{numeric_id()}",
            "type": "function",
            "function": {"name": self.name, "arguments": arguments},
        }


class ToolOutputs:
    """The chat of a session waiting for tool outputs (one at a time), and what came."""

    def __init__(self) -> None:
        self._waiting: tuple[str, tuple[str, ...], asyncio.Future[list[str]]] | None = None

    def expect(self, chat_id: str, call_ids: tuple[str, ...]) -> asyncio.Future[list[str]]:
        """Wait for the outputs of ``call_ids`` in chat ``chat_id``: the future gets them,
        in that order."""
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting = (chat_id, call_ids, future)
        return future

    def forget(self) -> None:
        self._waiting = None

    def submitted(self, data: Mapping[str, Any]) -> str | None:
        """A ``submit_tool_outputs`` frame's data: None if it answers the chat that waits,
        else why it is refused."""
        if self._waiting is None:
            return "no chat is waiting for tool outputs"
        chat_id, call_ids, future = self._waiting
        if str(data.get("chat_id")) != chat_id:
            return f"chat {data.get('chat_id')} is not waiting for tool outputs"
        outputs = data.get("tool_outputs")
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            return "tool_outputs must be a list of objects"
        answered = {str(o.get("tool_call_id")): o.get("output") for o in outputs}
        if set(answered) != set(call_ids):
            return f"tool_outputs must answer exactly the calls {list(call_ids)}"
        if not all(isinstance(output, str) for output in answered.values()):
            return "each output must be a string"
        self._waiting = None
        if not future.done():
            future.set_result([str(answered[i]) for i in call_ids])
        return None
