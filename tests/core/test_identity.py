"""The device id: derived from the machine id as CONTRACT.md says, and checked as an int64."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coze_edge.core.identity import INT64_MAX, device_id_from_machine_id, is_int64_id


def test_known_machine_ids_give_known_device_ids() -> None:
    """Values computed outside Python (sha256sum, then printf '%d') come out the same."""
    # sha256("0123...cdef") starts 3eb1bd439947eb76; the top bit is clear, so no masking.
    assert device_id_from_machine_id("0123456789abcdef0123456789abcdef") == "4517599999261404022"
    # sha256("a") starts ca978112ca1bbdca; masking to 63 bits turns c into 4.
    assert device_id_from_machine_id("a") == "5374906597990186442"


def test_the_machine_id_text_is_stripped() -> None:
    """The newline that /etc/machine-id ends with, and stray spaces, do not change the id."""
    plain = device_id_from_machine_id("0123456789abcdef0123456789abcdef")

    assert device_id_from_machine_id("0123456789abcdef0123456789abcdef\n") == plain
    assert device_id_from_machine_id("  0123456789abcdef0123456789abcdef \n") == plain


@given(st.text())
def test_the_id_is_the_masked_hash_prefix_and_a_valid_id(text: str) -> None:
    """For any text the id is the first 16 hex digits of its SHA-256, masked to 63 bits."""
    digest = hashlib.sha256(text.strip().encode("utf-8")).digest()
    expected = int.from_bytes(digest[:8], "big") & (2**63 - 1)

    device_id = device_id_from_machine_id(text)

    assert device_id == str(expected)
    assert is_int64_id(device_id) or expected == 0


@pytest.mark.parametrize("text", ["1", "5551234", "1234567890123456789", str(INT64_MAX)])
def test_positive_int64_decimals_are_ids(text: str) -> None:
    """Plain positive decimals up to 2**63 - 1 are device ids."""
    assert is_int64_id(text)


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "00",
        "0123",
        "-5",
        "+5",
        " 5",
        "5 ",
        "5\n",
        "",
        "1e5",
        "12.0",
        "0x1f",
        "1_000",
        "١٢٣",  # Arabic-Indic digits: str.isdigit() says yes, Coze would not
        str(INT64_MAX + 1),
        str(2**64),
        5,
        None,
    ],
)
def test_everything_else_is_not_an_id(value: object) -> None:
    """Zero, signs, spaces, leading zeros, other notations, overflow and non-strings are not ids."""
    assert not is_int64_id(value)
