"""
Which sound devices suit a voice assistant: the common voice hardware recognised by name,
the devices to recommend, the config lines for them, and what to check when none is found.
Pure: the adapters gather the facts (PortAudio's device list, ``/proc/asound/cards``,
``/dev/snd``), this module judges them.

Names are matched as PortAudio shows them on Linux: a card's device is
``"<card name>: <pcm name> (hw:<card>,<device>)"`` (``seeed-2mic-voicecard:
bcm2835-i2s-wm8960-hifi wm8960-hifi-0 (hw:1,0)``), and ALSA's card ids
(``seeed2micvoicec``) appear in plugin names and in ``/proc/asound/cards``. Each pattern
is a lower-case substring of one of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["speakerphone", "usb-array", "hat", "camera"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device, as ``coze-edge devices`` lists it."""

    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False


@dataclass(frozen=True, slots=True)
class Hardware:
    """A kind of voice hardware: how to recognise it and how to use it."""

    label: str
    patterns: tuple[str, ...]
    """Lower-case substrings of its PortAudio name or ALSA card id."""
    kind: Kind
    has_output: bool
    """It has a speaker output of its own (a jack, a speaker connector, a speakerphone)."""
    channel: int | None
    """The input channel to use (``audio.input_channel``); None = the first, or the mix a
    sound server makes."""
    native_rate: int | None
    """The only rate its microphones run at, if it has one (no resampling at 16 kHz)."""
    cancels_echo: bool
    """It removes its own speaker's sound from its microphone (a DSP on board)."""
    setup: str
    """What to install or check, one line."""
    channel_note: str = ""
    """Why ``channel`` is the one to use."""


KNOWN_HARDWARE: Final[tuple[Hardware, ...]] = (
    Hardware(
        label="USB speakerphone (Jabra Speak)",
        patterns=("jabra",),
        kind="speakerphone",
        has_output=True,
        channel=None,
        native_rate=None,
        cancels_echo=True,
        setup="nothing to install (USB audio class); plug it in before the service starts",
    ),
    Hardware(
        label="USB speakerphone (Anker PowerConf)",
        patterns=("powerconf", "anker"),
        kind="speakerphone",
        has_output=True,
        channel=None,
        native_rate=None,
        cancels_echo=True,
        setup="nothing to install (USB audio class); plug it in before the service starts",
    ),
    Hardware(
        label="USB speakerphone (eMeet)",
        patterns=("emeet", "officecore"),
        kind="speakerphone",
        has_output=True,
        channel=None,
        native_rate=None,
        cancels_echo=True,
        setup="nothing to install (USB audio class); plug it in before the service starts",
    ),
    Hardware(
        label="USB speakerphone (Poly / Plantronics)",
        patterns=("poly sync", "plantronics", "calisto"),
        kind="speakerphone",
        has_output=True,
        channel=None,
        native_rate=None,
        cancels_echo=True,
        setup="nothing to install (USB audio class); plug it in before the service starts",
    ),
    Hardware(
        label="ReSpeaker USB Mic Array v2.0",
        patterns=("respeaker 4 mic array", "arrayuac10", "respeaker usb"),
        kind="usb-array",
        has_output=True,
        channel=0,
        native_rate=16000,
        cancels_echo=True,
        setup="nothing to install (USB audio class)",
        channel_note="with the 6-channel firmware: the processed one (beamformed, echo-cancelled)",
    ),
    Hardware(
        label="ReSpeaker 2-Mics Pi HAT",
        patterns=("seeed-2mic-voicecard", "seeed2micvoicec"),
        kind="hat",
        has_output=True,
        channel=None,
        native_rate=None,
        cancels_echo=False,
        setup="the seeed-voicecard driver: dtoverlay=seeed-2mic-voicecard in "
        "/boot/firmware/config.txt, then reboot",
    ),
    Hardware(
        label="ReSpeaker 4-Mic Array for Raspberry Pi",
        patterns=("seeed-4mic-voicecard", "seeed4micvoicec"),
        kind="hat",
        has_output=False,
        channel=None,
        native_rate=None,
        cancels_echo=False,
        setup="the seeed-voicecard driver: dtoverlay=seeed-4mic-voicecard in "
        "/boot/firmware/config.txt, then reboot; it has no speaker output",
    ),
    Hardware(
        label="ReSpeaker 6-Mic Circular Array",
        patterns=("seeed-8mic-voicecard", "seeed8micvoicec"),
        kind="hat",
        has_output=True,
        channel=0,
        native_rate=None,
        cancels_echo=False,
        setup="the seeed-voicecard driver: dtoverlay=seeed-8mic-voicecard in "
        "/boot/firmware/config.txt, then reboot",
        channel_note="a microphone: channels 6 and 7 carry the playback, not a microphone",
    ),
    Hardware(
        label="PlayStation 3 Eye camera (4-mic array)",
        patterns=("camera-b4.09.24.1", "camerab409241", "ps3 eye"),
        kind="camera",
        has_output=False,
        channel=None,
        native_rate=16000,
        cancels_echo=False,
        setup="nothing to install (the kernel's USB audio driver); it has no speaker output",
    ),
)
"""In order of preference when several are present: a speakerphone or array that cancels
its own echo first, then the HATs, then the camera."""


