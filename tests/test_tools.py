"""
Device-side plugins through the real daemon: the simulator answers the spoken question with
a tool call (``Faults.tool_call``), the daemon runs the tool and submits its output, and the
simulator speaks "tool said: <output>". Home Assistant is a loopback fake of its REST API
(tests/support/homeassistant.py); command tools are real programs in real process groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coze_edge.core.status import State
from coze_edge.simulator import Simulator, ToolCallTurn
from tests.support.cli import running_cli, write_cli_config
from tests.support.daemon import ONE_QUESTION, DaemonRun, daemon_config, running_daemon
from tests.support.homeassistant import FakeHomeAssistant, fake_home_assistant
from tests.support.timing import MS

pytestmark = pytest.mark.simulator(reply_speed=40.0)

SAID = "tool said: "
HA_TOKEN = "haLongLivedToken0451xyz"
TURN_S = 20_000 * MS


@contextlib.asynccontextmanager
async def answering(
    sim: Simulator, tmp_path: Path, call: ToolCallTurn, **sections: Any
) -> AsyncIterator[DaemonRun]:
    """A daemon whose spoken question the bot answers with ``call``."""
    sim.faults.tool_call = call
    (tmp_path / "state").mkdir(exist_ok=True)
    audio = {**ONE_QUESTION, **sections.pop("audio", {})}
    config = daemon_config(sim, tmp_path / "state", audio=audio, **sections)
    async with running_daemon(config) as run:
        yield run


def submitted(sim: Simulator) -> list[str]:
    """Every tool output the simulator received, in order."""
    return [
        output["output"]
        for conn in sim.connections
        for frame in conn.received
        if frame.get("event_type") == "conversation.chat.submit_tool_outputs"
        for output in frame["data"]["tool_outputs"]
    ]


async def spoken_output(run: DaemonRun) -> str:
    """The output the bot said it got (the reply event's text, after 'tool said: ')."""
    await run.wait(lambda: any(e["type"] == "reply" for e in run.events), TURN_S)
    [reply] = [e["text"] for e in run.events if e["type"] == "reply"]
    assert reply.startswith(SAID), reply
    return str(reply[len(SAID) :])


async def tool_output(sim: Simulator, tmp_path: Path, call: ToolCallTurn, **sections: Any) -> Any:
    """The output of ``call`` as Coze got it and spoke it, parsed as JSON."""
    async with answering(sim, tmp_path, call, **sections) as run:
        said = await spoken_output(run)
        await run.wait(lambda: run.state is State.IDLE, TURN_S)
    assert submitted(sim) == [said]
    return json.loads(said)


def program(tmp_path: Path, name: str, body: str) -> Path:
    """An executable Python script (its own interpreter in the shebang)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- built-in tools


async def test_set_volume_changes_the_speaker_and_is_kept(sim: Simulator, tmp_path: Path) -> None:
    """set_volume acts like `ctl volume`: the published state and controls.json change."""
    call = ToolCallTurn("set_volume", {"volume": 30})

    async with answering(sim, tmp_path, call) as run:
        said = json.loads(await spoken_output(run))
        status = run.daemon.status.get_nowait()

    assert said == {"volume": 30}
    assert status.volume == 30
    assert json.loads((tmp_path / "state" / "controls.json").read_text())["volume"] == 30


async def test_a_relative_volume_change_starts_from_the_current_volume(
    sim: Simulator, tmp_path: Path
) -> None:
    """change: -25 from the configured 60 gives 35."""
    call = ToolCallTurn("set_volume", {"change": -25})

    said = await tool_output(sim, tmp_path, call, audio={"volume": 60})

    assert said == {"volume": 35}


async def test_mute_closes_the_microphone(sim: Simulator, tmp_path: Path) -> None:
    """mute is the privacy mute: the state says muted, and it is kept for the next start."""
    async with answering(sim, tmp_path, ToolCallTurn("mute", {})) as run:
        said = json.loads(await spoken_output(run))
        await run.wait(lambda: run.daemon.status.get_nowait().muted, TURN_S)

    assert said == {"muted": True}
    assert json.loads((tmp_path / "state" / "controls.json").read_text())["muted"] is True


@pytest.mark.parametrize(
    ("tool", "keys"),
    [
        ("get_volume", {"volume", "muted"}),
        ("device_status", {"name", "version", "state", "volume", "muted", "coze_connected"}),
        ("local_time", {"time", "weekday", "timezone"}),
    ],
)
async def test_the_reading_tools_answer_with_what_they_read(
    sim: Simulator, tmp_path: Path, tool: str, keys: set[str]
) -> None:
    """get_volume, device_status and local_time answer with their fields."""
    said = await tool_output(sim, tmp_path, ToolCallTurn(tool))

    assert set(said) == keys
    if tool == "device_status":
        assert said["state"] == "thinking"  # the bot asked in the middle of a turn
        assert said["coze_connected"] is True


async def test_stop_ends_the_reply_without_a_word(sim: Simulator, tmp_path: Path) -> None:
    """stop cancels the chat: no reply is spoken, the device is idle again."""
    async with answering(sim, tmp_path, ToolCallTurn("stop")) as run:
        conn = await first_connection(sim)
        await sim.wait_for(lambda: "conversation.chat.cancel" in conn.event_types(), TURN_S)
        await run.wait(lambda: run.state is State.IDLE, TURN_S)
        await asyncio.sleep(300 * MS)  # a reply, were one coming, would show by now

    assert [e for e in run.events if e["type"] in ("reply", "error")] == []
    assert submitted(sim) == []  # the chat was cancelled instead


async def first_connection(sim: Simulator) -> Any:
    await sim.wait_for(lambda: bool(sim.connections), TURN_S)
    return sim.connections[0]


async def test_a_call_of_a_tool_it_lacks_is_answered_with_an_error(
    sim: Simulator, tmp_path: Path
) -> None:
    """With the built-ins off, set_volume is not a tool here: the bot hears why."""
    said = await tool_output(
        sim, tmp_path, ToolCallTurn("set_volume", {"volume": 5}), tools={"builtin": False}
    )

    assert said == {"error": "this device has no tool 'set_volume'"}


async def test_arguments_that_are_not_json_are_refused_in_words(
    sim: Simulator, tmp_path: Path
) -> None:
    """A malformed arguments string gets an error output, not a crash."""
    said = await tool_output(sim, tmp_path, ToolCallTurn("set_volume", "{volume"))

    assert said == {"error": "the arguments are not JSON"}


# --------------------------------------------------------------------------- Home Assistant


def ha_sections(ha: FakeHomeAssistant, tmp_path: Path, token: str = HA_TOKEN) -> dict[str, Any]:
    token_file = tmp_path / "ha-token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return {
        "homeassistant": {
            "url": ha.url,
            "token_file": str(token_file),
            "entities": "light.kitchen sensor.outside_temperature lock.back_door",
            "services": {"light": ["turn_on", "turn_off"]},
        }
    }


@contextlib.asynccontextmanager
async def home() -> AsyncIterator[FakeHomeAssistant]:
    states = {
        "light.kitchen": "off",
        "sensor.outside_temperature": "12.5",
        "lock.front_door": "locked",
        "lock.back_door": "locked",
    }
    async with fake_home_assistant(token=HA_TOKEN, states=states) as ha:
        ha.states["sensor.outside_temperature"]["attributes"] = {
            "unit_of_measurement": "°C",
            "friendly_name": "Outside",
            "entity_picture": "x" * 500,  # long: left out
        }
        yield ha


async def test_turn_on_the_kitchen_light(sim: Simulator, tmp_path: Path) -> None:
    """ha_call_service turns an exposed light on with the token as a bearer header."""
    call = ToolCallTurn("ha_call_service", {"entity_id": "light.kitchen", "service": "turn_on"})

    async with home() as ha:
        said = await tool_output(sim, tmp_path, call, **ha_sections(ha, tmp_path))

    assert said == {"ok": True, "entity_id": "light.kitchen", "service": "turn_on", "state": "on"}
    assert ha.calls == [("light", "turn_on", {"entity_id": "light.kitchen"})]
    assert [r.authorization for r in ha.requests] == [f"Bearer {HA_TOKEN}"]


async def test_service_data_goes_with_the_call(sim: Simulator, tmp_path: Path) -> None:
    """data (brightness_pct) is sent beside the entity_id; 'light.turn_on' is fine too."""
    call = ToolCallTurn(
        "ha_call_service",
        {"entity_id": "light.kitchen", "service": "light.turn_on", "data": {"brightness_pct": 40}},
    )

    async with home() as ha:
        said = await tool_output(sim, tmp_path, call, **ha_sections(ha, tmp_path))

    assert said["ok"] is True
    assert ha.calls == [("light", "turn_on", {"brightness_pct": 40, "entity_id": "light.kitchen"})]


async def test_the_state_of_an_exposed_sensor(sim: Simulator, tmp_path: Path) -> None:
    """ha_get_state answers with the state and its short attributes."""
    call = ToolCallTurn("ha_get_state", {"entity_id": "sensor.outside_temperature"})

    async with home() as ha:
        said = await tool_output(sim, tmp_path, call, **ha_sections(ha, tmp_path))

    assert said["state"] == "12.5"
    assert said["attributes"] == {"unit_of_measurement": "°C", "friendly_name": "Outside"}
    assert [r.path for r in ha.requests] == ["/api/states/sensor.outside_temperature"]


async def test_the_exposed_entities_are_listed(sim: Simulator, tmp_path: Path) -> None:
    """ha_list_entities says what the bot may read and do, without asking Home Assistant."""
    async with home() as ha:
        said = await tool_output(
            sim, tmp_path, ToolCallTurn("ha_list_entities"), **ha_sections(ha, tmp_path)
        )

    assert said["entities"] == [
        {"entity_id": "light.kitchen", "services": ["turn_off", "turn_on"]},
        {"entity_id": "sensor.outside_temperature", "services": []},
        {"entity_id": "lock.back_door", "services": []},
    ]
    assert ha.requests == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            ToolCallTurn("ha_get_state", {"entity_id": "lock.front_door"}),
            "lock.front_door is not exposed to this assistant",
        ),
        (
            ToolCallTurn("ha_call_service", {"entity_id": "lock.front_door", "service": "unlock"}),
            "lock.front_door is not exposed to this assistant",
        ),
        (
            ToolCallTurn("ha_call_service", {"entity_id": "lock.back_door", "service": "unlock"}),
            "lock.back_door may be read but not controlled by this assistant",
        ),
        (
            ToolCallTurn("ha_call_service", {"entity_id": "light.kitchen", "service": "toggle"}),
            "toggle is not allowed on light.kitchen; allowed: turn_off, turn_on",
        ),
        (
            ToolCallTurn(
                "ha_call_service",
                {
                    "entity_id": "light.kitchen",
                    "service": "turn_on",
                    "data": {"area_id": "everywhere"},
                },
            ),
            "data may not name area_id: the call acts on entity_id only",
        ),
    ],
    ids=["unexposed-read", "unexposed-call", "read-only", "service-not-granted", "other-target"],
)
async def test_what_is_not_exposed_is_refused_before_home_assistant_hears_of_it(
    sim: Simulator, tmp_path: Path, call: ToolCallTurn, error: str
) -> None:
    """Unexposed entities and services are refused with a reason; no request is made."""
    async with home() as ha:
        said = await tool_output(sim, tmp_path, call, **ha_sections(ha, tmp_path))

    assert said == {"error": error}
    assert ha.requests == []


async def test_a_refused_token_is_explained(sim: Simulator, tmp_path: Path) -> None:
    """Home Assistant's 401 becomes words for the bot."""
    call = ToolCallTurn("ha_get_state", {"entity_id": "light.kitchen"})

    async with home() as ha:
        sections = ha_sections(ha, tmp_path, token="notTheRightToken99")
        said = await tool_output(sim, tmp_path, call, **sections)

    assert said == {"error": "Home Assistant refused this device's access token"}
    assert [r.authorization for r in ha.requests] == ["Bearer notTheRightToken99"]


async def test_a_slow_home_assistant_is_answered_before_the_deadline(
    sim: Simulator, tmp_path: Path
) -> None:
    """A request Home Assistant does not answer in time becomes an error the bot can say."""
    call = ToolCallTurn("ha_get_state", {"entity_id": "light.kitchen"})

    async with home() as ha:
        ha.delay_s = 2.0
        sections = ha_sections(ha, tmp_path)
        said = await tool_output(
            sim, tmp_path, call, tools={"deadline_ms": 1000, "command_timeout_ms": 1000}, **sections
        )

    assert said == {"error": "Home Assistant did not answer in time"}


# --------------------------------------------------------------------------- command tools

ECHO = """
import json, sys
args = json.load(sys.stdin)
print("weather in " + args["city"] + ": sunny")
"""


async def test_a_command_gets_the_arguments_on_stdin_and_its_stdout_is_the_output(
    sim: Simulator, tmp_path: Path
) -> None:
    """The program reads the call's arguments as JSON; what it prints goes back."""
    weather = program(tmp_path, "weather", ECHO)
    call = ToolCallTurn("weather", {"city": "Paris"})

    async with answering(
        sim, tmp_path, call, tools={"commands": {"weather": [str(weather)]}}
    ) as run:
        said = await spoken_output(run)

    assert said == "weather in Paris: sunny"


async def test_a_failing_command_is_an_error_with_what_it_printed(
    sim: Simulator, tmp_path: Path
) -> None:
    """A non-zero exit status is an error output; its stdout goes with it."""
    door = program(tmp_path, "door", "print('the door is jammed')\nraise SystemExit(3)\n")
    call = ToolCallTurn("garage_door", {})

    said = await tool_output(
        sim, tmp_path, call, tools={"commands": {"garage_door": f"{door} open"}}
    )

    assert said == {
        "error": "garage_door failed (exited with status 3)",
        "output": "the door is jammed",
    }


SLOW = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1], "w") as pids:
    pids.write(f"{child.pid}\\n")
