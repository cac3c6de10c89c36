"""The OAuth token and the binding record in ``state_dir``: mode 0600, replaced atomically."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from coze_edge.adapters.atomic import atomic_write
from coze_edge.core.tokens import Token

log = logging.getLogger(__name__)


class TokenStore:
    """``token.json``: the old or the new token after any crash, never a torn file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "token.json"

    def load(self) -> Token | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return Token.from_json(text)
        except ValueError as exc:
            aside = self.path.with_name(f"token.json.corrupt-{int(time.time())}")
            self.path.rename(aside)
            log.error(
                "! %s is unreadable (%s); kept as %s, logging in again", self.path, exc, aside
            )
            return None

    def save(self, token: Token) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, token.to_json().encode())


class BindingStore:
    """``bindings.json``: the (connector, device id) pairs already bound."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "bindings.json"

    def load(self) -> set[tuple[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            log.warning("! ignoring unreadable %s: %s", self.path, exc)
            return set()
        return {
            (str(item[0]), str(item[1]))
            for item in data
            if isinstance(item, list) and len(item) == 2
        }

    def is_bound(self, connector_id: str, device_id: str) -> bool:
        return (connector_id, device_id) in self.load()

    def add(self, connector_id: str, device_id: str) -> None:
        pairs = self.load() | {(connector_id, device_id)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(sorted(list(p) for p in pairs)).encode())