def recognise(name: str) -> Hardware | None:
    """The known voice hardware whose pattern ``name`` contains, or None."""
    lowered = name.lower()
    for hardware in KNOWN_HARDWARE:
        if any(pattern in lowered for pattern in hardware.patterns):
            return hardware
    return None


def _matches(spec: str, devices: Sequence[DeviceInfo], kind: str) -> list[DeviceInfo]:
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    return [d for d in usable if spec.lower() in d.name.lower()]


_HW_SUFFIX: Final = re.compile(r"\s*\((?:plug)?hw:\d+,\d+\)\s*$")


def config_name(device: DeviceInfo, devices: Sequence[DeviceInfo], kind: str) -> str | int:
    """
    What to write in ``audio.input_device`` / ``output_device`` for ``device``: the shortest
    stable part of its name that picks it alone (its card's name, without the card number,
    which changes when USB devices are plugged in another order), else its whole name,
    else its index.
    """
    candidates = []
    if ": " in device.name:
        candidates.append(device.name.partition(": ")[0])
    candidates.append(_HW_SUFFIX.sub("", device.name))
    candidates.append(device.name)
    for candidate in candidates:
        usable = candidate and not candidate.strip().isdigit()
        if usable and _matches(candidate, devices, kind) == [device]:
            return candidate
    return device.index


@dataclass(frozen=True, slots=True)
class Pick:
    """A device recommended for one direction, and why."""

    device: DeviceInfo
    hardware: Hardware | None
    why: str
    default: bool = False
    """It is the system's default: the config says null."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    input: Pick | None
    output: Pick | None

    def config_lines(self, devices: Sequence[DeviceInfo]) -> list[str]:
        """The ``audio:`` block to put in the config file for these devices."""
        lines = ["audio:"]
        if self.input is not None:
            device, hardware = self.input.device, self.input.hardware
            lines.append(f"  input_device: {_device_value(self.input, devices, 'input')}")
            if hardware is not None and hardware.channel is not None and device.inputs > 1:
                lines.append(f"  input_channel: {hardware.channel}  # {hardware.channel_note}")
            rate = round(device.default_rate)
            if (hardware is not None and hardware.native_rate == 16000) or rate == 16000:
                note = "the microphone's own rate: no resampling"
            else:
                note = f"opened at 16000 Hz if the device takes it, else at {rate} Hz and resampled"
            lines.append(f"  capture_rate: 16000  # {note}")
        if self.output is not None:
            lines.append(f"  output_device: {_device_value(self.output, devices, 'output')}")
        return lines


def _device_value(pick: Pick, devices: Sequence[DeviceInfo], kind: str) -> str:
    if pick.default:
        return f"null  # the system's default ({pick.device.name})"
    return _yaml(config_name(pick.device, devices, kind))


def _yaml(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rank(hardware: Hardware) -> int:
    return KNOWN_HARDWARE.index(hardware)


def recommend(devices: Sequence[DeviceInfo]) -> Recommendation:
    """
    The microphone and speaker to use: known voice hardware first (its own output too, if
    it has one), else the system's defaults, else the first device of each direction.
    """
    known = [(d, h) for d in devices if (h := recognise(d.name)) is not None]
    known.sort(key=lambda pair: _rank(pair[1]))
    microphone = next(((d, h) for d, h in known if d.inputs > 0), None)
    input_pick = None
    if microphone is not None:
        device, hardware = microphone
        input_pick = Pick(device, hardware, hardware.label)
    else:
        input_pick = _fallback(devices, "input")
    output_pick = None
    if microphone is not None and microphone[1].has_output:
        device, hardware = microphone
        # The same card's output: one clock for both, and its echo canceller (if any)
        # hears exactly what it plays.
        same = [d for d, h in known if h is hardware and d.outputs > 0]
        if same:
            output_pick = Pick(same[0], hardware, f"{hardware.label}, with its microphone")
    if output_pick is None:
        speaker = next(((d, h) for d, h in known if d.outputs > 0 and h.has_output), None)
        if speaker is not None:
            output_pick = Pick(speaker[0], speaker[1], speaker[1].label)
        else:
            output_pick = _fallback(devices, "output")
    return Recommendation(input_pick, output_pick)


def _fallback(devices: Sequence[DeviceInfo], kind: str) -> Pick | None:
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    default = [d for d in usable if (d.default_input if kind == "input" else d.default_output)]
    if default:
        return Pick(
            default[0], recognise(default[0].name), f"the system's default {kind}", default=True
        )
    if usable:
        return Pick(usable[0], recognise(usable[0].name), f"the first {kind} device")
    return None


# --- what the kernel has ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Card:
    """A sound card the kernel has (a line of ``/proc/asound/cards``)."""

    number: int
    id: str
    """ALSA's short id (``seeed2micvoicec``): ``hw:CARD=<id>`` names it."""
    name: str
    """Its long name (``seeed-2mic-voicecard``)."""


