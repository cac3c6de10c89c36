"""
scripts/ha-check: the daemon against a real Home Assistant (what ``scripts/ha-check``
runs, with the Home Assistant it installed; outside scripts/test: it needs PyPI once and
takes minutes).

One run: a mosquitto and the Coze simulator on loopback, a stand-in for PyPI's JSON API,
a fresh Home Assistant configuration onboarded through its REST API (a user, a token) with
MQTT set up through MQTT's own config flow, and the real ``coze-edge run`` as device
"kitchen" (its microphone: "Okay Nabu, what's the weather like today?", fed as fast as it
goes, the wake word configured as alexa so nothing happens until Home Assistant picks
okay_nabu). Then each check in CHECKS, in order, each printed with its result and time;
exit 0 when all pass.

Home Assistant is watched through its REST API (states, services) and its websocket API
(every state change of the device's entities is recorded, so "the first state after the
restart" is a question with an answer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from coze_edge import __version__
from coze_edge.core.status import Topics
from coze_edge.errors import EXIT_RESTART
from coze_edge.simulator import Simulator, ToolCallTurn
from tests.support.cli import start_cli, write_cli_config
from tests.support.data import DATA
from tests.support.mosquitto import Broker, mqtt_publish, running_broker
from tests.support.ports import free_port
from tests.support.pypi import FakePypi, fake_pypi

DEVICE_ID = "5551234"
"""What tests.support.cli.write_cli_config names the device (its name: kitchen)."""
TOPICS = Topics(f"coze-edge/{DEVICE_ID}")
TRANSCRIPT = "今天天气真不错"
"""What the simulator hears in any speech."""
WAIT_S = 60.0
LAMP = "input_boolean.hall_lamp"
"""What the bot switches in ha_tool_call (a helper: this Home Assistant has no lights)."""
"""How long one thing may take to show in Home Assistant (a start of it takes longer)."""

ENTITIES = {
    "sensor.kitchen_state": "idle",
    "sensor.kitchen_last_transcript": None,
    "sensor.kitchen_last_reply": None,
    "sensor.kitchen_last_turn_latency": None,
    "event.kitchen_activity": None,
    "sensor.kitchen_login_code": "unknown",
    "binary_sensor.kitchen_coze_connection": "on",
    "sensor.kitchen_last_error": "unknown",
    "sensor.kitchen_started": None,
    "sensor.kitchen_coze_reconnects": "0",
    "sensor.kitchen_mqtt_reconnects": "0",
    "binary_sensor.kitchen_audio": "off",
    "sensor.kitchen_version": __version__,
    "switch.kitchen_microphone_mute": "off",
    "number.kitchen_volume": "100",
    "select.kitchen_wake_word": "alexa",
    "select.kitchen_turn_detection": "client_interrupt",
    "button.kitchen_listen": None,
    "button.kitchen_cancel": None,
    "button.kitchen_new_conversation": None,
    "button.kitchen_restart": None,
    "text.kitchen_say": None,
    "notify.kitchen_announce": None,
    "update.kitchen_software": "on",
}
"""Every entity the device announces, and its state right after discovery (None: any but
unavailable)."""


class CheckFailed(Exception):
    """A check saw something else than it expected; the message says what."""


# --- Home Assistant --------------------------------------------------------------------------


@dataclass
class HomeAssistant:
    """``hass`` with a configuration of its own on a loopback port, and clients for it."""

    hass: Path
    config_dir: Path
    port: int = field(default_factory=free_port)
    token: str = ""
    changes: list[tuple[float, str, str, dict[str, Any]]] = field(default_factory=list)
    """Every state change of a kitchen entity: (when, entity_id, state, attributes)."""
    _process: asyncio.subprocess.Process | None = None
    _recorder: asyncio.Task[None] | None = None
    _http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: ha-check\n  time_zone: UTC\n  unit_system: metric\n  country: DE\n"
            "  latitude: 0\n  longitude: 0\n  elevation: 0\n  currency: EUR\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nconfig:\nonboarding:\n"
            f"input_boolean:\n  {LAMP.partition('.')[2]}:\n    name: Hall lamp\n"
            "logger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: info\n"
        )

    async def start(self) -> None:
        with (self.config_dir / "hass.log").open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                str(self.hass), "-c", str(self.config_dir), stdout=log, stderr=log
            )
        self._http = self._http or aiohttp.ClientSession()
        async with asyncio.timeout(300):  # the first start installs the frontend's packages
            while True:
                if self._process.returncode is not None:
                    raise CheckFailed(f"hass exited {self._process.returncode}: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with self._http.get(f"{self.url}/api/onboarding") as response:
                        if response.status in (200, 401):
                            break
                await asyncio.sleep(0.5)
        if self.token:
            await self._wait_running()
            self._recorder = asyncio.create_task(self._record())

    async def stop(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            self._recorder = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()

    async def close(self) -> None:
        await self.stop()
        if self._http is not None:
            await self._http.close()

    def log_tail(self, lines: int = 30) -> str:
        path = self.config_dir / "hass.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------ set-up

    async def onboard(self) -> None:
        """Onboarding's first step through the REST API (a user), then a token for it."""
        client_id = f"{self.url}/"
        user = await self._post(
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "ha-check",
                "username": "ha-check",
                "password": "ha-check-password",
                "language": "en",
            },
            auth=False,
        )
        assert self._http is not None
        form = {"grant_type": "authorization_code", "code": user["auth_code"]}
        async with self._http.post(
            f"{self.url}/auth/token", data={**form, "client_id": client_id}
        ) as response:
            if response.status != 200:
                raise CheckFailed(f"/auth/token: HTTP {response.status} {await response.text()}")
            self.token = (await response.json())["access_token"]
        await self._wait_running()
        self._recorder = asyncio.create_task(self._record())

    async def set_up_mqtt(self, broker_port: int) -> dict[str, Any]:
        """MQTT's own config flow, as the UI drives it: the broker step, then the entry."""
        flow: dict[str, Any] = await self._post(
            "/api/config/config_entries/flow", {"handler": "mqtt"}
        )
        while flow.get("type") == "form":
            answers = {"broker": "127.0.0.1", "port": broker_port}
            fields = {item["name"] for item in flow.get("data_schema", [])}
            flow = await self._post(
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {key: value for key, value in answers.items() if key in fields},
            )
        if flow.get("type") != "create_entry":
            raise CheckFailed(f"the MQTT config flow ended with {flow}")
        return flow

    async def _wait_running(self) -> None:
        async with asyncio.timeout(120):
            while (await self._get("/api/config")).get("state") != "RUNNING":  # noqa: ASYNC110 - polls another process
                await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ REST

    async def _post(self, path: str, body: dict[str, Any], *, auth: bool = True) -> Any:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        async with self._http.post(f"{self.url}{path}", json=body, headers=headers) as response:
            if response.status not in (200, 201):
                raise CheckFailed(f"POST {path}: HTTP {response.status} {await response.text()}")
            return await response.json()

    async def _get(self, path: str) -> Any:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self._http.get(f"{self.url}{path}", headers=headers) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise CheckFailed(f"GET {path}: HTTP {response.status} {await response.text()}")
            return await response.json()

    async def state(self, entity_id: str) -> dict[str, Any] | None:
        found = await self._get(f"/api/states/{entity_id}")
        return found if isinstance(found, dict) else None

    async def call(self, domain: str, service: str, **data: Any) -> None:
        await self._post(f"/api/services/{domain}/{service}", data)

    async def wait_state(
        self,
        entity_id: str,
        expected: str | Callable[[dict[str, Any]], bool],
        *,
        within: float = WAIT_S,
    ) -> dict[str, Any]:
        """The entity's state once it is ``expected`` (or passes it); CheckFailed after
        ``within`` seconds, saying what it was."""
        found: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(within):
                while True:
                    found = await self.state(entity_id)
                    if found is not None and (
                        found["state"] == expected if isinstance(expected, str) else expected(found)
                    ):
                        return found
                    await asyncio.sleep(0.2)
        except TimeoutError:
            shown = None if found is None else (found["state"], found["attributes"])
            raise CheckFailed(f"{entity_id} is {shown}, not as expected") from None

    # ------------------------------------------------------------------ websocket

    async def websocket(self) -> aiohttp.ClientWebSocketResponse:
        """An authenticated websocket connection (the caller closes it)."""
        assert self._http is not None
        ws = await self._http.ws_connect(f"{self.url}/api/websocket")
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": self.token})
        answer = await ws.receive_json()
        if answer.get("type") != "auth_ok":
            raise CheckFailed(f"websocket auth: {answer}")
        return ws

    async def ask(self, message: dict[str, Any]) -> Any:
        """One websocket command's result (``config/device_registry/list``, ...)."""
        ws = await self.websocket()
        try:
            await ws.send_json({"id": 1, **message})
            while True:
                answer = await ws.receive_json()
                if answer.get("id") == 1 and answer.get("type") == "result":
                    if not answer.get("success"):
                        raise CheckFailed(f"{message['type']}: {answer.get('error')}")
                    return answer.get("result")
        finally:
            await ws.close()

    async def long_lived_token(self, name: str = "coze-edge") -> str:
        """A long-lived access token (what ``homeassistant`` tools of the daemon need)."""
        token = await self.ask(
            {"type": "auth/long_lived_access_token", "client_name": name, "lifespan": 1}
        )
        return str(token)

    async def _record(self) -> None:
        ws = await self.websocket()
        try:
            await ws.send_json({"id": 1, "type": "subscribe_events", "event_type": "state_changed"})
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data).get("event") or {}
                data = event.get("data") or {}
                entity_id = str(data.get("entity_id", ""))
                new = data.get("new_state")
                if ".kitchen_" in entity_id and isinstance(new, dict):
                    self.changes.append(
                        (time.monotonic(), entity_id, new["state"], new["attributes"])
                    )
        finally:
            await ws.close()

    def states_of(self, entity_id: str, since: float = 0.0) -> list[tuple[str, dict[str, Any]]]:
        return [(s, a) for t, e, s, a in self.changes if e == entity_id and t >= since]


