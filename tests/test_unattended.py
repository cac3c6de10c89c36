"""
Months alone: every path that needs no person, run through the real daemon (the CLI as a
subprocess, or in-process with the real adapters) against the simulator with the fault
switched on. Each test prints the recovery time it measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.coze_http import CozeHttp
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.adapters.stores import ConversationStore
from coze_edge.adapters.token_store import TokenStore
from coze_edge.adapters.wav import read_wav_as
from coze_edge.config import Config, config_from_mapping
from coze_edge.core.audio import AudioFormat
from coze_edge.core.commands import Say
from coze_edge.core.status import DeviceStatus, LoginPrompt, State
from coze_edge.daemon import Daemon, whose_conversation
from coze_edge.login import OAuthTokens
from coze_edge.simulator import Simulator, TokenFault
from coze_edge.supervisor import supervise
from tests.support.cli import start_cli
from tests.support.data import DATA

CLIENT = "1234.app.coze"
BOT = "7496347519799787557"
PAT = "sim-pat"  # the simulator's own
CODE_LINE = re.compile(r"enter the code:\s+(\S+)")


# --------------------------------------------------------------------------- the CLI


@dataclass
class Running:
    """A ``coze-edge`` subprocess whose output is read as it comes."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.lines)

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode(errors="replace"))

    async def line(self, pattern: str, within_s: float, after: int = 0) -> str:
        """The first output line (from index ``after``) matching ``pattern``."""
        async with asyncio.timeout(within_s):
            while True:
                for line in self.lines[after:]:
                    if re.search(pattern, line):
                        return line
                if self.proc.returncode is not None:
                    raise AssertionError(f"exited {self.proc.returncode}:\n{self.text}")
                await asyncio.sleep(0.02)

    async def stop(self) -> int:
        """SIGTERM (if it still runs); its exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.finish(5)

    async def finish(self, within_s: float) -> int:
        """Wait for it to end by itself; its exit code."""
        async with asyncio.timeout(within_s):
            code = await self.proc.wait()
            if self.reader is not None:
                await self.reader
        return code


async def cli(*args: str) -> Running:
    """``coze-edge ARGS``, its output read line by line as it comes."""
    proc = await start_cli(*args, env={"PYTHONUNBUFFERED": "1"})
    running = Running(proc)
    running.reader = asyncio.create_task(running.read())
    return running


@contextlib.asynccontextmanager
async def daemon_process(config: Path) -> AsyncIterator[Running]:
    running = await cli("run", "-c", str(config))
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            await running.stop()


async def ctl_status(config: Path) -> dict[str, Any]:
    running = await cli("ctl", "status", "--json", "-c", str(config))
    assert await running.finish(10) == 0, running.text
    status: dict[str, Any] = json.loads(running.lines[-1])
    return status


def write_config(
    tmp_path: Path, sim: Simulator, *, state_dir: Path | None = None, **sections: Any
) -> Path:
    data: dict[str, Any] = {
        "coze": {
            "api_base": sim.api_base,
            "ws_base": sim.ws_base,
            "bot_id": BOT,
            "connect_timeout_s": 1.0,
        },
        "auth": {"method": "device_code", "client_id": CLIENT},
        "device": {"id": "5551234"},
        "state_dir": str(state_dir or tmp_path / "state"),
        "audio": {
            "backend": "file",
            "file_input": str(DATA / "utterance-weather.wav"),
            "file_output": str(tmp_path / "out.wav"),
            "earcons": False,
        },
        "log": {"level": "info"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def pat_sections(tmp_path: Path) -> dict[str, Any]:
    pat = tmp_path / "pat"
    pat.write_text(PAT + "\n")
    pat.chmod(0o600)
    return {"auth": {"method": "pat", "pat_file": str(pat)}}


async def pending_code(sim: Simulator, within_s: float) -> str:
    async with asyncio.timeout(within_s):
        while not sim.pending_user_codes():  # noqa: ASYNC110 - the simulator's own record
            await asyncio.sleep(0.02)
    return sim.pending_user_codes()[-1]


# --------------------------------------------------------------------------- first boot


async def test_first_boot_with_coze_down_waits_then_logs_in_and_talks(tmp_path: Path) -> None:
    """No token and Coze unreachable for 10 s: the daemon stays up (connecting), asks for a
    code within seconds of Coze answering, shows it on ``ctl status``, and once approved
    holds a turn. It never exits."""
    async with Simulator(poll_interval_s=1, reply_speed=20.0) as sim:
        await sim.go_down()
        config = write_config(tmp_path, sim)
        async with daemon_process(config) as daemon:
            await daemon.line("cannot get a login code", 10)
            await asyncio.sleep(10 - 1)
            assert daemon.proc.returncode is None, daemon.text
            status = await ctl_status(config)
            assert status["state"] == "connecting"
            assert "cannot get a login code" in status["detail"]

            await sim.come_up()
            up = time.monotonic()
            code = await pending_code(sim, 10)
            asked = time.monotonic()
            await daemon.line("state: unauthorized", 5)
            status = await ctl_status(config)
            assert status["state"] == "unauthorized"
            assert status["login"]["user_code"] == code
            assert status["login"]["verification_url"].startswith(sim.api_base)

            sim.approve(code)
            approved = time.monotonic()
            await daemon.line(r"status_board: logged in$", 10)
            logged_in = time.monotonic()
            await daemon.line("turn:", 30)
            assert daemon.proc.returncode is None
            assert await daemon.stop() == 0, daemon.text
    print(
        f"code {asked - up:.2f} s after Coze came back; token "
        f"{logged_in - approved:.2f} s after approval"
    )
    assert asked - up < 8.0
    assert code not in daemon.text  # codes never go to the log
    assert daemon.text.count("token-keeper failed") == 1  # one warning per streak


async def test_a_login_beside_the_waiting_daemon_is_used_without_a_restart(
    tmp_path: Path,
) -> None:
    """``coze-edge login`` in another shell ends the daemon's wait within seconds: it
    adopts the token file the login wrote, with no restart."""
    async with Simulator(poll_interval_s=1, reply_speed=20.0) as sim:
        config = write_config(tmp_path, sim)
        async with daemon_process(config) as daemon:
            await daemon.line("state: unauthorized", 15)
            daemon_code = sim.pending_user_codes()
            login = await cli("login", "-c", str(config))
            line = await login.line("enter the code", 10)
            match = CODE_LINE.search(line)
            assert match is not None
            assert match.group(1) not in daemon_code
            sim.approve(match.group(1))
            assert await login.finish(10) == 0, login.text
            saved = time.monotonic()
            await daemon.line("logged in by another process", 10)
            await daemon.line("state: idle", 10)
            adopted = time.monotonic()
            await daemon.line("turn:", 30)
            assert daemon.proc.returncode is None
            assert await daemon.stop() == 0
    print(f"the daemon used the new login {adopted - saved:.2f} s after it was saved")
    assert adopted - saved < 5.0


async def test_login_refuses_early_and_clearly(tmp_path: Path) -> None:
    """An unwritable state_dir is found before a code is shown; a denied code ends the
    command; an unreachable Coze gets the network advice. No traceback in any."""
    async with Simulator(poll_interval_s=1) as sim:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        bad = write_config(tmp_path, sim, state_dir=blocker / "state")
        unwritable = await cli("login", "-c", str(bad))
        assert await unwritable.finish(10) == 78  # the config's state_dir cannot be made
        assert f"state_dir: cannot create {blocker / 'state'}" in unwritable.text
        assert sim.token_requests == 0
        assert not sim.pending_user_codes()

        good = write_config(tmp_path, sim)
        denied = await cli("login", "-c", str(good))
        code = CODE_LINE.search(await denied.line("enter the code", 10))
        assert code is not None
        sim.deny(code.group(1))
        assert await denied.finish(10) == 77
        assert "denied" in denied.text

        await sim.go_down()
        unreachable = await cli("login", "-c", str(good))
        assert await unreachable.finish(10) == 1
        assert "cannot reach Coze" in unreachable.text
        assert "check the network" in unreachable.text
    for run in (unwritable, denied, unreachable):
        assert "Traceback" not in run.text


# --------------------------------------------------------------------------- in-process


@dataclass
class Live:
    sim: Simulator
    daemon: Daemon
    states: list[tuple[float, DeviceStatus]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def seen(self, state: State, after: float = 0.0) -> float | None:
        return next((t for t, s in self.states if s.state is state and t >= after), None)

    async def wait(self, predicate: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - polling the recorded history
                await asyncio.sleep(0.01)


def in_process_config(tmp_path: Path, sim: Simulator, **sections: Any) -> Config:
    raw = yaml.safe_load(write_config(tmp_path, sim, **sections).read_text())
    return config_from_mapping(raw, env={})


@contextlib.asynccontextmanager
async def live_daemon(
    sim: Simulator,
    config: Config,
    *,
    tokens: Any = None,
    http: CozeHttp | None = None,
    audio: Callable[[], tuple[Microphone, Speaker]] | None = None,
) -> AsyncIterator[Live]:
    loop = asyncio.get_running_loop()
    live: Live | None = None

    def on_status(status: DeviceStatus) -> None:
        assert live is not None
        live.states.append((loop.time(), status))

    daemon = Daemon(
        config,
        tokens=tokens,
        http=http,
        on_status=on_status,
        on_event=lambda e: live.events.append(e) if live else None,
        env={},
        audio=audio,
    )
    live = Live(sim, daemon)
    stop = asyncio.Event()
    task = asyncio.create_task(supervise(daemon.services(), stop=stop, signals=()))
    try:
        yield live
    finally:
        stop.set()
        await task


async def logged_in(sim: Simulator, state_dir: Path, http: CozeHttp) -> None:
    def approve(prompt: LoginPrompt | None) -> None:
        if prompt is not None:
            sim.approve(prompt.user_code)

    tokens = OAuthTokens(http, TokenStore(state_dir), CLIENT, on_prompt=approve)
    async with asyncio.timeout(20):
        await tokens.token()


REFRESH_FAULTS = {
    "captive portal": TokenFault(503, "<html>Sign in to the Wi-Fi</html>", "text/html"),
    "rate limited": TokenFault(429, '{"code": 4013, "msg": "too many requests"}'),
    "request timeout": TokenFault(408, ""),
    "bad gateway": TokenFault(502, "Bad Gateway", "text/plain"),
    "slow": TokenFault.slow(delay_s=1.5),
}


@pytest.mark.parametrize("fault", list(REFRESH_FAULTS))
async def test_a_refresh_on_a_flaky_path_keeps_the_login(tmp_path: Path, fault: str) -> None:
    """The access token is refused while the token endpoint answers badly (twice): the
    refresh is retried with backoff, the refresh token is kept (on disk too), nobody is
    asked to log in, and the device talks again once the endpoint recovers."""
    async with Simulator(poll_interval_s=1, reply_speed=20.0) as sim:
        config = in_process_config(tmp_path, sim, coze={"read_timeout_s": 0.5})
        async with CozeHttp(sim.api_base, read_timeout=0.5) as http:
            await logged_in(sim, config.state_dir, http)
            store = TokenStore(config.state_dir)
            before = store.load()
            assert before is not None
            async with live_daemon(sim, config, http=http) as live:
                await live.wait(lambda: live.seen(State.IDLE) is not None, 15)
                failing = replace(REFRESH_FAULTS[fault], times=2, grants="refresh")
                sim.faults.token_fault = failing
                sim.expire_access_tokens()
                await sim.go_down()
                await sim.come_up()
                lost = asyncio.get_running_loop().time()
                await live.wait(lambda: failing.times == 0, 20)
                kept = store.load()
                assert kept is not None
                assert kept.refresh_token == before.refresh_token
                await live.wait(lambda: live.seen(State.IDLE, after=lost) is not None, 20)
                back = live.seen(State.IDLE, after=lost)
                assert back is not None
                assert live.daemon.login.get_nowait() is None
                assert not sim.pending_user_codes()
                done = live.daemon.submit(Say("hello again"))
                assert done is not None
                await live.wait(lambda: live.seen(State.SPEAKING, after=back) is not None, 10)
            after = store.load()
            assert after is not None
            assert after.refresh_token != before.refresh_token
    print(f"{fault}: talking again {back - lost:.2f} s after the token was refused")


async def test_a_dead_refresh_token_asks_for_a_new_login(tmp_path: Path) -> None:
    """invalid_grant is the one answer that means the login is gone: a code is shown."""
    async with Simulator(poll_interval_s=1) as sim:
        config = in_process_config(tmp_path, sim)
        async with CozeHttp(sim.api_base) as http:
            await logged_in(sim, config.state_dir, http)
            async with live_daemon(sim, config, http=http) as live:
                await live.wait(lambda: live.seen(State.IDLE) is not None, 15)
                sim.faults.token_fault = TokenFault.oauth("invalid_grant", grants="refresh")
                sim.expire_access_tokens()
                await sim.go_down()
                await sim.come_up()
                await live.wait(lambda: live.seen(State.UNAUTHORIZED) is not None, 15)
                prompt = live.daemon.login.get_nowait()
                assert prompt is not None
                assert prompt.user_code in sim.pending_user_codes()


@pytest.mark.parametrize("expires_in", [float("nan"), 900, "soon", -1, 1e30])
async def test_an_odd_expires_in_never_makes_the_keeper_spin(
    tmp_path: Path, expires_in: object
) -> None:
    """A NaN, relative, textual, negative or absurd expires_in: the token works, and in
    three seconds the keeper neither asks the endpoint again nor rewrites the file."""
    async with Simulator(poll_interval_s=1) as sim:
        sim.faults.token_expires_in = expires_in  # type: ignore[assignment]
        config = in_process_config(tmp_path, sim)
        async with CozeHttp(sim.api_base) as http:
            await logged_in(sim, config.state_dir, http)
            path = TokenStore(config.state_dir).path
            written = path.stat().st_mtime_ns
            requests = sim.token_requests
            async with live_daemon(sim, config, http=http) as live:
                await live.wait(lambda: live.seen(State.IDLE) is not None, 15)
                await asyncio.sleep(3)
            assert sim.token_requests == requests
            assert path.stat().st_mtime_ns == written


async def test_the_microphone_stays_closed_until_coze_answers(tmp_path: Path) -> None:
    """While the device waits for a login nothing reads the microphone, so it is not
    opened at all (no overruns every minute); it opens once the session is up."""
    opened: list[float] = []
    loop = asyncio.get_running_loop()

    class Watched(FileMicrophone):
        async def __aenter__(self) -> Watched:
            opened.append(loop.time())
            await super().__aenter__()
            return self

    async with Simulator(poll_interval_s=1) as sim:
        config = in_process_config(tmp_path, sim)

        def audio() -> tuple[Microphone, Speaker]:
            return (
                Watched(DATA / "silence-2s.wav", realtime=False),
                FileSpeaker(tmp_path / "out.wav", rate=24000, realtime=False),
            )

        async with (
            CozeHttp(sim.api_base) as http,
            live_daemon(sim, config, http=http, audio=audio) as live,
        ):
            await live.wait(lambda: live.seen(State.UNAUTHORIZED) is not None, 10)
            await asyncio.sleep(1.0)
            assert opened == []
            sim.approve(await pending_code(sim, 5))
            await live.wait(lambda: live.seen(State.IDLE) is not None, 15)
            await live.wait(lambda: bool(opened), 5)
    idle = live.seen(State.IDLE)
    assert idle is not None
    assert opened[0] >= idle


async def test_the_code_is_spoken_while_the_login_waits(tmp_path: Path) -> None:
    """auth.speak_code: the code is said on the speaker (the shipped clips), and again
    after speak_code_every_s."""
    async with Simulator(poll_interval_s=1) as sim:
        out = tmp_path / "spoken.wav"
        config = in_process_config(
            tmp_path,
            sim,
            auth={"speak_code": True, "speak_code_every_s": 30},
            audio={"file_output": str(out), "file_realtime": False},
        )
        async with (
            CozeHttp(sim.api_base) as http,
            live_daemon(sim, config, http=http) as live,
        ):
            await live.wait(lambda: live.seen(State.UNAUTHORIZED) is not None, 10)
            await live.wait(lambda: out.exists() and out.stat().st_size > 100_000, 10)
            await asyncio.sleep(0.5)
    pcm = read_wav_as(out, AudioFormat(24000, 1))
    spoken_s = len(pcm) / 48000
    print(f"{spoken_s:.1f} s of the code said on the speaker")
    assert 10 < spoken_s < 40


# --------------------------------------------------------------------------- Coze's side


async def test_a_conversation_coze_forgot_is_dropped_and_the_next_turn_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """conversation.json names a conversation Coze does not know (4002): one line, the
    id is dropped, a new conversation starts, and the turn completes."""
    async with Simulator(reply_speed=20.0) as sim:
        config = in_process_config(tmp_path, sim, **pat_sections(tmp_path))
        store = ConversationStore(config.state_dir, whose_conversation(config))
        store.save("7000000000000000001")
        async with live_daemon(sim, config) as live:
            await live.wait(lambda: live.seen(State.IDLE) is not None, 15)
            await live.wait(lambda: any(e["type"] == "turn" for e in live.events), 30)
        remembered = store.load()
    errors = [e for e in live.events if e["type"] == "error"]
    assert [e["code"] for e in errors] == [4002]
    idle, started = live.seen(State.IDLE), live.states[0][0]
    assert idle is not None
    print(f"idle in a new conversation {idle - started:.2f} s after the daemon started")
    assert remembered is not None
    assert remembered != "7000000000000000001"
    assert remembered in sim.known_conversations(BOT)
    assert caplog.text.count("does not know conversation") == 1


async def test_an_error_about_our_late_cancel_never_ends_the_new_turn(tmp_path: Path) -> None:
    """The user talks over a reply; the cancel arrives after the chat ended (4104, with
    the cancel as its origin): the new turn goes on and is answered."""
    async with Simulator(reply_speed=2.0) as sim:
        sim.faults.cancel_too_late = True
        config = in_process_config(
            tmp_path,
            sim,
            **pat_sections(tmp_path),
            audio={"file_input": str(DATA / "two-utterances.wav")},
        )
        async with live_daemon(sim, config) as live:
            await live.wait(lambda: sum(e["type"] == "turn" for e in live.events) == 1, 40)
    types = sim.connections[-1].event_types()
    assert types.count("conversation.chat.cancel") == 1
    assert types.count("input_audio_buffer.complete") == 2
    assert not [e for e in live.events if e["type"] == "error"]
    assert len(sim.connections) == 1


async def test_a_refused_bot_is_an_error_state_retried_slowly(tmp_path: Path) -> None:
    """Coze refuses the bot (4015): state error with the hint and logid in the log and on
    ``ctl status``, a new try only after coze.refused_retry_s, idle once it is published;
    ``doctor`` finds it too."""
    async with Simulator(reply_speed=20.0) as sim:
        sim.faults.bot_error = 4015
        config = write_config(
            tmp_path, sim, coze={"refused_retry_s": 2.0}, **pat_sections(tmp_path)
        )
        async with daemon_process(config) as daemon:
            await daemon.line("state: error", 15)
            refused = time.monotonic()
            status = await ctl_status(config)
            assert status["state"] == "error"
            assert "publish it as API in Coze" in status["detail"]
            assert "logid" in status["detail"]
            await asyncio.sleep(1.2)
            assert len(sim.connections) == 1  # no reconnect loop
            await sim.wait_for(lambda: len(sim.connections) == 2, 5)
            second = time.monotonic()
            sim.faults.bot_error = None
            await daemon.line("state: idle", 10)
            recovered = time.monotonic()

            doctor_config = write_config(tmp_path, sim, **pat_sections(tmp_path))
            sim.faults.bot_error = 4015
            doctor = await cli("doctor", "-c", str(doctor_config))
            assert await doctor.finish(30) != 0
    print(
        f"retried {second - refused:.2f} s after the refusal; idle "
        f"{recovered - second:.2f} s after that"
    )
    assert second - refused >= 1.5
    assert any(
        line.startswith("FAIL  coze ws") and "publish it as API" in line for line in doctor.lines
    ), doctor.text
    assert daemon.text.count("! coze-connection failed") == 1


# --------------------------------------------------------------------------- the device


async def test_corrupt_state_files_are_set_aside_and_the_daemon_starts(tmp_path: Path) -> None:
    """token.json garbage, bindings.json a number, conversation.json null, controls.json a
    directory: one line each, moved aside, and the daemon waits for a login."""
    async with Simulator(poll_interval_s=1) as sim:
        config = write_config(tmp_path, sim, device={"connector_id": "7000000000000000002"})
        state = tmp_path / "state"
        state.mkdir()
        (state / "token.json").write_bytes(b"\x00garbage")
        (state / "bindings.json").write_text("42")
        (state / "conversation.json").write_text("null")
        (state / "controls.json").mkdir()
        started = time.monotonic()
        async with daemon_process(config) as daemon:
            await daemon.line("state: unauthorized", 15)
            waiting = time.monotonic()
            await asyncio.sleep(0.5)
            assert await daemon.stop() == 0
    print(f"waiting for a login {waiting - started:.2f} s after start, files set aside")
    unusable = [line for line in daemon.lines if "is unusable" in line]
    assert len(unusable) == 4, daemon.text
    for name in ("token.json", "bindings.json", "conversation.json", "controls.json"):
        assert len(list(state.glob(f"{name}.corrupt-*"))) == 1, name


async def test_a_second_daemon_on_the_same_state_dir_exits_78(tmp_path: Path) -> None:
    """The second says which process holds the state directory and leaves the first (and
    its control socket) alone."""
    async with Simulator() as sim:
        config = write_config(
            tmp_path,
            sim,
            audio={"file_input": str(DATA / "silence-2s.wav")},
            **pat_sections(tmp_path),
        )
        async with daemon_process(config) as first:
            await first.line("state: idle", 15)
            started = time.monotonic()
            second = await cli("run", "-c", str(config))
            assert await second.finish(15) == 78
            print(f"the second daemon exited 78 after {time.monotonic() - started:.2f} s")
            assert f"another coze-edge (pid {first.proc.pid})" in second.text
            assert (await ctl_status(config))["state"] == "idle"
            assert first.proc.returncode is None
