"""The toolbox the config asks for (``tools``, ``homeassistant``), checked at start; and
its declarations for Coze's plugin editor (``coze-edge tools``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from coze_edge import __version__
from coze_edge.config import Config, read_secret
from coze_edge.core.commands import Command
from coze_edge.core.status import DeviceStatus, State
from coze_edge.core.tools import ToolError
from coze_edge.errors import ConfigError
from coze_edge.logs import register_secret
from coze_edge.tools import Tool, Toolbox
from coze_edge.tools.builtin import Device, builtin_tools
from coze_edge.tools.command import CommandTool, executable_problem
from coze_edge.tools.homeassistant import HomeAssistant

log = logging.getLogger(__name__)

HA_CREDENTIAL = "homeassistant_token"
"""The systemd credential that may hold Home Assistant's token."""

HA_SHARE_OF_DEADLINE = 0.8
"""A Home Assistant request gets this much of the tool deadline: its own timeout, worded
for the bot, comes before the deadline's."""


def configured_toolbox(config: Config, device: Device, env: Mapping[str, str]) -> Toolbox:
    """
    The tools ``config`` offers, acting on ``device``. Reads Home Assistant's token (and
    masks it in every log line from then on) and checks each command tool's program; raises
    ConfigError listing what is missing.
    """
    problems: list[tuple[str, str]] = []
    token = None
    if config.homeassistant.url is not None:
        key = "homeassistant.token_file"
        try:
            token = read_secret(config.homeassistant.token_file, HA_CREDENTIAL, env=env)
        except ConfigError as exc:  # it names the credential; say which key too
            problems += [(key, message) for _, message in exc.problems]
        else:
            if token is None:
                problems.append((key, f"Home Assistant needs a long-lived access token: set {key}"))
        if token is not None:
            register_secret(token)
        ca_file = config.homeassistant.ca_file
        if ca_file is not None and not ca_file.is_file():
            problems.append(("homeassistant.ca_file", f"{ca_file} is not a file"))
    for spec in config.tools.command_specs():
        problem = executable_problem(spec.argv[0])
        if problem is not None:
            problems.append(("tools.commands", f"{spec.name}: {problem}"))
    if problems:
        raise ConfigError(problems)
    tools = _assemble(config, device, token or "", env)
    if tools:
        log.info("device-side plugins: %s", ", ".join(tool.name for tool in tools))
    return Toolbox(tools, max_output_bytes=config.tools.max_output_bytes)


def tool_declarations(config: Config) -> list[dict[str, Any]]:
    """The tools ``config`` offers, as Coze's plugin editor asks for them: name, description
    and parameters (JSON schema). Reads no secret, runs nothing."""
    return Toolbox(_assemble(config, _Undeclared(), "", {})).declarations()


def _assemble(config: Config, device: Device, token: str, env: Mapping[str, str]) -> list[Tool]:
    settings, ha = config.tools, config.homeassistant
    tools: list[Tool] = []
    if settings.builtin:
        tools += builtin_tools(device, name=config.device.name, version=__version__)
    if ha.url is not None:
        client = HomeAssistant(
            ha.url,
            token,
            ha.exposure(),
            timeout_s=settings.deadline_ms / 1000 * HA_SHARE_OF_DEADLINE,
            ca_file=ha.ca_file,
        )
        tools += client.tools()
    for spec in settings.command_specs():
        command = CommandTool(
            spec.name,
            spec.argv,
            timeout_s=settings.command_timeout_ms / 1000,
            max_output_bytes=settings.max_output_bytes,
            env=env,
        )
        tools.append(command.tool())
    return tools


class _Undeclared:
    """The device of tools that are only declared, never run."""

    async def carry_out(self, command: Command) -> None:
        raise ToolError("not running")

    def device_status(self) -> DeviceStatus:
        return DeviceStatus(State.STARTING)
