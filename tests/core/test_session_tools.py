"""The session and device-side plugins: requires_action in, RunTools out, outputs in time."""

from __future__ import annotations

import json

from coze_edge.core import events as ev
from coze_edge.core.session import Announce, Effect, RunTools, Send, Session
from coze_edge.core.status import State
from tests.support.session import CHAT, CONV, idle_session, sent, talk

LAMP = ev.ToolCall("call-1", "ha_call_service", '{"entity_id": "light.kitchen"}')
CLOCK = ev.ToolCall("call-2", "local_time", "")
TOOLS = frozenset({"ha_call_service", "local_time"})


def waiting_for_a_reply(**settings: object) -> Session:
    """A turn was committed at 1.0 and Coze started its chat."""
    session = idle_session(tool_names=TOOLS, tool_deadline_s=5.0, **settings)
    talk(session, speech_ms=400, silence_ms=300, now=1.0)
    session.received(ev.ChatStarted(CHAT, CONV), 1.5)
    assert session.state is State.THINKING
    return session


def requires(*calls: ev.ToolCall, chat: str = CHAT) -> ev.ChatRequiresAction:
    return ev.ChatRequiresAction(chat, CONV, calls)


def outputs(effects: list[Effect]) -> dict[str, str]:
    [submit] = [e.event for e in effects if isinstance(e, Send)]
    assert isinstance(submit, ev.SubmitToolOutputs)
    assert submit.chat_id == CHAT
    return dict(submit.outputs)


def test_tool_calls_are_handed_to_the_driver_with_a_deadline() -> None:
    """requires_action asks the driver to run the calls, to end by the tool deadline."""
    session = waiting_for_a_reply()

    effects = session.received(requires(LAMP, CLOCK), 2.0)

    assert effects == [RunTools(CHAT, (LAMP, CLOCK), deadline=7.0)]
    assert session.next_deadline() == 7.0


def test_the_outputs_go_to_coze_together_once_all_are_in() -> None:
    """Nothing is sent until the last call finished; then every output, in call order."""
    session = waiting_for_a_reply()
    session.received(requires(LAMP, CLOCK), 2.0)

    first = session.tool_finished(CHAT, CLOCK.id, '{"time": "12:00"}', 2.1)
    second = session.tool_finished(CHAT, LAMP.id, '{"ok": true}', 2.2)

    assert first == []
    assert second == [
        Send(
            ev.SubmitToolOutputs(
                CHAT, (("call-1", '{"ok": true}'), ("call-2", '{"time": "12:00"}'))
            )
        )
    ]


def test_a_call_still_running_at_the_deadline_is_answered_with_an_error() -> None:
    """At the deadline the finished calls go with their outputs, the rest with an error."""
    session = waiting_for_a_reply()
    session.received(requires(LAMP, CLOCK), 2.0)
    session.tool_finished(CHAT, CLOCK.id, '{"time": "12:00"}', 2.1)

    assert session.handle_timer(6.9) == []
    answered = outputs(session.handle_timer(7.0))

    assert answered["call-2"] == '{"time": "12:00"}'
    assert "error" in json.loads(answered["call-1"])
    assert session.tool_finished(CHAT, LAMP.id, '{"ok": true}', 7.5) == []  # too late


def test_the_reply_timeout_waits_for_the_tools_then_starts_over() -> None:
    """While tools run the turn is not given up; the reply timeout counts from the answer."""
    session = waiting_for_a_reply(reply_timeout_s=3.0)
    session.received(requires(LAMP), 2.0)

    assert session.handle_timer(6.0) == []  # past the reply timeout from 1.5: still waiting
    session.tool_finished(CHAT, LAMP.id, "{}", 6.0)

    assert session.next_deadline() == 9.0
    assert session.state is State.THINKING