# --- the device ------------------------------------------------------------------------------


@dataclass
class Bench:
    """Everything one run has: Home Assistant, the broker, Coze, PyPI, the daemon."""

    work: Path
    ha: HomeAssistant
    broker: Broker
    sim: Simulator
    pypi: FakePypi
    config: Path = Path()
    daemon: asyncio.subprocess.Process | None = None

    def write_daemon_config(self) -> None:
        audio = {
            "file_input": str(DATA / "wake-okay-nabu-then-question.wav"),
            "file_realtime": False,
        }
        mqtt = {
            "host": "127.0.0.1",
            "port": self.broker.port,
            "check_updates": True,
            "updates_url": self.pypi.url,
            "configuration_url": f"{self.ha.url}/config/devices/dashboard",
            "suggested_area": "Kitchen",
        }
        (self.work / "daemon").mkdir(exist_ok=True)
        self.config = write_cli_config(
            self.work / "daemon", self.sim, audio=audio, mqtt=mqtt, wake={"word": "alexa"}
        )

    async def start_daemon(self) -> None:
        with (self.work / "daemon" / "daemon.log").open("ab") as log:
            self.daemon = await start_cli("run", "-c", str(self.config), stdout=log.fileno())

    async def wait_daemon(self, within: float = 10.0) -> int:
        assert self.daemon is not None
        async with asyncio.timeout(within):
            return await self.daemon.wait()

    async def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.returncode is None:
            self.daemon.send_signal(signal.SIGTERM)
            await self.wait_daemon()

    def daemon_log(self) -> str:
        return (self.work / "daemon" / "daemon.log").read_text(errors="replace")


