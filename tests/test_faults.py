"""Faults injected in the simulator: the daemon survives each, within a recovery bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.core.status import State
from coze_edge.simulator import Faults, Simulator
from tests.support.daemon import DaemonRun, daemon_config, running_daemon
from tests.support.data import DATA

# The `daemon` fixture: the daemon in-process against `sim`, one question as its microphone.
pytestmark = [
    pytest.mark.simulator(reply_speed=6.0),
    pytest.mark.daemon(coze={"reply_timeout_ms": 1500}),
]


def arm(sim: Simulator, **faults: Any) -> None:
    sim.faults = Faults(**faults)


async def test_socket_closed_mid_reply_reconnects_within_a_second(
    sim: Simulator, daemon: DaemonRun
) -> None:
    """The socket dies mid-reply: playback stops, a new session is open within 1 s, idle."""
    arm(sim, close_after_audio_deltas=3)
    await daemon.wait(lambda: len(sim.connections) == 2, 15)
    dropped = daemon.when(State.CONNECTING, after=0.1)
    assert dropped is not None
    await daemon.wait(lambda: daemon.when(State.IDLE, after=dropped) is not None, 5)
    recovered = daemon.when(State.IDLE, after=dropped)
    assert recovered is not None
    print(f"recovered from a mid-reply drop in {(recovered - dropped) * 1000:.0f} ms")
    assert recovered - dropped < 1.0
    assert any(e["type"] == "error" for e in daemon.events)


async def test_a_silent_server_ends_the_turn_at_the_reply_timeout(
    sim: Simulator, daemon: DaemonRun
) -> None:
    """No reply: after coze.reply_timeout_ms the device is idle again, with an error."""
    arm(sim, silent=True)
    await daemon.wait(lambda: daemon.when(State.THINKING) is not None, 15)
    thinking = daemon.when(State.THINKING)
    assert thinking is not None
    await daemon.wait(lambda: daemon.when(State.IDLE, after=thinking) is not None, 5)
    idle = daemon.when(State.IDLE, after=thinking)
    assert idle is not None
    assert 1.4 <= idle - thinking < 2.5
    assert any("no reply" in e.get("message", "") for e in daemon.events)


@pytest.mark.parametrize("code", [4009, 5000, 123456])
async def test_error_events_end_the_turn_and_keep_the_session(
    sim: Simulator, daemon: DaemonRun, code: int
) -> None:
    """An error event mid-turn: an error event with its logid, idle, same connection."""
    arm(sim, error_on_complete=code)
    await daemon.wait(lambda: any(e["type"] == "error" for e in daemon.events), 15)
    [error] = [e for e in daemon.events if e["type"] == "error"]
    assert error["code"] == code
    assert error["logid"]
    await daemon.wait(lambda: daemon.states[-1][1] is State.IDLE, 5)
    assert len(sim.connections) == 1


@pytest.mark.parametrize(
    "fault",
    [{"malformed_frame": True}, {"unknown_event": True}, {"delay_s": 0.05}],
)
async def test_odd_frames_and_a_slow_server_still_give_a_turn(
    sim: Simulator, daemon: DaemonRun, fault: dict[str, Any]
) -> None:
    """A non-JSON frame, an unknown event type or a slow server: the turn completes."""
    arm(sim, **fault)
    await daemon.wait(lambda: any(e["type"] == "turn" for e in daemon.events), 30)
    assert len(sim.connections) == 1


async def test_an_oversized_frame_costs_one_reconnect(sim: Simulator, daemon: DaemonRun) -> None:
    """A frame over the size bound closes that session; a new one opens at once."""
    arm(sim, oversized_frame_bytes=5 * 1024 * 1024)
    await daemon.wait(lambda: len(sim.connections) >= 2, 15)
    sim.faults = Faults()
    await daemon.wait(lambda: daemon.states[-1][1] is State.IDLE, 5)


@pytest.mark.parametrize("status", [403, 503])
async def test_a_refused_handshake_is_retried_until_it_works(
    sim: Simulator, daemon: DaemonRun, status: int
) -> None:
    """403 or 5xx at the handshake: the logid logged, retried with backoff; once Coze takes
    the session again, the device is idle within the next retry. (A 401 asks the token
    source for a fresh token: tests/test_login.py for OAuth; a refused personal access
    token stops the daemon with what to do, as nothing can renew it.)"""
    await daemon.wait(lambda: daemon.when(State.IDLE) is not None, 10)
    arm(sim, reject_handshake=status, close_after_audio_deltas=1)
    await daemon.wait(lambda: daemon.when(State.CONNECTING, after=0.1) is not None, 15)
    await asyncio.sleep(1.5)  # a few refused attempts
    assert len(sim.connections) == 1
    loop = asyncio.get_running_loop()
    back = loop.time()
    sim.faults = Faults()
    await daemon.wait(lambda: daemon.when(State.IDLE, after=back) is not None, 10)
    recovered = daemon.when(State.IDLE, after=back)
    assert recovered is not None
    print(f"HTTP {status}: idle {recovered - back:.2f} s after Coze took sessions again")
    assert recovered - back < 5.0  # the backoff's second and third steps: 2 s, 4 s + jitter


async def test_a_name_that_does_not_resolve_is_retried_and_said_plainly(
    tmp_path: Path, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """DNS failure: the daemon stays up in 'connecting', says so, and keeps retrying."""
    caplog.set_level("INFO")
    config = daemon_config(
        sim,
        tmp_path,
        coze={"ws_base": "wss://coze-edge.invalid"},
        audio={"backend": "file", "file_input": str(DATA / "silence-2s.wav")},
    )
    async with running_daemon(config) as run:
        await asyncio.sleep(3.5)
        assert not run.task.done()  # still running
    states = [state for _, state, _ in run.states]
    failures = [r.getMessage() for r in caplog.records if "cannot resolve" in r.getMessage()]
    assert len(failures) >= 2, failures  # at once, then after about a second
    assert "coze-edge.invalid (DNS:" in failures[0]
    assert set(states) <= {State.STARTING, State.CONNECTING}


class LateThenStuckMicrophone(FileMicrophone):
    """A microphone whose first block comes ``first_s`` after it opened (a sound server
    that started a moment before), and that delivers nothing after ``blocks`` blocks."""

    def __init__(self, path: Path, *, first_s: float, blocks: int) -> None:
        super().__init__(path, realtime=True)
        self._first_s = first_s
        self._blocks = blocks
        self.opened_at: float | None = None

    async def frames(self) -> AsyncIterator[bytes]:
        self.opened_at = asyncio.get_running_loop().time()
        await asyncio.sleep(self._first_s)
        delivered = 0
        async for block in super().frames():
            if delivered == self._blocks:
                await asyncio.Event().wait()  # stuck, as a dead device is
            delivered += 1
            yield block


async def test_a_microphone_is_healthy_while_its_first_block_is_late_not_once_it_stops(
    sim: Simulator, tmp_path: Path
) -> None:
    """The watchdog's question (systemd, and Home Assistant's audio problem): a first block
    that takes a while after the open is no problem; blocks that stop coming are."""
    microphone = LateThenStuckMicrophone(DATA / "utterance-weather.wav", first_s=1.0, blocks=5)

    def audio() -> tuple[Microphone, Speaker]:
        return microphone, FileSpeaker(tmp_path / "out.wav", rate=24000, realtime=False)

    config = daemon_config(
        sim, tmp_path, audio={"backend": "file", "file_input": str(microphone.path)}
    )
    async with running_daemon(config, audio=audio) as run:
        await run.wait(lambda: microphone.opened_at is not None, 10)
        conversation = run.daemon.conversation
        assert conversation is not None
        assert conversation.audio_healthy(within_s=0.6)  # opened, nothing yet
        await asyncio.sleep(0.5)
        assert conversation.audio_healthy(within_s=0.6)
        await run.wait(lambda: microphone.captured_at is not None, 5)
        await asyncio.sleep(0.3 + 0.7)  # its 5 blocks (300 ms), then nothing
        assert not conversation.audio_healthy(within_s=0.6)
