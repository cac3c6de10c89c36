"""Faults injected in the simulator: the daemon survives each, within a recovery bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from coze_edge.config import config_from_mapping
from coze_edge.core.status import DeviceStatus, State
from coze_edge.credentials import StaticToken
from coze_edge.daemon import Daemon
from coze_edge.simulator import Faults, Simulator
from coze_edge.supervisor import supervise
from tests.support.data import DATA


@dataclass
class Run:
    sim: Simulator
    events: list[dict[str, Any]] = field(default_factory=list)
    states: list[tuple[float, State]] = field(default_factory=list)

    def when(self, state: State, after: float = 0.0) -> float | None:
        return next((t for t, s in self.states if s is state and t >= after), None)

    async def wait(self, predicate: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - polling the recorded history
                await asyncio.sleep(0.01)


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[Run]:
    """The daemon in-process against the simulator, one question as its microphone."""
    async with Simulator(reply_speed=6.0) as sim:
        config = config_from_mapping(
            {
                "coze": {
                    "api_base": sim.api_base,
                    "ws_base": sim.ws_base,
                    "bot_id": "7",
                    "reply_timeout_ms": 1500,
                },
                "auth": {"method": "pat"},
                "device": {"id": "42"},
                "state_dir": str(tmp_path),
                "audio": {
                    "backend": "file",
                    "file_input": str(DATA / "utterance-weather.wav"),
                    "file_realtime": False,
                },
            },
            env={},
        )
        run = Run(sim)
        loop = asyncio.get_running_loop()

        def on_status(status: DeviceStatus) -> None:
            if not run.states or run.states[-1][1] is not status.state:
                run.states.append((loop.time(), status.state))

        daemon = Daemon(
            config,
            tokens=StaticToken("sim-pat"),
            on_status=on_status,
            on_event=run.events.append,
            env={},
        )
        stop = asyncio.Event()
        task = asyncio.create_task(supervise(daemon.services(), stop=stop, signals=()))
        try:
            yield run
        finally:
            stop.set()
            await task


def arm(run: Run, **faults: Any) -> None:
    run.sim.faults = Faults(**faults)


async def test_socket_closed_mid_reply_reconnects_within_a_second(faulty: Run) -> None:
    """The socket dies mid-reply: playback stops, a new session is open within 1 s, idle."""
    arm(faulty, close_after_audio_deltas=3)
    await faulty.wait(lambda: len(faulty.sim.connections) == 2, 15)
    dropped = faulty.when(State.CONNECTING, after=0.1)
    assert dropped is not None
    await faulty.wait(lambda: faulty.when(State.IDLE, after=dropped) is not None, 5)
    recovered = faulty.when(State.IDLE, after=dropped)
    assert recovered is not None
    print(f"recovered from a mid-reply drop in {(recovered - dropped) * 1000:.0f} ms")
    assert recovered - dropped < 1.0
    assert any(e["type"] == "error" for e in faulty.events)


async def test_a_silent_server_ends_the_turn_at_the_reply_timeout(faulty: Run) -> None:
    """No reply: after coze.reply_timeout_ms the device is idle again, with an error."""
    arm(faulty, silent=True)
    await faulty.wait(lambda: faulty.when(State.THINKING) is not None, 15)
    thinking = faulty.when(State.THINKING)
    assert thinking is not None
    await faulty.wait(lambda: faulty.when(State.IDLE, after=thinking) is not None, 5)
    idle = faulty.when(State.IDLE, after=thinking)
    assert idle is not None
    assert 1.4 <= idle - thinking < 2.5
    assert any("no reply" in e.get("message", "") for e in faulty.events)


@pytest.mark.parametrize("code", [4009, 5000, 123456])
async def test_error_events_end_the_turn_and_keep_the_session(faulty: Run, code: int) -> None:
    """An error event mid-turn: an error event with its logid, idle, same connection."""
    arm(faulty, error_on_complete=code)
    await faulty.wait(lambda: any(e["type"] == "error" for e in faulty.events), 15)
    [error] = [e for e in faulty.events if e["type"] == "error"]
    assert error["code"] == code
    assert error["logid"]
    await faulty.wait(lambda: faulty.states[-1][1] is State.IDLE, 5)
    assert len(faulty.sim.connections) == 1


@pytest.mark.parametrize(
    "fault",
    [{"malformed_frame": True}, {"unknown_event": True}, {"delay_s": 0.05}],
)
async def test_odd_frames_and_a_slow_server_still_give_a_turn(
    faulty: Run, fault: dict[str, Any]
) -> None:
    """A non-JSON frame, an unknown event type or a slow server: the turn completes."""
    arm(faulty, **fault)
    await faulty.wait(lambda: any(e["type"] == "turn" for e in faulty.events), 30)
    assert len(faulty.sim.connections) == 1


async def test_an_oversized_frame_costs_one_reconnect(faulty: Run) -> None:
    """A frame over the size bound closes that session; a new one opens at once."""
    arm(faulty, oversized_frame_bytes=5 * 1024 * 1024)
    await faulty.wait(lambda: len(faulty.sim.connections) >= 2, 15)
    faulty.sim.faults = Faults()
    await faulty.wait(lambda: faulty.states[-1][1] is State.IDLE, 5)


@pytest.mark.parametrize("status", [403, 503])
async def test_a_refused_handshake_is_retried_until_it_works(faulty: Run, status: int) -> None:
    """403 or 5xx at the handshake: the logid logged, retried with backoff; once Coze takes
    the session again, the device is idle within the next retry. (A 401 asks the token
    source for a fresh token: tests/test_login.py for OAuth; a refused personal access
    token stops the daemon with what to do, as nothing can renew it.)"""
    await faulty.wait(lambda: faulty.when(State.IDLE) is not None, 10)
    arm(faulty, reject_handshake=status, close_after_audio_deltas=1)
    await faulty.wait(lambda: faulty.when(State.CONNECTING, after=0.1) is not None, 15)
    await asyncio.sleep(1.5)  # a few refused attempts
    assert len(faulty.sim.connections) == 1
    loop = asyncio.get_running_loop()
    back = loop.time()
    faulty.sim.faults = Faults()
    await faulty.wait(lambda: faulty.when(State.IDLE, after=back) is not None, 10)
    recovered = faulty.when(State.IDLE, after=back)
    assert recovered is not None
    print(f"HTTP {status}: idle {recovered - back:.2f} s after Coze took sessions again")
    assert recovered - back < 5.0  # the backoff's second and third steps: 2 s, 4 s + jitter


async def test_a_name_that_does_not_resolve_is_retried_and_said_plainly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DNS failure: the daemon stays up in 'connecting', says so, and keeps retrying."""
    caplog.set_level("INFO")
    async with Simulator() as sim:
        config = config_from_mapping(
            {
                "coze": {
                    "api_base": sim.api_base,
                    "ws_base": "ws://coze-edge.invalid",
                    "bot_id": "7",
                },
                "auth": {"method": "pat"},
                "device": {"id": "42"},
                "state_dir": str(tmp_path),
                "audio": {"backend": "file", "file_input": str(DATA / "silence-2s.wav")},
            },
            env={},
        )
        states: list[State] = []
        daemon = Daemon(
            config,
            tokens=StaticToken("sim-pat"),
            on_status=lambda status: states.append(status.state),
            env={},
        )
        stop = asyncio.Event()
        task = asyncio.create_task(supervise(daemon.services(), stop=stop, signals=()))
        await asyncio.sleep(3.5)
        assert not task.done()  # still running
        stop.set()
        await task
    failures = [r.getMessage() for r in caplog.records if "cannot resolve" in r.getMessage()]
    assert len(failures) >= 2, failures  # at once, then after about a second
    assert "coze-edge.invalid (DNS:" in failures[0]
    assert set(states) <= {State.STARTING, State.CONNECTING}