# --- the checks --------------------------------------------------------------------------------

Check = Callable[[Bench], Awaitable[str]]


async def discovery(bench: Bench) -> str:
    """Every entity appears with its expected id and state, on one device in its area."""
    ha = bench.ha
    for entity_id, expected in ENTITIES.items():
        await ha.wait_state(
            entity_id,
            expected if expected is not None else (lambda s: s["state"] != "unavailable"),
        )
    devices = await ha.ask({"type": "config/device_registry/list"})
    [device] = [d for d in devices if ["mqtt", f"coze_edge_{DEVICE_ID}"] in d["identifiers"]]
    if device["area_id"] != "kitchen" or "config/devices" not in device["configuration_url"]:
        raise CheckFailed(f"device area/link: {device['area_id']}, {device['configuration_url']}")
    started = (await ha.wait_state("sensor.kitchen_started", lambda s: True))["state"]
    datetime.fromisoformat(started)
    return f"{len(ENTITIES)} entities, device in area Kitchen, started {started}"


async def say_box(bench: Bench) -> str:
    """The say box declares the limit Home Assistant allows (255)."""
    state = await bench.ha.wait_state("text.kitchen_say", lambda s: True)
    if state["attributes"].get("max") != 255:
        raise CheckFailed(f"text.kitchen_say attributes: {state['attributes']}")
    return "text.kitchen_say max 255"


