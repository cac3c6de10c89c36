"""
The built-in tools (``tools.builtin``): the speaker itself, as the bot may control it.

| tool            | arguments                              | does                              |
| --------------- | -------------------------------------- | --------------------------------- |
| `get_volume`    | none                                   | the volume (0..100) and mute flag |
| `set_volume`    | `volume` 0..100, or `change` -100..100 | sets it (kept across restarts)    |
| `mute`          | `muted` (true: default, or false)      | closes (or opens) the microphone  |
| `stop`          | none                                   | ends the reply, says nothing more |
| `device_status` | none                                   | state, volume, mute, Coze link    |
| `local_time`    | none                                   | date, time and time zone          |

Each acts through the same commands as ``coze-edge ctl`` and MQTT, so Home Assistant sees the
change, and the controls are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, Protocol

from coze_edge.core.commands import Cancel, Command, Mute, SetVolume, Unmute
from coze_edge.core.status import DeviceStatus
from coze_edge.core.tools import BUILTIN_TOOLS, ToolError
from coze_edge.tools import Tool

NO_ARGUMENTS: Final = {"type": "object", "properties": {}}

NAMES: Final = BUILTIN_TOOLS


class Device(Protocol):
    """What the built-in tools act on (the daemon)."""

    async def carry_out(self, command: Command) -> None:
        """Carry out ``command`` as ``ctl`` would; ToolError when the device cannot now."""
        ...

    def device_status(self) -> DeviceStatus:
        """The state as published."""
        ...


def _integer(args: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = args.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ToolError(f"{key} must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ToolError(f"{key} must be from {low} to {high}, not {value:g}")
    return int(value)


def builtin_tools(
    device: Device,
    *,
    name: str,
    version: str,
    clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
) -> list[Tool]:
    """The built-in tools acting on ``device``; ``name`` and ``version`` are the device's,
    for ``device_status``; ``clock`` gives the local time, with its zone."""

    async def get_volume(args: dict[str, Any]) -> dict[str, Any]:
        status = device.device_status()
        return {"volume": status.volume, "muted": status.muted}

    async def set_volume(args: dict[str, Any]) -> dict[str, Any]:
        volume = _integer(args, "volume", 0, 100)
        change = _integer(args, "change", -100, 100)
        if (volume is None) == (change is None):
            raise ToolError("give either volume (0 to 100) or change (-100 to 100)")
        if volume is None:
            assert change is not None
            volume = min(100, max(0, device.device_status().volume + change))
        await device.carry_out(SetVolume(volume))
        return {"volume": volume}

    async def mute(args: dict[str, Any]) -> dict[str, Any]:
        muted = args.get("muted", True)
        if not isinstance(muted, bool):
            raise ToolError("muted must be true or false")
        await device.carry_out(Mute() if muted else Unmute())
        return {"muted": muted}

    async def stop(args: dict[str, Any]) -> dict[str, Any]:
        await device.carry_out(Cancel())
        return {"stopped": True}

    async def device_status(args: dict[str, Any]) -> dict[str, Any]:
        status = device.device_status()
        return {
            "name": name,
            "version": version,
            "state": status.state.value,
            "volume": status.volume,
            "muted": status.muted,
            "coze_connected": status.coze_connected,
        }

    async def local_time(args: dict[str, Any]) -> dict[str, Any]:
        now = clock()
        return {
            "time": now.isoformat(timespec="seconds"),
            "weekday": now.strftime("%A"),
            "timezone": now.tzname() or "",
        }

    return [
        Tool(
            "get_volume",
            "The speaker's volume (0 to 100) and whether the microphone is muted.",
            NO_ARGUMENTS,
            get_volume,
        ),
        Tool(
            "set_volume",
            "Set the speaker's volume: volume 0 to 100, or change it by change (-100 to 100).",
            {
                "type": "object",
                "properties": {
                    "volume": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 100,
                        "description": "the new volume, 0 (silent) to 100 (loudest)",
                    },
                    "change": {
                        "type": "integer",
                        "minimum": -100,
                        "maximum": 100,
                        "description": "louder (positive) or quieter (negative) by this much",
                    },
                },
            },
            set_volume,
        ),
        Tool(
            "mute",
            "Close the microphone (muted true, the default): the device stops listening "
            "until it is unmuted from Home Assistant or its control socket.",
            {
                "type": "object",
                "properties": {
                    "muted": {
                        "type": "boolean",
                        "default": True,
                        "description": "true: close the microphone; false: open it",
                    }
                },
            },
            mute,
        ),
        Tool(
            "stop",
            "Stop talking at once: ends this reply without another word.",
            NO_ARGUMENTS,
            stop,
        ),
        Tool(
            "device_status",
            "The speaker's name, software version, state, volume, mute and Coze connection.",
            NO_ARGUMENTS,
            device_status,
        ),
        Tool(
            "local_time",
            "The date, time, weekday and time zone where the speaker is.",
            NO_ARGUMENTS,
            local_time,
        ),
    ]
