"""
Fixtures that several test files use; the helpers behind them are in tests/support.

* ``sim``: the bundled Coze simulator on a free loopback port. Its options come from
  ``@pytest.mark.simulator(...)`` (``Simulator``'s keyword arguments).
* ``daemon``: a real daemon in this process against ``sim``, with the weather question as
  its microphone (file backend, as fast as it goes); a ``DaemonRun`` records its states and
  events. Config sections from ``@pytest.mark.daemon(...)`` are merged in.
* ``cli_config``: a config file for the real ``coze-edge`` command against ``sim``
  (``tests.support.cli.write_cli_config``), with ``@pytest.mark.daemon(...)``'s sections;
  start it with ``running_cli(cli_config)`` or ``start_cli("run", "-c", str(cli_config))``.
* ``broker``: a real mosquitto on a free loopback port.
* ``pulse`` / ``echoing_pulse``: a private PulseAudio server with null sinks, without and
  with an echo path from the speaker to the microphone; one at a time.

Each test gets its own (function scope): a test may break them (faults, restarts);
tests/adapters/test_sound_devices.py overrides ``pulse`` with one for the module. Of
several markers with one name, the closest wins: a test's own replaces its module's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from coze_edge.simulator import Simulator
from tests.support.cli import write_cli_config
from tests.support.daemon import ONE_QUESTION, DaemonRun, daemon_config, running_daemon
from tests.support.mosquitto import Broker, running_broker
from tests.support.pulseaudio import PulseEnv, pulse_server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "simulator(**options): keyword arguments for the `sim` fixture's Simulator"
    )
    config.addinivalue_line(
        "markers",
        "daemon(**sections): config sections merged into the `daemon` and `cli_config` fixtures'",
    )


def marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """The keyword arguments of the closest ``@pytest.mark.NAME`` (the test's own, else its
    class's or module's ``pytestmark``)."""
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    """The bundled Coze simulator on loopback; options from @pytest.mark.simulator(...)."""
    async with Simulator(**marker_kwargs(request, "simulator")) as simulator:
        yield simulator


@pytest.fixture
async def daemon(
    sim: Simulator, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[DaemonRun]:
    """A real daemon in this process against ``sim``, the weather question as microphone;
    config sections from @pytest.mark.daemon(...). Stopped after the test."""
    sections = marker_kwargs(request, "daemon")
    audio = {**ONE_QUESTION, **sections.pop("audio", {})}
    config = daemon_config(sim, tmp_path, audio=audio, **sections)
    async with running_daemon(config) as run:
        yield run


@pytest.fixture
def cli_config(sim: Simulator, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A config file for the real ``coze-edge`` command against ``sim`` (its default token);
    sections from @pytest.mark.daemon(...). Run it with ``running_cli(cli_config)``."""
    return write_cli_config(tmp_path, sim, **marker_kwargs(request, "daemon"))


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A real mosquitto on a free loopback port."""
    async with running_broker(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[PulseEnv]:
    """A private PulseAudio server with null sinks; this process's PortAudio uses it."""
    with pulse_server(tmp_path / "pulse") as env:
        yield env


@pytest.fixture
def echoing_pulse(tmp_path: Path) -> Iterator[PulseEnv]:
    """Everything the speaker plays also reaches the microphone, 40 ms later."""
    with pulse_server(tmp_path / "pulse", echo_path=True) as env:
        yield env
