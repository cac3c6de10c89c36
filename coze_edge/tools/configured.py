"""The toolbox the config asks for (``tools``, ``homeassistant``), checked at start."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from coze_edge import __version__
from coze_edge.config import Config, read_secret
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
    tools: list[Tool] = []
    problems: list[tuple[str, str]] = []
    settings = config.tools
    if settings.builtin:
        tools += builtin_tools(device, name=config.device.name, version=__version__)
    ha = config.homeassistant
    if ha.url is not None:
        path_key = "homeassistant.token_file"
        try:
            token = read_secret(ha.token_file, HA_CREDENTIAL, env=env)
        except ConfigError as exc:  # it names the credential; say which key too
            problems += [(path_key, message) for _, message in exc.problems]
            token = None
        else:
            if token is None:
                problems.append(
                    (path_key, f"Home Assistant needs a long-lived access token: set {path_key}")
                )
        if token is not None:
            register_secret(token)
            client = HomeAssistant(
                ha.url,
                token,
                ha.exposure(),
                timeout_s=settings.deadline_ms / 1000 * HA_SHARE_OF_DEADLINE,
                ca_file=ha.ca_file,
            )
            tools += client.tools()
    for spec in settings.command_specs():
        problem = executable_problem(spec.argv[0])
        if problem is not None:
            problems.append(("tools.commands", f"{spec.name}: {problem}"))
            continue
        command = CommandTool(
            spec.name,
            spec.argv,
            timeout_s=settings.command_timeout_ms / 1000,
            max_output_bytes=settings.max_output_bytes,
            env=env,
        )
        tools.append(command.tool())
    if problems:
        raise ConfigError(problems)
    toolbox = Toolbox(tools, max_output_bytes=settings.max_output_bytes)
    if tools:
        log.info("device-side plugins: %s", ", ".join(tool.name for tool in tools))
    return toolbox