time.sleep(60)
"""


def gone(pid: int) -> bool:
    """The process has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_a_slow_command_is_answered_at_the_deadline_and_killed_with_its_children(
    sim: Simulator, tmp_path: Path
) -> None:
    """At tools.deadline_ms Coze gets an error output; the program's group is killed."""
    pids = tmp_path / "pids"
    slow = program(tmp_path, "slow", SLOW)
    tools = {
        "deadline_ms": 1000,
        "command_timeout_ms": 1000,
        "commands": {"slow": [str(slow), str(pids)]},
    }

    async with answering(sim, tmp_path, ToolCallTurn("slow"), tools=tools) as run:
        said = json.loads(await spoken_output(run))
        asked = run.when(State.THINKING)
        answered = asyncio.get_running_loop().time()
        child = int(pids.read_text())
        await run.wait(lambda: gone(child), 5000 * MS)

    assert "within 1 s" in said["error"]
    assert asked is not None
    assert 1.0 <= answered - asked < 1.0 + 3000 * MS


SPILL = """
import sys
secret = open(sys.argv[1]).read().strip()
print("the token is " + secret + " password=hunter2hunter2")
print("oops: " + secret, file=sys.stderr)
raise SystemExit(1)
"""


@pytest.mark.simulator(reply_speed=40.0, pats=("cozePatSecret7788abc",))
async def test_what_a_tool_prints_reaches_coze_but_the_log_only_redacted(
    sim: Simulator, tmp_path: Path
) -> None:
    """A tool that prints the Home Assistant token and a password: Coze gets its output,
    while the log of the real `coze-edge run` shows neither, on stdout's path or stderr's."""
    token_file = tmp_path / "ha-token"
    token_file.write_text(HA_TOKEN)
    token_file.chmod(0o600)
    spill = program(tmp_path, "spill", SPILL)
    sim.faults.tool_call = ToolCallTurn("spill")
    config = write_cli_config(
        tmp_path,
        sim,
        pat="cozePatSecret7788abc",
        tools={"commands": {"spill": [str(spill), str(token_file)]}},
        homeassistant={"url": "http://127.0.0.1:9", "token_file": str(token_file)},
    )

    async with running_cli(config) as daemon:
        async with asyncio.timeout(TURN_S):
            await daemon.read_until("reply:")

    [output] = submitted(sim)
    assert HA_TOKEN in output  # what reached Coze is what the tool printed
    assert "hunter2hunter2" in output
    log = daemon.output
    assert "tool spill" in log
    assert "spill stderr: oops: ***" in log
    assert HA_TOKEN not in log
    assert "hunter2hunter2" not in log