async def error_event(bench: Bench) -> str:
    """A refused command fires the event entity (error) and becomes the last error."""
    await mqtt_publish(bench.broker, TOPICS.cmd("volume"), b"loud")
    fired = await bench.ha.wait_state(
        "event.kitchen_activity", lambda s: s["attributes"].get("event_type") == "error"
    )
    last = await bench.ha.wait_state("sensor.kitchen_last_error", lambda s: "loud" in s["state"])
    return f"event_type error ({fired['attributes'].get('command')}); last error {last['state']!r}"


async def wake_word_and_turn(bench: Bench) -> str:
    """The wake word select reaches the running daemon: 'Okay Nabu, ...' now wakes it, the
    event entity fires wake_word and turn, the last-turn sensors fill."""
    ha = bench.ha
    since = time.monotonic()
    await ha.call(
        "select", "select_option", entity_id="select.kitchen_wake_word", option="okay_nabu"
    )
    await ha.wait_state("sensor.kitchen_last_transcript", TRANSCRIPT)
    latency = await ha.wait_state(
        "sensor.kitchen_last_turn_latency", lambda s: s["state"] not in ("unknown", "unavailable")
    )
    reply = await ha.wait_state("sensor.kitchen_last_reply", lambda s: bool(s["state"]))
    await ha.wait_state(
        "event.kitchen_activity", lambda s: s["attributes"].get("event_type") == "turn"
    )
    fired = [a.get("event_type") for _, a in ha.states_of("event.kitchen_activity", since)]
    if fired[:1] != ["wake_word"] or "turn" not in fired:
        raise CheckFailed(f"the event entity fired {fired}")
    # Back to a word the microphone never says: no more turns from its file.
    await ha.call("select", "select_option", entity_id="select.kitchen_wake_word", option="alexa")
    await ha.wait_state("select.kitchen_wake_word", "alexa")
    return f"fired {fired}; reply {reply['state'][:20]!r}...; latency {latency['state']} ms"


async def ha_restart(bench: Bench) -> str:
    """After Home Assistant restarts, the last turn is still shown (retained), and the
    device is back."""
    ha = bench.ha
    await ha.stop()
    await ha.start()
    await ha.wait_state("sensor.kitchen_state", "idle")
    await ha.wait_state("sensor.kitchen_last_transcript", TRANSCRIPT)
    latency = await ha.wait_state(
        "sensor.kitchen_last_turn_latency", lambda s: s["state"] not in ("unknown", "unavailable")
    )
    return f"last transcript and latency ({latency['state']} ms) kept"


async def commands(bench: Bench) -> str:
    """Home Assistant's services reach the daemon: volume, mute, say, new conversation,
    turn detection."""
    ha, sim = bench.ha, bench.sim
    await ha.call("number", "set_value", entity_id="number.kitchen_volume", value=35)
    await ha.wait_state("number.kitchen_volume", lambda s: float(s["state"]) == 35)
    await ha.call("switch", "turn_on", entity_id="switch.kitchen_microphone_mute")
    await ha.wait_state("sensor.kitchen_state", lambda s: s["attributes"].get("muted") is True)
    await ha.call("switch", "turn_off", entity_id="switch.kitchen_microphone_mute")
    await ha.wait_state("switch.kitchen_microphone_mute", "off")
    await ha.call("text", "set_value", entity_id="text.kitchen_say", value="Hello from HA.")
    await _wait_said(sim, lambda texts: "Hello from HA." in texts)
    sessions = len(sim.connections)
    await ha.call("button", "press", entity_id="button.kitchen_new_conversation")
    await ha.wait_state("sensor.kitchen_coze_reconnects", lambda s: s["state"] not in ("0",))
    await ha.call(
        "select", "select_option", entity_id="select.kitchen_turn_detection", option="server_vad"
    )
    await ha.wait_state("select.kitchen_turn_detection", "server_vad")
    async with asyncio.timeout(WAIT_S):
        while _turn_detections(sim)[-1:] != ["server_vad"]:  # noqa: ASYNC110 - the simulator's record
            await asyncio.sleep(0.2)
    await ha.call(
        "select",
        "select_option",
        entity_id="select.kitchen_turn_detection",
        option="client_interrupt",
    )
    await ha.wait_state("select.kitchen_turn_detection", "client_interrupt")
    return (
        f"volume 35, mute on/off, say, new conversation ({len(sim.connections) - sessions} "
        "new Coze sessions), turn detection server_vad and back"
    )


