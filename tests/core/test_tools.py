"""The pure parts of the device-side plugins: outputs, bounds, config values, exposure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coze_edge.core.tools import (
    CUT_MARK,
    Exposure,
    ToolError,
    arguments,
    as_output,
    bounded,
    command_argv,
    error_output,
    word_list,
)

EXPOSED = Exposure.parse(
    "light.kitchen, light.hall\nsensor.outside_temperature cover.garage_door",
    {"light": ["turn_on", "turn_off"], "cover.garage_door": "open_cover close_cover"},
)


def test_an_error_output_is_json_with_an_error_string() -> None:
    """A failure reads as {"error": ...}, with any details beside it."""
    assert json.loads(error_output("the lamp is gone", output="x")) == {
        "error": "the lamp is gone",
        "output": "x",
    }
    assert json.loads(ToolError("no", code=3).output()) == {"error": "no", "code": 3}


def test_results_become_text_or_json() -> None:
    """Text is sent as it is; anything else as JSON (not ASCII-escaped)."""
    assert as_output("已开灯") == "已开灯"
    assert as_output({"state": "开"}) == '{"state": "开"}'


@given(st.text(), st.integers(min_value=len(CUT_MARK.encode()), max_value=400))
def test_bounded_output_fits_and_keeps_the_start(text: str, limit: int) -> None:
    """What is sent fits in the limit, is valid text, and starts with what the tool said."""
    out = bounded(text, limit)

    assert len(out.encode()) <= limit
    if out != text:
        assert out.endswith(CUT_MARK)
        assert text.startswith(out[: -len(CUT_MARK)])


def test_arguments_must_be_a_json_object() -> None:
    """Empty arguments are none; anything but a JSON object is refused in words."""
    assert arguments("") == {}
    assert arguments('{"volume": 3}') == {"volume": 3}
    with pytest.raises(ToolError, match="not JSON"):
        arguments("{volume")
    with pytest.raises(ToolError, match="object"):
        arguments("[1]")


def test_a_command_is_a_list_or_a_string_split_like_a_shell() -> None:
    """A list is the argv as it is; a string is split (quotes keep spaces, nothing expands)."""
    assert command_argv(["/bin/door", "big door"]) == ("/bin/door", "big door")
    assert command_argv('/bin/door --name "big door" $HOME') == (
        "/bin/door",
        "--name",
        "big door",
        "$HOME",
    )
    with pytest.raises(ValueError, match="No closing quotation"):
        command_argv('/bin/door "open')
    with pytest.raises(ValueError, match="list of the program"):
        command_argv({"program": "/bin/door"})


def test_word_lists_split_at_spaces_commas_and_lines() -> None:
    """Entity lists may be written on one line or many; comments are dropped."""
    assert word_list("a, b\nc d # not e\n") == ["a", "b", "c", "d"]


def test_exposed_entities_may_be_read_others_not() -> None:
    """Reading needs only the entity to be listed."""
    assert EXPOSED.refuse_read("sensor.outside_temperature") is None
    assert (
        EXPOSED.refuse_read("lock.front_door") == "lock.front_door is not exposed to this assistant"
    )
    assert "not an entity id" in (EXPOSED.refuse_read("../../api/config") or "")


def test_services_are_granted_by_domain_or_by_entity() -> None:
    """A domain rule covers every listed entity of it; an entity rule that entity only."""
    assert EXPOSED.refuse_call("light.hall", "turn_on") is None
    assert EXPOSED.refuse_call("cover.garage_door", "open_cover") is None
    assert EXPOSED.services_of("light.kitchen") == {"turn_on", "turn_off"}
    assert EXPOSED.services_of("lock.front_door") == frozenset()


def test_what_is_not_granted_is_refused_with_a_reason() -> None:
    """The reason names the entity and, where some are allowed, what is."""
    assert EXPOSED.refuse_call("light.kitchen", "toggle") == (
        "toggle is not allowed on light.kitchen; allowed: turn_off, turn_on"
    )
    assert EXPOSED.refuse_call("sensor.outside_temperature", "turn_on") == (
        "sensor.outside_temperature may be read but not controlled by this assistant"
    )
    assert EXPOSED.refuse_call("light.garage", "turn_on") == (
        "light.garage is not exposed to this assistant"
    )
    assert "not a service name" in (EXPOSED.refuse_call("light.hall", "turn_on/../x") or "")


def test_an_exposure_with_mistakes_lists_them_all() -> None:
    """Bad ids, rules for unlisted entities, bad and empty service lists: each one."""
    with pytest.raises(ValueError, match="not an entity id") as caught:
        Exposure.parse(
            "Light.Kitchen light.hall",
            {"cover.garage": ["open_cover"], "light": [], "switch": [1], "Fan!": "on"},
        )

    assert str(caught.value).splitlines() == [
        "entities: 'Light.Kitchen' is not an entity id (domain.name)",
        "services.cover.garage: not in entities",
        "services.light: no services",
        "services.switch: must be a list of service names",
        "services.Fan!: not an entity id or a domain",
    ]
