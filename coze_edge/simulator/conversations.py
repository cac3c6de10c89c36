"""
The conversations the simulator has issued, per bot: by ``POST /v1/conversation/create``,
and by a chat session that was given none. A ``chat.update`` may only name one of these.

A conversation created over REST without a ``bot_id`` is known to every bot (inferred:
the docs make ``bot_id`` optional there and say nothing of such a conversation's scope).
"""

from __future__ import annotations

from coze_edge.simulator.ids import numeric_id


class Conversations:
    def __init__(self) -> None:
        self._by_bot: dict[str | None, set[str]] = {}

    def issue(self, bot_id: str | None) -> str:
        """A new conversation id, known from now on to ``bot_id`` (None: to every bot)."""
        conversation = numeric_id()
        self._by_bot.setdefault(bot_id, set()).add(conversation)
        return conversation

    def knows(self, bot_id: str, conversation: str) -> bool:
        return conversation in self._by_bot.get(bot_id, ()) or conversation in self._by_bot.get(
            None, ()
        )

    def of(self, bot_id: str) -> frozenset[str]:
        """Every conversation ``bot_id`` may name, including those of no bot."""
        return frozenset(self._by_bot.get(bot_id, set()) | self._by_bot.get(None, set()))

    def forget(self) -> None:
        """Every conversation issued so far is unknown from now on."""
        self._by_bot.clear()