async def notify(bench: Bench) -> str:
    """notify.send_message to the announce entity makes the speaker say a text longer
    than the say box takes."""
    message = " ".join(f"Sentence number {n} of the announcement." for n in range(1, 25))
    await bench.ha.call(
        "notify", "send_message", entity_id="notify.kitchen_announce", message=message
    )
    said = await _wait_said(bench.sim, lambda texts: " ".join(texts).endswith(message))
    return f"{len(message)} characters said in {len(said)} piece(s)"


async def restored_mute(bench: Bench) -> str:
    """Muted from Home Assistant, restarted with its restart button (exit 75, started
    again as systemd would): Home Assistant's first state of the switch is on."""
    ha = bench.ha
    await ha.call("switch", "turn_on", entity_id="switch.kitchen_microphone_mute")
    await ha.wait_state("switch.kitchen_microphone_mute", "on")
    await ha.call("button", "press", entity_id="button.kitchen_restart")
    code = await bench.wait_daemon(within=20)
    if code != EXIT_RESTART:
        raise CheckFailed(f"the daemon exited {code}, not {EXIT_RESTART}")
    await ha.wait_state("switch.kitchen_microphone_mute", "unavailable")
    since = time.monotonic()
    await bench.start_daemon()
    await ha.wait_state("sensor.kitchen_state", "idle")
    seen = [s for s, _ in ha.states_of("switch.kitchen_microphone_mute", since)]
    if not seen or seen[0] != "on" or "off" in seen:
        raise CheckFailed(f"the switch went {seen} after the restart")
    await ha.call("switch", "turn_off", entity_id="switch.kitchen_microphone_mute")
    await ha.wait_state("switch.kitchen_microphone_mute", "off")
    return f"exit {code}; the switch after it: {seen}"


async def update_entity(bench: Bench) -> str:
    """The update entity shows the installed version, PyPI's latest, and how to update."""
    state = await bench.ha.wait_state("update.kitchen_software", "on")
    attributes = state["attributes"]
    if (attributes.get("installed_version"), attributes.get("latest_version")) != (
        __version__,
        bench.pypi.version,
    ) or "pip install" not in str(attributes.get("release_summary")):
        raise CheckFailed(f"update.kitchen_software attributes: {attributes}")
    asked = len(bench.pypi.asked)
    return f"installed {__version__}, latest {bench.pypi.version}; PyPI asked {asked}x"


async def diagnostics(bench: Bench) -> str:
    """Version, audio health and reconnects as the diagnostic entities show them."""
    ha = bench.ha
    version = await ha.wait_state("sensor.kitchen_version", __version__)
    audio = await ha.wait_state("binary_sensor.kitchen_audio", "off")
    coze = await ha.wait_state("sensor.kitchen_coze_reconnects", lambda s: True)
    return (
        f"version {version['state']}, audio problem {audio['state']}, "
        f"Coze reconnects {coze['state']}"
    )


# --- the bot acts: Coze device-side plugins -----------------------------------------------------


async def ha_tool_call(bench: Bench) -> str:
    """The bot switches a lamp on: a turn the simulator answers with ha_call_service reaches
    Home Assistant through its REST API with the daemon's own long-lived token, and the
    output goes back to Coze."""
    ha, sim = bench.ha, bench.sim
    token = await ha.long_lived_token()
    token_file = bench.work / "daemon" / "ha-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = yaml.safe_load(bench.config.read_text())
    config["homeassistant"] = {
        "url": ha.url,
        "token_file": str(token_file),
        "entities": LAMP,
        "services": {"input_boolean": ["turn_on", "turn_off"]},
    }
    bench.config.write_text(yaml.safe_dump(config))
    await bench.stop_daemon()
    await bench.start_daemon()
    await ha.wait_state("sensor.kitchen_state", "idle")
    await ha.wait_state(LAMP, "off")
    sim.faults.tool_call = ToolCallTurn(
        "ha_call_service", {"entity_id": LAMP, "service": "turn_on"}
    )
    try:
        # The wake word select rebuilds the conversation, and its microphone file says it.
        await ha.call(
            "select", "select_option", entity_id="select.kitchen_wake_word", option="okay_nabu"
        )
        await ha.wait_state(LAMP, "on")
        reply = await ha.wait_state(
            "sensor.kitchen_last_reply", lambda s: s["state"].startswith("tool said:")
        )
    finally:
        sim.faults.tool_call = None
        await ha.call(
            "select", "select_option", entity_id="select.kitchen_wake_word", option="alexa"
        )
        await ha.wait_state("select.kitchen_wake_word", "alexa")
    log = bench.daemon_log()
    if "tool ha_call_service(" not in log or token in log:
        raise CheckFailed("the daemon's log lacks the tool call, or shows the token")
    return f"{LAMP} on; the bot heard {reply['state']!r}"


