"""Voice hardware recognised by name, the devices recommended, and what to check."""

from __future__ import annotations

import pytest

from coze_edge.core.hardware import (
    KNOWN_HARDWARE,
    Card,
    DeviceInfo,
    Recommendation,
    SoundFacts,
    config_name,
    hints,
    parse_cards,
    recognise,
    recommend,
)


def device(
    index: int,
    name: str,
    inputs: int = 0,
    outputs: int = 0,
    rate: float = 48000,
    *,
    default: bool = False,
) -> DeviceInfo:
    return DeviceInfo(index, name, inputs, outputs, rate, default and inputs > 0, default)


# The names PortAudio gives these on a Pi (card name: pcm name (hw:card,device)).
def picked(chosen: Recommendation) -> tuple[DeviceInfo | None, DeviceInfo | None]:
    """The recommended microphone and speaker."""
    return (
        chosen.input.device if chosen.input else None,
        chosen.output.device if chosen.output else None,
    )


PI_HEADPHONES = device(0, "bcm2835 Headphones: - (hw:0,0)", 0, 8, 44100)
SYSDEFAULT = device(5, "sysdefault", 128, 128, 48000)
DEFAULT = device(7, "default", 128, 128, 48000, default=True)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        (
            "seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi wm8960-hifi-0 (hw:1,0)",
            "ReSpeaker 2-Mics Pi HAT",
        ),
        ("seeed-4mic-voicecard: bcm2835-i2s-ac10x-codec0 ac10x-codec0-0 (hw:1,0)", "4-Mic"),
        ("seeed-8mic-voicecard: bcm2835-i2s-ac108-codec0 ac108-codec0-0 (hw:1,0)", "6-Mic"),
        ("ReSpeaker 4 Mic Array (UAC1.0): USB Audio (hw:2,0)", "USB Mic Array"),
        ("Jabra SPEAK 510 USB: Audio (hw:2,0)", "Jabra"),
        ("Anker PowerConf S330: USB Audio (hw:3,0)", "Anker"),
        ("EMEET OfficeCore M0 Plus: USB Audio (hw:2,0)", "eMeet"),
        ("Poly Sync 20: USB Audio (hw:2,0)", "Poly"),
        ("Plantronics Calisto 3200: USB Audio (hw:2,0)", "Poly"),
        ("USB Camera-B4.09.24.1: Audio (hw:1,0)", "PlayStation 3 Eye"),
        ("CameraB409241", "PlayStation 3 Eye"),
    ],
)
def test_the_common_voice_hardware_is_recognised(name: str, label: str) -> None:
    """Each kind of voice hardware the README names is recognised by its PortAudio name."""
    hardware = recognise(name)

    assert hardware is not None
    assert label in hardware.label


@pytest.mark.parametrize(
    "name", ["default", "pulse", "bcm2835 Headphones: - (hw:0,0)", "USB Audio Device", "dmix"]
)
def test_other_devices_are_not_recognised(name: str) -> None:
    """Plugins, the Pi's own jack and an anonymous USB dongle are nothing special."""
    assert recognise(name) is None


def test_every_pattern_is_lower_case_and_belongs_to_one_kind() -> None:
    """Patterns are compared with the lower-cased name, and no two entries share one."""
    patterns = [p for hardware in KNOWN_HARDWARE for p in hardware.patterns]

    assert all(p == p.lower() for p in patterns)
    assert len(patterns) == len(set(patterns))
    assert all(recognise(p) is hardware for hardware in KNOWN_HARDWARE for p in hardware.patterns)


def test_a_hat_is_recommended_over_the_defaults_with_its_own_output() -> None:
    """The 2-mic HAT is recommended for both directions; its card name goes in the config."""
    hat = device(1, "seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi wm8960-hifi-0 (hw:1,0)", 2, 2)
    devices = [PI_HEADPHONES, hat, SYSDEFAULT, DEFAULT]

    chosen = recommend(devices)

    assert picked(chosen) == (hat, hat)
    assert chosen.config_lines(devices) == [
        "audio:",
        '  input_device: "seeed-2mic-voicecard"',
        "  capture_rate: 16000  # opened at 16000 Hz if the device takes it, else at 48000 Hz "
        "and resampled",
        '  output_device: "seeed-2mic-voicecard"',
    ]