_CARD_LINE: Final = re.compile(r"^\s*(\d+)\s+\[([^\]]+?)\s*\]:\s*(\S+)\s+-\s+(.*?)\s*$")


def parse_cards(text: str) -> list[Card]:
    """The cards ``/proc/asound/cards`` lists (``--- no soundcards ---`` is none)."""
    cards = []
    for line in text.splitlines():
        match = _CARD_LINE.match(line)
        if match:
            number, card_id, _driver, name = match.groups()
            cards.append(Card(int(number), card_id, name))
    return cards


@dataclass(frozen=True, slots=True)
class SoundFacts:
    """What the adapters found out about this machine's sound, beyond PortAudio's list."""

    cards: tuple[Card, ...] | None
    """The kernel's cards; None when ``/proc/asound/cards`` is missing (no ALSA at all:
    a container, or a kernel without sound)."""
    snd_accessible: bool | None
    """This user may open ``/dev/snd/*``; None when there is no ``/dev/snd``."""
    user: str
    """Who runs this command."""
    sound_servers: tuple[str, ...]
    """Sound servers found running (``pulseaudio``, ``pipewire``)."""


def hints(devices: Sequence[DeviceInfo], facts: SoundFacts) -> list[str]:
    """
    What to check, one line each: all of it when PortAudio lists no microphone; for a known
    card the kernel has but PortAudio cannot open (busy or forbidden) in any case; and where
    to look when no listed device is voice hardware coze-edge knows.
    """
    out: list[str] = []
    names = " ".join(d.name.lower() for d in devices)
    unopened = [
        card
        for card in facts.cards or ()
        if card.id.lower() not in names and card.name.lower() not in names
    ]
    for card in unopened:
        hardware = recognise(card.name) or recognise(card.id)
        if hardware is None and devices:
            continue
        label = f" ({hardware.label})" if hardware else ""
        out.append(
            f"card {card.number} {card.id}{label} is in the kernel, but PortAudio cannot open "
            "it: a sound server holds it (use the `pulse` or `default` device, or stop the "
            f"server), or {facts.user} may not (the `audio` group)"
        )
    microphones = [d for d in devices if d.inputs > 0]
    if microphones:
        if not out and not any(recognise(d.name) for d in devices):
            out.append(
                "none of these is voice hardware coze-edge knows; if you have some: a "
                "ReSpeaker HAT needs its driver and overlay (dtoverlay=seeed-2mic-voicecard, "
                "seeed-4mic-voicecard or seeed-8mic-voicecard in /boot/firmware/config.txt, "
                "then reboot), a USB device must be in `arecord -l` (else `lsusb`, "
                "`dmesg | tail`)"
            )
        return out
    if devices:
        out.append("PortAudio finds speakers but no microphone: so, for the microphone:")
    if facts.cards is None:
        out.append(
            "the kernel shows no sound at all (/proc/asound/cards is missing): inside a "
            "container, pass /dev/snd through; on a Pi, check that the OS booted its own kernel"
        )
    else:
        out.append(
            ("the kernel has no sound card" if not facts.cards else "no microphone card")
            + ": a HAT needs its driver and overlay (dtoverlay=... in "
            "/boot/firmware/config.txt, then reboot; `arecord -l` lists the capture cards), "
            "a USB device must be plugged in (`lsusb`, `dmesg | tail`)"
        )
    if facts.snd_accessible is False:
        out.append(
            f"{facts.user} may not open /dev/snd: add it to the `audio` group "
            f"(sudo usermod -aG audio {facts.user}, then log in again or restart the service)"
        )
    if facts.sound_servers:
        servers = " and ".join(facts.sound_servers)
        out.append(
            f"{servers} runs here but PortAudio cannot reach it: the service user needs "
            "its socket (PULSE_SERVER, see the README), or use the card's own device"
        )
    else:
        out.append(
            "a desktop session's sound server (PulseAudio, PipeWire) of another user may hold "
            "the card: `fuser -v /dev/snd/*` shows who has it open"
        )
    return out
