"""
The device's remembered settings in ``state_dir``: ``controls.json`` (mute, volume) and
``conversation.json`` (the Coze conversation id, and whose it is). Written atomically;
an unusable file is set aside and the defaults apply (adapters/state_files.py).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from coze_edge.adapters.state_files import read_state, write_state
from coze_edge.core.status import Controls

log = logging.getLogger(__name__)


class ControlsStore:
    """``controls.json``: mute, volume, wake word and turn detection, so a power cut does
    not unmute the microphone. ``configured``: what the config says of the last two (a
    choice made against other config values gives way to the config's: Controls)."""

    def __init__(self, state_dir: Path, configured: Controls | None = None) -> None:
        self.path = state_dir / "controls.json"
        self.configured = configured or Controls()

    def load(self) -> Controls | None:
        return read_state(
            self.path,
            lambda data: Controls.from_document(data, self.configured),
            what="mute and volume",
        )

    def save(self, controls: Controls) -> None:
        """OSError when the disk refuses (the caller keeps the value and says so)."""
        write_state(self.path, controls.to_document(self.configured))


def conversation_owner(*parts: str | None) -> str:
    """A short fingerprint of what a conversation id belongs to (API host, bot, account,
    user): the file never holds the parts themselves, some of which are secrets."""
    digest = hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()
    return digest[:32]


class ConversationStore:
    """``conversation.json``: the Coze conversation id, so the bot keeps its context across
    restarts; only for the API host, bot and account it was made with (``owner``)."""

    def __init__(self, state_dir: Path, owner: str) -> None:
        self.path = state_dir / "conversation.json"
        self._owner = owner

    def load(self) -> str | None:
        document = read_state(self.path, _conversation, what="the Coze conversation id")
        if document is None:
            return None
        conversation_id, owner = document
        if conversation_id is None:
            return None
        if owner != self._owner:
            log.info(
                "the remembered conversation belongs to another Coze host, bot or account; "
                "starting a new one"
            )
            return None
        return conversation_id

    def save(self, conversation_id: str | None) -> None:
        try:
            write_state(self.path, {"conversation_id": conversation_id, "owner": self._owner})
        except OSError as exc:
            log.warning("! could not save the conversation id: %s", exc.strerror or exc)


def _conversation(data: Any) -> tuple[str | None, str | None]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    value, owner = data.get("conversation_id"), data.get("owner")
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError("'conversation_id' must be a non-empty string or null")
    return value, owner if isinstance(owner, str) else None