def test_a_hat_without_a_speaker_gets_the_default_output() -> None:
    """The 4-mic HAT has no output: the system's default plays the replies."""
    hat = device(1, "seeed-4mic-voicecard: bcm2835-i2s-ac10x-codec0 ac10x-codec0-0 (hw:1,0)", 4)
    devices = [PI_HEADPHONES, hat, DEFAULT]

    chosen = recommend(devices)

    assert picked(chosen) == (hat, DEFAULT)
    assert chosen.output is not None
    assert chosen.output.why == "the system's default output"


def test_the_usb_mic_array_uses_its_processed_channel_at_its_own_rate() -> None:
    """With the 6-channel firmware, channel 0 is chosen; 16 kHz needs no resampling."""
    array = device(2, "ReSpeaker 4 Mic Array (UAC1.0): USB Audio (hw:2,0)", 6, 2, 16000)
    devices = [PI_HEADPHONES, array, DEFAULT]

    lines = recommend(devices).config_lines(devices)

    assert lines == [
        "audio:",
        '  input_device: "ReSpeaker 4 Mic Array (UAC1.0)"',
        "  input_channel: 0  # with the 6-channel firmware: the processed one (beamformed, "
        "echo-cancelled)",
        "  capture_rate: 16000  # the microphone's own rate: no resampling",
        '  output_device: "ReSpeaker 4 Mic Array (UAC1.0)"',
    ]


def test_the_one_channel_firmware_needs_no_channel_selection() -> None:
    """A USB Mic Array with one channel has nothing to pick."""
    array = device(2, "ReSpeaker 4 Mic Array (UAC1.0): USB Audio (hw:2,0)", 1, 2, 16000)

    assert not any("input_channel" in line for line in recommend([array]).config_lines([array]))


def test_a_speakerphone_is_preferred_to_a_camera() -> None:
    """Of several, the one that cancels its own echo wins; the camera is left aside."""
    eye = device(1, "USB Camera-B4.09.24.1: USB Audio (hw:1,0)", 4, 0, 16000)
    jabra = device(2, "Jabra SPEAK 510 USB: Audio (hw:2,0)", 1, 2)
    devices = [eye, jabra, DEFAULT]

    chosen = recommend(devices)

    assert picked(chosen) == (jabra, jabra)
    assert chosen.input is not None
    assert chosen.input.hardware is not None
    assert chosen.input.hardware.cancels_echo


def test_without_known_hardware_the_defaults_are_recommended() -> None:
    """On a plain machine the system's defaults are the recommendation: null in the config."""
    devices = [PI_HEADPHONES, SYSDEFAULT, DEFAULT]

    chosen = recommend(devices)

    assert picked(chosen) == (DEFAULT, DEFAULT)
    assert chosen.input is not None
    assert chosen.input.hardware is None
    assert chosen.config_lines(devices) == [
        "audio:",
        "  input_device: null  # the system's default (default)",
        "  capture_rate: 16000  # opened at 16000 Hz if the device takes it, else at 48000 Hz "
        "and resampled",
        "  output_device: null  # the system's default (default)",
    ]


def test_nothing_is_recommended_from_an_empty_list() -> None:
    """No devices, no recommendation (and no config lines beyond the section)."""
    chosen = recommend([])

    assert (chosen.input, chosen.output) == (None, None)
    assert chosen.config_lines([]) == ["audio:"]


def test_a_name_shared_by_two_devices_is_written_in_full_or_by_index() -> None:
    """The config names a device by the shortest part that picks it alone."""
    first = device(1, "USB Audio Device: - (hw:1,0)", 1, 2)
    second = device(2, "USB Audio Device: - (hw:2,0)", 1, 2)
    twins = [first, second]

    assert config_name(first, twins, "input") == "USB Audio Device: - (hw:1,0)"
    assert config_name(device(3, "12", 1, 0), [device(3, "12", 1, 0)], "input") == 3


