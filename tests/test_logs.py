"""Log lines: journald format under systemd, plain lines elsewhere, secrets never shown."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from coze_edge.logs import redact, register_secret, setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_under_journald_lines_carry_priorities_and_no_timestamps(restore_logging: None) -> None:
    """JOURNAL_STREAM set: '<4>name: message', so journald keeps the level."""
    out = io.StringIO()
    setup_logging("info", env={"JOURNAL_STREAM": "8:1234"}, stream=out)

    logging.getLogger("coze_edge.x").warning("lost the microphone")
    logging.getLogger("coze_edge.x").debug("not shown at info")

    assert out.getvalue() == "<4>coze_edge.x: lost the microphone\n"


def test_elsewhere_lines_have_time_and_level(restore_logging: None) -> None:
    """Outside systemd each line starts with a timestamp and the level."""
    out = io.StringIO()
    setup_logging("debug", env={}, stream=out)

    logging.getLogger("coze_edge.y").info("state: idle")

    assert out.getvalue().rstrip().endswith("INFO coze_edge.y: state: idle")
    assert out.getvalue()[:4].isdigit()


@pytest.mark.parametrize(
    "secret_line",
    [
        "Authorization: Bearer pat_abcdefgh123",
        '{"access_token": "czu_SECRETSECRET", "refresh_token": "RTOKEN123"}',
        "ws://host/v1/chat?authorization=Bearer%20abc123def",
        "password=hunter22",
        "user_code: WDJB-MJHT",
        "token pat_0123456789abcdef in a sentence",
        "a JWT app's token czs_RQOhsc7vmUzK4bNgb7hn4 in a sentence",
    ],
)
def test_secrets_are_masked(secret_line: str) -> None:
    """Tokens, passwords and login codes are replaced by ***."""
    masked = redact(secret_line)

    assert "***" in masked
    for secret in (
        "abcdefgh123",
        "SECRETSECRET",
        "RTOKEN123",
        "abc123def",
        "hunter22",
        "WDJB-MJHT",
        "0123456789abcdef",
    ):
        assert secret not in masked


def test_registered_secrets_are_masked_even_in_tracebacks(restore_logging: None) -> None:
    """A value registered at run time never appears, whatever the text around it."""
    out = io.StringIO()
    setup_logging("info", env={}, stream=out)
    register_secret("plain-looking-value-42")

    try:
        raise ValueError("refused plain-looking-value-42")
    except ValueError:
        logging.getLogger("coze_edge.z").exception("failed with plain-looking-value-42")

    assert "plain-looking-value-42" not in out.getvalue()
    assert "Traceback" in out.getvalue()
