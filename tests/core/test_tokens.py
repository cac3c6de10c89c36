"""Token lifetimes from whatever a token endpoint answers: never a spin, never a lost pair."""

from __future__ import annotations

import math

import pytest

from coze_edge.core.tokens import (
    DEFAULT_LIFETIME_S,
    MAX_LIFETIME_S,
    MIN_LIFETIME_S,
    DeviceFlow,
    Token,
    expiry,
)

NOW = 1_800_000_000.0


def test_coze_absolute_expiry_is_taken_as_given() -> None:
    assert expiry(NOW + 900, NOW) == (NOW + 900, None)
    assert expiry(int(NOW) + 86400, NOW) == (NOW + 86400, None)


def test_a_relative_lifetime_is_understood() -> None:
    at, note = expiry(900, NOW)
    assert at == NOW + 900
    assert note is not None
    assert "relative" in note


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, -5, 0, "900", None, True, [900], {"s": 1}]
)
def test_an_unusable_value_gives_the_default_lifetime(value: object) -> None:
    at, note = expiry(value, NOW)
    assert at == NOW + DEFAULT_LIFETIME_S
    assert note is not None


def test_lifetimes_are_bounded_so_the_refresher_never_spins_or_sleeps_for_ever() -> None:
    assert expiry(NOW - 10, NOW)[0] == NOW + MIN_LIFETIME_S
    assert expiry(5, NOW)[0] == NOW + MIN_LIFETIME_S
    assert expiry(1e30, NOW)[0] == NOW + MAX_LIFETIME_S
    token = Token("a", "r", NOW + MIN_LIFETIME_S, NOW)
    assert token.refresh_at() - NOW >= 0.8 * MIN_LIFETIME_S


def test_a_token_file_with_a_broken_expiry_keeps_its_refresh_token() -> None:
    """Ours never writes one, but an edited file must not cost the login: refresh at once."""
    token = Token.from_document(
        {"access_token": "a", "refresh_token": "r", "expires_at": math.inf, "obtained_at": 1.0}
    )
    assert token.refresh_token == "r"
    assert token.needs_refresh(NOW)


@pytest.mark.parametrize(
    "document",
    [None, 42, "text", [], {"refresh_token": "r"}, {"access_token": "", "expires_at": 1}],
)
def test_a_document_that_is_no_token_is_refused(document: object) -> None:
    with pytest.raises(ValueError, match="token file"):
        Token.from_document(document)


def test_the_polling_interval_and_code_lifetime_are_bounded() -> None:
    flow = DeviceFlow(interval=10_000, expires_in=10**9, now=0.0)
    assert flow.interval == 60.0
    assert flow.expires_at == 3600.0
    assert DeviceFlow(interval=0, expires_in=-5, now=0.0).expires_at == 5.0
