"""Every state file survives whatever is found in its place: moved aside, defaults apply."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coze_edge.adapters.instance_lock import only_instance
from coze_edge.adapters.stores import ControlsStore, ConversationStore, conversation_owner
from coze_edge.adapters.token_store import BindingStore, TokenStore
from coze_edge.core.status import Controls
from coze_edge.core.tokens import Token
from coze_edge.errors import ConfigError

BAD_CONTENTS: dict[str, Callable[[Path], object]] = {
    "null": lambda p: p.write_text("null"),
    "a number": lambda p: p.write_text("42"),
    "garbage": lambda p: p.write_bytes(b"\x00\xff{not json"),
    "a string": lambda p: p.write_text('"hello"'),
    "a directory": lambda p: p.mkdir(),
    "huge": lambda p: p.write_text(" " * (2 << 20) + "{}"),
}

STORES: dict[str, Callable[[Path], Any]] = {
    "token.json": lambda d: TokenStore(d).load(),
    "bindings.json": lambda d: BindingStore(d).load(),
    "conversation.json": lambda d: ConversationStore(d, "me").load(),
    "controls.json": lambda d: ControlsStore(d).load(),
}


@pytest.mark.parametrize("content", list(BAD_CONTENTS))
@pytest.mark.parametrize("name", list(STORES))
def test_an_unusable_state_file_is_moved_aside_with_one_line(
    tmp_path: Path, name: str, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    BAD_CONTENTS[content](tmp_path / name)

    with caplog.at_level(logging.WARNING):
        loaded = STORES[name](tmp_path)

    assert not loaded  # None, or no bindings
    assert not (tmp_path / name).exists()
    assert len(list(tmp_path.glob(f"{name}.corrupt-*"))) == 1
    assert len(caplog.records) == 1
    assert name in caplog.text
    assert STORES[name](tmp_path) in (None, set())  # and the next start is quiet


def test_controls_round_trip_and_refuse_nonsense(tmp_path: Path) -> None:
    store = ControlsStore(tmp_path)
    assert store.load() is None
    store.save(Controls(muted=True, volume=35))
    assert store.load() == Controls(muted=True, volume=35)
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    for bad in ({"muted": "yes", "volume": 3}, {"muted": False, "volume": 101}):
        store.path.write_text(json.dumps(bad))
        assert store.load() is None


def test_a_conversation_of_another_bot_or_account_is_not_reused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mine = conversation_owner("https://api.coze.cn", "7", "pat:secret-token", "42")
    other_bot = conversation_owner("https://api.coze.cn", "8", "pat:secret-token", "42")
    ConversationStore(tmp_path, mine).save("7000000000000000001")

    assert ConversationStore(tmp_path, mine).load() == "7000000000000000001"
    with caplog.at_level(logging.INFO):
        assert ConversationStore(tmp_path, other_bot).load() is None
    assert "another Coze host, bot or account" in caplog.text
    assert "secret-token" not in (tmp_path / "conversation.json").read_text()


def test_an_old_unkeyed_conversation_file_is_not_reused(tmp_path: Path) -> None:
    (tmp_path / "conversation.json").write_text('{"conversation_id": "7000000000000000001"}')
    assert ConversationStore(tmp_path, "me").load() is None


def test_a_token_file_is_whole_after_a_save_and_mode_0600(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save(Token("czu_a", "r", 2e9, 1e9))
    assert os.stat(store.path).st_mode & 0o777 == 0o600
    loaded = store.load()
    assert loaded is not None
    assert loaded.access_token == "czu_a"


def test_a_second_instance_on_one_state_dir_is_refused(tmp_path: Path) -> None:
    refused = pytest.raises(ConfigError, match=rf"another coze-edge \(pid {os.getpid()}\)")
    with only_instance(tmp_path), refused, only_instance(tmp_path):
        pass
    with only_instance(tmp_path):  # released with the first
        pass