CHECKS: list[Check] = [
    discovery,
    say_box,
    update_entity,
    error_event,
    wake_word_and_turn,
    ha_restart,
    commands,
    notify,
    restored_mute,
    diagnostics,
    ha_tool_call,
]


# --- helpers -----------------------------------------------------------------------------------


def _said(sim: Simulator) -> list[str]:
    return [
        frame["data"]["text"]
        for conn in sim.connections
        for frame in conn.received
        if frame["event_type"] == "input_text.generate_audio"
    ]


async def _wait_said(sim: Simulator, done: Callable[[list[str]], bool]) -> list[str]:
    try:
        async with asyncio.timeout(WAIT_S):
            while not done(_said(sim)):  # noqa: ASYNC110 - the simulator's record
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise CheckFailed(f"Coze was asked to say {_said(sim)}") from None
    return _said(sim)


def _turn_detections(sim: Simulator) -> list[str]:
    return [
        frame["data"]["turn_detection"]["type"]
        for conn in sim.connections
        for frame in conn.received
        if frame["event_type"] == "chat.update"
    ]


# --- the run -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_in(work: Path, hass: Path) -> AsyncIterator[Bench]:
    ha = HomeAssistant(hass, work / "ha")
    async with (
        running_broker(work / "broker") as broker,
        Simulator(reply_speed=20.0) as sim,
        fake_pypi(version="99.0.0") as pypi,
    ):
        bench = Bench(work, ha, broker, sim, pypi)
        try:
            yield bench
        finally:
            await bench.stop_daemon()
            await ha.close()


async def timed(name: str, step: Callable[[], Awaitable[str]]) -> bool:
    started = time.monotonic()
    try:
        detail = await step()
    except (CheckFailed, AssertionError, TimeoutError, ValueError) as exc:
        took = time.monotonic() - started
        print(f"FAIL  {name} ({took:.1f} s): {exc or type(exc).__name__}", flush=True)
        return False
    print(f"ok    {name} ({time.monotonic() - started:.1f} s): {detail}", flush=True)
    return True


async def run(hass: Path, work: Path) -> int:
    started = time.monotonic()
    version = (await _output(str(hass), "--version")).strip()
    print(f"Home Assistant {version} ({hass}); coze-edge {__version__}; work in {work}")
    failed = 0
    async with bench_in(work, hass) as bench:
        ha = bench.ha
        ha.write_config()

        async def start() -> str:
            await ha.start()
            return f"listening on {ha.url}"

        async def onboard() -> str:
            await ha.onboard()
            return "user ha-check created, token issued"

        async def mqtt() -> str:
            entry = await ha.set_up_mqtt(bench.broker.port)
            return f"entry {entry['title']!r} (broker 127.0.0.1:{bench.broker.port})"

        async def daemon() -> str:
            bench.write_daemon_config()
            await bench.start_daemon()
            await ha.wait_state("sensor.kitchen_state", "idle")
            return "coze-edge run: idle in Home Assistant"

        for name, step in [
            ("Home Assistant starts", start),
            ("onboarding through the REST API", onboard),
            ("MQTT set up through its config flow", mqtt),
            ("the daemon starts", daemon),
        ]:
            if not await timed(name, step):
                print(ha.log_tail())
                return 1
        for check in CHECKS:
            summary = " ".join((check.__doc__ or "").split())
            name = summary.split(": ")[0].split(". ")[0].rstrip(".") or check.__name__
            if not await timed(f"{check.__name__}: {name}", functools.partial(check, bench)):
                failed += 1
        if failed:
            print(f"-- daemon log ({work}/daemon/daemon.log), last lines:")
            print("\n".join(bench.daemon_log().splitlines()[-20:]))
    took = time.monotonic() - started
    print(f"{len(CHECKS) - failed} of {len(CHECKS)} checks passed in {took:.0f} s")
    return 1 if failed else 0


async def _output(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    return out.decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--hass", required=True, type=Path, help="the hass to run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coze-edge-ha-check-"))
    # What the simulator and the stand-ins log goes to a file, not between the results.
    logging.basicConfig(filename=work / "ha-check.log", level=logging.INFO)
    code = asyncio.run(run(args.hass, work))
    if code == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif code:
        print(f"kept {work} (hass.log, daemon.log, the configs)")
    return code


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