def test_a_tool_the_device_lacks_is_answered_at_once() -> None:
    """A call of a tool not offered here gets an error output without the driver."""
    session = waiting_for_a_reply()

    effects = session.received(requires(ev.ToolCall("c9", "launch_rocket", "{}")), 2.0)

    assert json.loads(outputs(effects)["c9"]) == {
        "error": "this device has no tool 'launch_rocket'"
    }


def test_only_the_known_calls_of_a_mixed_batch_run() -> None:
    """The driver gets the known calls; the unknown one waits in the batch, answered."""
    session = waiting_for_a_reply()
    unknown = ev.ToolCall("c9", "launch_rocket", "{}")

    effects = session.received(requires(unknown, CLOCK), 2.0)
    done = session.tool_finished(CHAT, CLOCK.id, "noon", 2.1)

    assert effects == [RunTools(CHAT, (CLOCK,), deadline=7.0)]
    assert list(outputs(done)) == ["c9", "call-2"]


def test_long_outputs_are_cut() -> None:
    """An output longer than tool_output_bytes is cut before it goes to Coze."""
    session = waiting_for_a_reply(tool_output_bytes=300)
    session.received(requires(CLOCK), 2.0)

    answered = outputs(session.tool_finished(CHAT, CLOCK.id, "x" * 10_000, 2.1))

    assert len(answered["call-2"].encode()) <= 300
    assert answered["call-2"].endswith("[cut]")


def test_outputs_of_a_turn_talked_over_are_dropped() -> None:
    """Speech during the tool wait cancels the chat; its late outputs go nowhere."""
    session = waiting_for_a_reply()
    session.received(requires(LAMP), 2.0)

    effects = session.listen(2.5)
    late = session.tool_finished(CHAT, LAMP.id, "{}", 3.0)

    assert ev.ChatCancel() in sent(effects)
    assert late == []
    assert session.handle_timer(7.0) == []


def test_a_cancel_during_the_tool_wait_ends_the_turn_quietly() -> None:
    """The stop tool (a cancel) cancels the chat: nothing is submitted for it."""
    session = waiting_for_a_reply()
    session.received(requires(ev.ToolCall("c3", "stop", "{}")), 2.0)

    effects = session.cancel(2.1)

    assert effects == [Send(ev.ChatCancel()), Announce(State.IDLE)]
    assert session.tool_finished(CHAT, "c3", '{"stopped": true}', 2.2) == []
    assert session.next_deadline() is None


def test_a_lost_connection_forgets_the_calls() -> None:
    """After a disconnect neither the outputs nor the deadline send anything."""
    session = waiting_for_a_reply()
    session.received(requires(LAMP), 2.0)

    session.disconnected(2.5)

    assert session.tool_finished(CHAT, LAMP.id, "{}", 3.0) == []
    assert session.next_deadline() is None


def test_calls_of_a_chat_nobody_waits_for_are_refused_so_it_ends() -> None:
    """requires_action while idle (the turn was given up) is answered with errors at once."""
    session = idle_session(tool_names=TOOLS)

    [effect] = session.received(requires(LAMP), 2.0)

    assert isinstance(effect, Send)
    assert isinstance(effect.event, ev.SubmitToolOutputs)
    assert "error" in json.loads(dict(effect.event.outputs)["call-1"])


def test_calls_of_a_cancelled_chat_are_not_run() -> None:
    """A chat we cancelled gets neither tools nor an answer."""
    session = waiting_for_a_reply()
    session.cancel(1.8)

    assert session.received(requires(LAMP), 2.0) == []


def test_an_output_for_another_chat_or_call_is_ignored() -> None:
    """Only the pending calls of the pending chat count."""
    session = waiting_for_a_reply()
    session.received(requires(LAMP), 2.0)

    assert session.tool_finished("other-chat", LAMP.id, "{}", 2.1) == []
    assert session.tool_finished(CHAT, "no-such-call", "{}", 2.1) == []
    assert outputs(session.tool_finished(CHAT, LAMP.id, "{}", 2.2)) == {"call-1": "{}"}
