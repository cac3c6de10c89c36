"""
The real daemon in this process, against a Coze on loopback (normally the bundled simulator):

* :func:`daemon_settings` / :func:`daemon_config`: a config for a daemon that talks to it,
  one call for every test and script, with only what differs written at the call.
* :func:`running_daemon`: runs a config's daemon for a block, as ``coze-edge run`` does
  (without signal handlers), and records its states and events (:class:`DaemonRun`).
* :func:`supervised`: the bare run, for callers that record things their own way (the
  soak, whose memory must not grow with a record).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.config import Config, config_from_mapping
from coze_edge.core.status import DeviceStatus, State
from coze_edge.credentials import StaticToken, TokenSource
from coze_edge.daemon import Daemon
from coze_edge.supervisor import supervise
from tests.support.data import DATA

SIM_PAT = "sim-pat"
"""The personal access token the simulator accepts unless told otherwise."""

ONE_QUESTION: Mapping[str, Any] = {
    "backend": "file",
    "file_input": str(DATA / "utterance-weather.wav"),
    "file_realtime": False,
}
"""An ``audio`` section: the weather question as the microphone, read as fast as it goes."""


class CozeEndpoint(Protocol):
    """Where a daemon finds Coze: a ``Simulator``, or anything with the same two URLs."""

    @property
    def api_base(self) -> str: ...

    @property
    def ws_base(self) -> str: ...


def merged(settings: Mapping[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` with each of ``sections`` merged into the section of that name
    (a mapping, copied), or put in its place (anything else, such as ``state_dir``)."""
    result = dict(settings)
    for name, values in sections.items():
        if isinstance(values, Mapping):
            current = result.get(name)
            result[name] = {**(current if isinstance(current, Mapping) else {}), **values}
        else:
            result[name] = values
    return result


def daemon_settings(coze: CozeEndpoint, state_dir: Path, /, **sections: Any) -> dict[str, Any]:
    """
    A config mapping for a daemon that talks to ``coze``: bot 7, device 42, a personal
    access token (give it as ``StaticToken(SIM_PAT)``, or put ``auth.pat_file`` in), its
    state in ``state_dir``, no update check (tests never ask the real PyPI; a test of the
    check gives ``mqtt.check_updates`` and ``updates_url`` back). Each of ``sections`` is
    merged into its section, so
    ``daemon_settings(sim, tmp_path, audio=ONE_QUESTION, coze={"reply_timeout_ms": 1500})``
    keeps the simulator's URLs.
    """
    settings = {
        "coze": {"api_base": coze.api_base, "ws_base": coze.ws_base, "bot_id": "7"},
        "auth": {"method": "pat"},
        "device": {"id": "42"},
        "state_dir": str(state_dir),
        "mqtt": {"check_updates": False},
    }
    return merged(settings, sections)


def daemon_config(coze: CozeEndpoint, state_dir: Path, /, **sections: Any) -> Config:
    """:func:`daemon_settings` as a ``Config`` (no ``COZE_EDGE_*`` overrides)."""
    return config_from_mapping(daemon_settings(coze, state_dir, **sections), env={})


@contextlib.asynccontextmanager
async def supervised(daemon: Daemon) -> AsyncIterator[asyncio.Task[None]]:
    """``daemon``'s services under the supervisor for the block, then stopped and awaited
    (so a crash inside surfaces here)."""
    stop = asyncio.Event()
    task = asyncio.create_task(supervise(daemon.services(), stop=stop, signals=()))
    try:
        yield task
    finally:
        stop.set()
        await task


@dataclass
class DaemonRun:
    """A daemon running in this process, and what it said so far."""

    daemon: Daemon
    task: asyncio.Task[None]
    """The supervisor's task: done only if the daemon stopped by itself."""
    states: list[tuple[float, State, str | None]]
    """Each state (with its detail) when it began, on the event loop's clock."""
    events: list[dict[str, Any]]
    """Every event, as MQTT and the hooks get them."""

    @property
    def state(self) -> State:
        return self.states[-1][1] if self.states else State.STARTING

    def when(self, state: State, after: float = 0.0) -> float | None:
        """When the daemon first entered ``state`` at or after ``after``; None if not yet."""
        return next((t for t, s, _ in self.states if s is state and t >= after), None)

    async def wait(self, predicate: Callable[[], bool], within_s: float) -> None:
        """Return once ``predicate()`` holds; TimeoutError after ``within_s`` seconds."""
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - polling the recorded history
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_daemon(
    config: Config,
    *,
    tokens: TokenSource | None = None,
    audio: Callable[[], tuple[Microphone, Speaker]] | None = None,
) -> AsyncIterator[DaemonRun]:
    """
    ``config``'s daemon for the block, with ``tokens`` (default ``StaticToken(SIM_PAT)``)
    and the config's audio unless ``audio`` makes the microphone and speaker; stopped and
    awaited when the block ends.
    """
    loop = asyncio.get_running_loop()
    states: list[tuple[float, State, str | None]] = []
    events: list[dict[str, Any]] = []

    def on_status(status: DeviceStatus) -> None:
        if not states or states[-1][1:] != (status.state, status.detail):
            states.append((loop.time(), status.state, status.detail))

    daemon = Daemon(
        config,
        tokens=tokens or StaticToken(SIM_PAT),
        on_status=on_status,
        on_event=events.append,
        env={},
        audio=audio,
    )
    async with supervised(daemon) as task:
        yield DaemonRun(daemon, task, states, events)