def test_proc_asound_cards_is_read() -> None:
    """Each card's number, id and name come from /proc/asound/cards."""
    text = (
        " 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones\n"
        "                      bcm2835 Headphones\n"
        " 1 [seeed2micvoicec]: seeed-2mic-voice - seeed-2mic-voicecard\n"
        "                      seeed-2mic-voicecard\n"
    )

    assert parse_cards(text) == [
        Card(0, "Headphones", "bcm2835 Headphones"),
        Card(1, "seeed2micvoicec", "seeed-2mic-voicecard"),
    ]
    assert parse_cards("--- no soundcards ---\n") == []


def facts(
    *,
    cards: tuple[Card, ...] | None = (),
    snd_accessible: bool | None = True,
    sound_servers: tuple[str, ...] = (),
) -> SoundFacts:
    return SoundFacts(cards, snd_accessible, "coze-edge", sound_servers)


def test_an_empty_list_without_cards_points_at_the_driver_overlay() -> None:
    """No card in the kernel: the overlay in config.txt and the USB plug are checked."""
    lines = hints([], facts())

    assert any("dtoverlay=" in line and "/boot/firmware/config.txt" in line for line in lines)
    assert any("fuser -v /dev/snd/*" in line for line in lines)


def test_an_empty_list_with_a_forbidden_dev_snd_points_at_the_audio_group() -> None:
    """/dev/snd exists but may not be opened: join the audio group."""
    lines = hints([], facts(snd_accessible=False, cards=(Card(0, "Headphones", "bcm2835"),)))

    assert any("usermod -aG audio coze-edge" in line for line in lines)


def test_a_known_card_portaudio_cannot_open_is_named() -> None:
    """A HAT in the kernel but missing from PortAudio's list: busy, or not allowed."""
    hat = Card(1, "seeed2micvoicec", "seeed-2mic-voicecard")
    listed = [device(0, "pulse", 32, 32), DEFAULT]

    lines = hints(listed, facts(cards=(Card(0, "Headphones", "bcm2835 Headphones"), hat)))

    assert len(lines) == 1
    assert "card 1 seeed2micvoicec (ReSpeaker 2-Mics Pi HAT)" in lines[0]
    assert "sound server holds it" in lines[0]


def test_a_listed_card_needs_no_hint() -> None:
    """When PortAudio lists the card's device, there is nothing to check."""
    hat = Card(1, "seeed2micvoicec", "seeed-2mic-voicecard")
    listed = [device(1, "seeed-2mic-voicecard: bcm2835-i2s-wm8960-hifi (hw:1,0)", 2, 2)]

    assert hints(listed, facts(cards=(hat,))) == []


def test_a_sound_server_that_cannot_be_reached_is_named() -> None:
    """With PipeWire running and no device listed, the service user lacks its socket."""
    lines = hints([], facts(cards=None, sound_servers=("pipewire",)))

    assert any("/proc/asound/cards is missing" in line for line in lines)
    assert any(line.startswith("pipewire runs here") for line in lines)


def test_a_pi_without_its_hat_driver_is_told_about_the_overlay() -> None:
    """Only the Pi's own jack (no microphone): the checklist, the overlay first."""
    cards = (Card(0, "Headphones", "bcm2835 Headphones"), Card(1, "vc4hdmi0", "vc4-hdmi-0"))

    lines = hints([PI_HEADPHONES], facts(cards=cards))

    assert lines[0] == "PortAudio finds speakers but no microphone: so, for the microphone:"
    assert any("dtoverlay=" in line for line in lines)


def test_microphones_that_are_no_known_hardware_get_a_pointer() -> None:
    """A plain USB microphone: where to look if voice hardware was expected."""
    usb = device(1, "USB PnP Sound Device: Audio (hw:1,0)", 1, 0)

    [line] = hints([PI_HEADPHONES, usb, DEFAULT], facts())

    assert line.startswith("none of these is voice hardware coze-edge knows")
    assert "dtoverlay=seeed-2mic-voicecard" in line
