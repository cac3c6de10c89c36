"""The OAuth token and the binding record in ``state_dir``: mode 0600, replaced atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from coze_edge.adapters.state_files import read_state, write_state
from coze_edge.core.tokens import Token

log = logging.getLogger(__name__)


class TokenStore:
    """``token.json``: the old or the new token after any crash, never a torn file."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "token.json"

    def load(self) -> Token | None:
        """The saved token; None when there is none or the file is unusable (set aside)."""
        return read_state(self.path, Token.from_document, what="the Coze login")

    def save(self, token: Token) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_state(self.path, token.to_document())

    def stamp(self) -> tuple[int, int] | None:
        """Changes whenever the file is replaced (to notice a login by another process)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns


def _pairs(data: Any) -> set[tuple[str, str]]:
    if not isinstance(data, list):
        raise ValueError("not a list of [connector, device id] pairs")
    return {
        (str(item[0]), str(item[1])) for item in data if isinstance(item, list) and len(item) == 2
    }


class BindingStore:
    """``bindings.json``: the (connector, device id) pairs already bound."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "bindings.json"

    def load(self) -> set[tuple[str, str]]:
        return read_state(self.path, _pairs, what="the channel bindings") or set()

    def is_bound(self, connector_id: str, device_id: str) -> bool:
        return (connector_id, device_id) in self.load()

    def add(self, connector_id: str, device_id: str) -> None:
        pairs = self.load() | {(connector_id, device_id)}
        write_state(self.path, sorted(list(p) for p in pairs))
