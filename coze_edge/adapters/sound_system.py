"""
What this machine's sound looks like beyond PortAudio's device list, for ``coze-edge
devices``: the kernel's cards, whether this user may open ``/dev/snd``, and which sound
servers run. Read from ``/proc`` and ``/dev``; nothing is opened for sound.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path
from typing import Final

from coze_edge.core.hardware import Card, SoundFacts, parse_cards

_SERVERS: Final = {"pulseaudio": "PulseAudio", "pipewire": "PipeWire"}
"""Process names (``/proc/<pid>/comm``) of the sound servers, and what to call them."""


def sound_facts(*, proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> SoundFacts:
    return SoundFacts(
        cards=_cards(proc / "asound" / "cards"),
        snd_accessible=_snd_accessible(dev / "snd"),
        user=_user(),
        sound_servers=_servers(proc),
    )


def _cards(path: Path) -> tuple[Card, ...] | None:
    try:
        return tuple(parse_cards(path.read_text(errors="replace")))
    except OSError:
        return None


def _snd_accessible(folder: Path) -> bool | None:
    """May this user open the sound devices? None when there are none (no /dev/snd)."""
    try:
        nodes = [p for p in folder.iterdir() if p.name.startswith(("pcmC", "controlC"))]
    except OSError:
        return None
    return all(os.access(node, os.R_OK | os.W_OK) for node in nodes)


def _user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a name (a container's)
        return str(uid)


def _servers(proc: Path) -> tuple[str, ...]:
    found: list[str] = []
    with contextlib.suppress(OSError):
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:  # the process ended meanwhile, or is not ours to see
                continue
            server = _SERVERS.get(name)
            if server is not None and server not in found:
                found.append(server)
    return tuple(found)
