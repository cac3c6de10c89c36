"""
The settings: one frozen dataclass per section of the config file, with its defaults, the
documentation of every key, and ``problems()``: what is wrong with the values.

Attribute names equal the YAML keys (``config.mqtt.port`` is ``mqtt: {port: ...}``).
config/coze-edge.example.yaml shows every key with its default; a test keeps the two alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import types
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, get_type_hints

from coze_edge.adapters.vad_webrtc import RATES as VAD_RATES
from coze_edge.config.checks import (
    Problem,
    alternatives,
    between,
    hint,
    is_loopback,
    ms,
    not_blank,
    one_of,
    only_loopback_in_clear,
    positive,
    show,
    token_url,
    topic,
    url,
)
from coze_edge.core.earcons import KINDS as EARCON_KINDS
from coze_edge.core.identity import is_int64_id
from coze_edge.core.tools import RESERVED_TOOLS, TOOL_NAME, Exposure, command_argv
from coze_edge.core.wake import WAKE_WORDS

DEFAULT_STATE_DIR: Final = Path("/var/lib/coze-edge")

MAX_META_PAIRS: Final = 16
"""Coze's bound on ``meta_data`` (coze-protocol.md 4.2)."""


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


DEVICE_ID_PLACEHOLDER: Final = "<device.id>"
DEFAULT_TOPIC_PREFIX: Final = f"coze-edge/{DEVICE_ID_PLACEHOLDER}"
PYPI_JSON_URL: Final = "https://pypi.org/pypi/coze-edge/json"

REGION_HOSTS: Final[Mapping[str, tuple[str, str]]] = types.MappingProxyType(
    {
        "cn": ("https://api.coze.cn", "wss://ws.coze.cn"),
        "com": ("https://api.coze.com", "wss://ws.coze.com"),
    }
)
"""Region -> (REST base, WebSocket base)."""

PCM_RATES: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Sample rates Coze accepts for PCM audio, in and out."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error")

MAX_INPUT_CHANNEL: Final = 31
"""The highest ``audio.input_channel`` (the 6-Mic Array has 8 channels, ALSA's plugins 32)."""


@dataclass(frozen=True, slots=True)
class CozeConfig:
    """Which Coze to talk to, which bot, and how patiently."""

    region: str = "cn"
    """``cn`` (coze.cn) or ``com`` (coze.com); picks the default hosts below."""

    api_base: str = ""
    """REST base URL (OAuth, bind, voices); ``""`` = the region's. ``http://`` only to
    loopback (the simulator), unless ``allow_insecure``."""

    ws_base: str = ""
    """WebSocket base URL (the chat path is ``/v1/chat``); ``""`` = the region's. ``ws://``
    only to loopback, unless ``allow_insecure``."""

    allow_insecure: bool = False
    """Allow ``http://`` and ``ws://`` base URLs to hosts other than loopback (127.0.0.0/8,
    ::1, localhost). The token then crosses the network in the clear, readable and usable
    by anyone on the path: for a simulator on another machine of a test bench, never for
    Coze itself."""

    bot_id: str = ""
    """The bot to talk to (published to the API channel). Required."""

    voice_id: str | None = None
    """Reply voice (see ``coze-edge voices``); None = the bot's default voice."""

    user_id: str | None = None
    """The user id sent to Coze; None = the device id."""

    turn_detection: str = "client_interrupt"
    """``client_interrupt``: this device's VAD ends the turn; ``server_vad``: Coze's VAD does."""

    reply_timeout_ms: int = 15000
    """How long to wait for the first reply after the user's turn ends before giving up."""

    connect_timeout_s: float = 10.0
    """Timeout for opening the WebSocket or an HTTP connection."""

    read_timeout_s: float = 30.0
    """Timeout for one HTTP response."""

    ping_interval_s: float = 20.0
    """WebSocket keep-alive ping interval; a missed pong counts as a dropped connection."""

    refused_retry_s: float = 300.0
    """After Coze refused the bot or account (not published, no permission, ...): wait at
    least this long before the next session; the state shows ``error`` meanwhile."""

    workflow_id: str | None = None
    """A chatflow (对话流) agent's workflow, sent with ``bot_id`` on the voice socket."""

    custom_variables: Mapping[str, str] = field(default_factory=_empty)
    """The bot prompt's ``{{key}}`` variables, sent in every session's ``chat_config``."""

    meta_data: Mapping[str, str] = field(default_factory=_empty)
    """Coze's ``meta_data`` for every chat: at most 16 pairs, keys 1-64 characters,
    values 1-512."""

    parameters: Mapping[str, Any] = field(default_factory=_empty)
    """A chatflow's custom inputs (any JSON values), sent in every session's ``chat_config``."""

    def __post_init__(self) -> None:
        api, ws = REGION_HOSTS.get(self.region, ("", ""))
        object.__setattr__(self, "api_base", (self.api_base or api).rstrip("/"))
        object.__setattr__(self, "ws_base", (self.ws_base or ws).rstrip("/"))

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from one_of("region", self.region, tuple(REGION_HOSTS))
        if self.api_base:  # "" only with an unknown region, which is reported above
            yield from url("api_base", self.api_base, ("http", "https"))
            if not self.allow_insecure:
                yield from only_loopback_in_clear("api_base", self.api_base, "allow_insecure")
        if self.ws_base:
            yield from url("ws_base", self.ws_base, ("ws", "wss"))
            if not self.allow_insecure:
                yield from only_loopback_in_clear("ws_base", self.ws_base, "allow_insecure")
        if not self.bot_id.strip():
            yield "bot_id", "required: the id of the bot to talk to (from its URL in Coze)"
        yield from not_blank("voice_id", self.voice_id, "must not be empty; null = bot default")
        yield from not_blank("user_id", self.user_id, "must not be empty; null = the device id")
        yield from one_of("turn_detection", self.turn_detection, ("client_interrupt", "server_vad"))
        yield from ms("reply_timeout_ms", self.reply_timeout_ms, 1000, 300_000)
        yield from positive("connect_timeout_s", self.connect_timeout_s, 300, " s")
        yield from positive("read_timeout_s", self.read_timeout_s, 600, " s")
        yield from positive("ping_interval_s", self.ping_interval_s, 600, " s")
        yield from positive("refused_retry_s", self.refused_retry_s, 86400, " s")
        yield from not_blank("workflow_id", self.workflow_id, "must not be empty; null = none")
        if len(self.meta_data) > MAX_META_PAIRS:
            yield "meta_data", f"at most {MAX_META_PAIRS} pairs, got {len(self.meta_data)}"
        for key, value in self.meta_data.items():
            if not 1 <= len(key) <= 64:
                yield f"meta_data.{key}", "keys must be 1 to 64 characters"
            if not 1 <= len(value) <= 512:
                yield f"meta_data.{key}", "values must be 1 to 512 characters"
        if "" in self.custom_variables:
            yield "custom_variables", "a variable's name must not be empty"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How the device gets its Coze token."""

    method: str = "device_code"
    """``device_code`` (OAuth device flow: a code typed on a phone), ``pat``, or
    ``token_url`` (short-lived tokens from the vendor's token service, for fleets)."""

    client_id: str | None = None
    """The OAuth app (type TV/device/CLI) to log in with; required for ``device_code``."""

    workspace_id: str | None = None
    """Log in to this workspace only (workspace-scoped device flow); None = account-wide."""

    pat_file: Path | None = None
    """File holding a personal access token (``pat``); else the ``coze_pat`` credential."""

    token_url: str | None = None
    """``token_url``: the vendor's token service (``coze-edge token-service``), which
    signs the JWT app's grant for this device. https://, or http:// to this machine only."""

    device_secret_file: Path | None = None
    """``token_url``: file holding this device's secret for the token service; else the
    ``device_secret`` credential."""

    refused_retry_s: float = 300.0
    """``token_url``: after the token service refused this device (a wrong secret, a wrong
    URL), ask again this late; the state shows ``error`` meanwhile."""

    speak_code: bool = False
    """While a device login waits, say its code on the speaker (built-in voice clips, no
    cloud TTS), every ``speak_code_every_s``: for a device with no screen and no MQTT."""

    speak_code_every_s: float = 180.0
    """How often the code is said again while the login waits."""

    speak_code_language: str = "en"
    """The voice clips to say it with (a folder under coze_edge/data/voice)."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from one_of("method", self.method, ("device_code", "pat", "token_url"))
        yield from positive("speak_code_every_s", self.speak_code_every_s, 86400, " s")
        if self.speak_code_every_s < 30:
            yield "speak_code_every_s", "must be at least 30 s (the code takes about 20 s to say)"
        yield from not_blank("speak_code_language", self.speak_code_language)
        if self.method == "device_code" and not (self.client_id or "").strip():
            yield (
                "client_id",
                "required with method device_code "
                "(the OAuth app's client id: README, the Coze side)",
            )
        yield from not_blank("workspace_id", self.workspace_id)
        if self.token_url is not None:
            yield from token_url("token_url", self.token_url)
        elif self.method == "token_url":
            yield "token_url", "required with method token_url: the vendor's token service URL"
        yield from positive("refused_retry_s", self.refused_retry_s, 86400, " s")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """This device, as Coze and Home Assistant see it."""

    id: str = ""
    """Positive int64 in decimal. The loader always fills it: configured, else from machine-id."""

    name: str = "coze-edge"
    """Label shown in the Coze channel and in Home Assistant."""

    connector_id: str | None = None
    """Custom channel (connector) id; when set, the device binds itself to it once."""

    bind_key: str = "device_id"
    """The binding key the channel was set up with (Coze's business manager names it)."""

    bind_user_id: str | None = None
    """``user_id`` sent with the binding, if the vendor's channel wants one."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        if self.id and not is_int64_id(self.id):  # "" means "not resolved": the loader says why
            yield (
                "id",
                (
                    "must be a positive int64 in decimal (1 to 9223372036854775807, "
                    f"no sign or leading zeros), got {show(self.id)}"
                ),
            )
        yield from not_blank("name", self.name)
        yield from not_blank("connector_id", self.connector_id)
        yield from not_blank("bind_key", self.bind_key)
        yield from not_blank("bind_user_id", self.bind_user_id, "must not be empty; null = none")


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Microphone and speaker: which devices, which rates, which block sizes."""

    backend: str = "sounddevice"
    """``sounddevice`` (PortAudio devices) or ``file`` (WAV files: tests, demos)."""

    input_device: str | int | None = None
    """Microphone: a name (substring, see ``coze-edge devices``) or index; None = default."""

    input_channel: int | None = None
    """The microphone's channel to use, 0 = the first (``coze-edge devices`` names it for
    known hardware: 0, the processed one, on a ReSpeaker USB Mic Array); None = the first,
    or the mix of all that a sound server makes."""

    input_gain_db: float = 0.0
    """Amplify (or, below 0, soften) the microphone by this much before anything hears it;
    ``coze-edge devices --test`` suggests a value. Clipping in the card cannot be undone
    here: lower the card's capture level instead (``alsamixer``)."""

    output_device: str | int | None = None
    """Speaker: a name (substring) or index; None = the system default."""

    file_input: Path | None = None
    """File backend: the WAV used as the microphone (any rate, mono or stereo). Required there."""

    file_output: Path | None = None
    """File backend: the WAV that receives everything played; None = discard."""

    file_realtime: bool = True
    """File backend: feed and consume audio in real time; False = as fast as possible."""

    output_rate: int = 24000
    """Reply PCM rate asked of Coze (Hz), and the rate of ``file_output``."""

    capture_rate: int = 16000
    """Microphone PCM rate sent to Coze (Hz); one webrtcvad accepts."""

    block_ms: int = 60
    """Microphone block size: how much audio one wake-up of the capture path handles."""

    chunk_ms: int | None = None
    """How much audio each upstream ``input_audio_buffer.append`` carries; with Opus, the
    length of each packet (20, 40 or 60 ms). null = 60 ms of PCM, or 20 ms Opus packets."""

    codec: str = "pcm"
    """Uplink audio: ``pcm`` (16-bit, 256 kbit/s at 16 kHz) or ``opus`` (libopus from the
    OS, ``opus_bitrate``); replies are PCM either way."""

    opus_bitrate: int = 24000
    """Opus target bit rate, bit/s (speech: 16000-32000 is plenty)."""

    prebuffer_ms: int = 100
    """Reply audio buffered before the speaker starts, against underruns."""

    output_keep_open_s: float | None = None
    """None: the speaker's stream stays open, fed with silence, so no sound card or sound
    server sleeps and no reply starts clipped (the default). A number: close it after that
    many seconds without sound (less CPU while idle; the card may sleep) and open it again
    for the next sound, ``output_warmup_ms`` of silence first. Ignored with echo
    cancellation, which needs the stream open."""

    output_warmup_ms: int = 0
    """Silence played first each time the speaker's stream opens, so that a device waking
    up loses that and not the start of the reply (with ``output_keep_open_s``)."""

    volume: int = 100
    """Speaker volume at start, in percent."""

    earcons: bool = True
    """Play short sounds when listening starts and ends."""

    earcon_files: Mapping[str, str] = field(default_factory=_empty)
    """Your own WAVs instead of the built-in earcons, by event: ``listening``, ``wake``,
    ``error``, ``unauthorized``, ``done`` (e.g. ``{wake: /etc/coze-edge/ding.wav}``); any
    rate and channels, converted to ``output_rate``; 3 s at most; checked at start."""

    noise_suppression: bool = False
    """Clean the microphone (WebRTC noise suppression) before VAD and wake word; needs the
    ``aec`` extra (``pip install coze-edge[aec]``)."""

    high_pass: bool = False
    """Remove rumble below speech (WebRTC high-pass filter); needs the ``aec`` extra."""

    auto_gain: bool = False
    """Even out the microphone level (WebRTC AGC); needs the ``aec`` extra."""

    echo_cancellation: bool | str = "auto"
    """Cancel the speaker's sound in the microphone (WebRTC AEC, the ``aec`` extra), so the
    device does not hear itself and the user can talk over the reply: ``auto`` (on with the
    sounddevice backend when the extra is installed), true (required) or false."""

    @property
    def append_ms(self) -> int:
        """``chunk_ms`` resolved."""
        if self.chunk_ms is not None:
            return self.chunk_ms
        return 20 if self.codec == "opus" else 60

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from one_of("backend", self.backend, ("sounddevice", "file"))
        for key, device in (
            ("input_device", self.input_device),
            ("output_device", self.output_device),
        ):
            if isinstance(device, int) and device < 0:
                yield key, f"a device index must be 0 or more, got {device}"
            elif isinstance(device, str):
                yield from not_blank(key, device, "must not be empty; null = system default")
        if self.input_channel is not None:
            yield from between("input_channel", self.input_channel, 0, MAX_INPUT_CHANNEL)
        yield from between("input_gain_db", self.input_gain_db, -20, 30, " dB")
        if self.backend == "file" and self.file_input is None:
            yield "file_input", "required with backend file: the WAV to use as the microphone"
        if self.output_rate not in PCM_RATES:
            yield "output_rate", f"must be {_rates(PCM_RATES)} Hz, got {self.output_rate}"
        if self.capture_rate not in VAD_RATES:
            yield "capture_rate", f"must be {_rates(VAD_RATES)} Hz, got {self.capture_rate}"
        yield from ms("block_ms", self.block_ms, 20, 200, step=10)
        yield from one_of("codec", self.codec, ("pcm", "opus"))
        if self.chunk_ms is not None:
            yield from ms(
                "chunk_ms", self.chunk_ms, 20, 60 if self.codec == "opus" else 100, step=20
            )
        yield from between("opus_bitrate", self.opus_bitrate, 6000, 128000, " bit/s")
        if self.codec == "opus":
            # Imported here: it loads numpy, which check-config does not need otherwise.
            from coze_edge.adapters.opus import RATES as OPUS_RATES

            rates = tuple(rate for rate in VAD_RATES if rate in OPUS_RATES)
            if self.capture_rate not in rates:
                yield (
                    "capture_rate",
                    f"Opus runs at {_rates(rates)} Hz here, got {self.capture_rate}",
                )
        yield from ms("prebuffer_ms", self.prebuffer_ms, 0, 2000)
        if self.output_keep_open_s is not None:
            yield from positive("output_keep_open_s", self.output_keep_open_s, 3600, " s")
        yield from ms("output_warmup_ms", self.output_warmup_ms, 0, 2000)
        yield from between("volume", self.volume, 0, 100)
        for kind, path in self.earcon_files.items():
            if kind not in EARCON_KINDS:
                yield (
                    f"earcon_files.{kind}",
                    f"unknown earcon{hint(kind, EARCON_KINDS)}: {alternatives(list(EARCON_KINDS))}",
                )
            elif not path.strip():
                yield f"earcon_files.{kind}", "must name a WAV file"
        echo = self.echo_cancellation
        if isinstance(echo, str) and echo != "auto":
            yield "echo_cancellation", f"must be auto, true or false, got {echo!r}"


def _rates(rates: tuple[int, ...]) -> str:
    return alternatives([str(rate) for rate in rates])


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Voice activity detection: when the user starts and stops talking."""

    aggressiveness: int = 2
    """webrtcvad mode, from 0 (lets most noise through as speech) to 3 (strictest)."""

    end_silence_ms: int = 700
    """How much silence ends the user's turn."""

    pre_roll_ms: int = 300
    """Audio kept from before speech onset, so the first syllable is not cut."""

    barge_in: bool = True
    """The user may talk over the reply, which stops it."""

    start_ms: int = 60
    """How much speech declares an onset (filters clicks and short noises)."""

    max_utterance_ms: int = 15000
    """The longest turn: after this the turn ends even without silence."""

    barge_in_start_ms: int | None = None
    """Speech needed to interrupt the reply; null = 240 ms with echo cancellation, else
    300 ms, so the device's own voice leaking into the microphone does not cut it off."""

    barge_in_level_dbfs: float | None = None
    """While the reply plays, microphone audio quieter than this (dB below full scale)
    cannot interrupt it. null = -45 with echo cancellation (the canceller's faint residue
    is not speech); without it, null = half-duplex (the echo-safe fallback: only the wake
    word or a command interrupts), or set a level above your speaker's echo."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from between("aggressiveness", self.aggressiveness, 0, 3)
        yield from ms("end_silence_ms", self.end_silence_ms, 100, 5000)
        yield from ms("pre_roll_ms", self.pre_roll_ms, 0, 2000)
        yield from ms("start_ms", self.start_ms, 20, 1000)
        yield from ms("max_utterance_ms", self.max_utterance_ms, 1000, 120_000)
        if self.barge_in_start_ms is not None:
            yield from ms("barge_in_start_ms", self.barge_in_start_ms, 20, 2000)
        if self.barge_in_level_dbfs is not None:
            yield from between("barge_in_level_dbfs", self.barge_in_level_dbfs, -90, 0, " dBFS")


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT broker (state, events, commands, Home Assistant discovery)."""

    host: str | None = None
    """Broker host name or address; None = MQTT off."""

    port: int = 1883
    """Broker port (8883 is the usual one for TLS)."""

    username: str | None = None
    """User name at the broker; None = anonymous."""

    password_file: Path | None = None
    """File holding the broker password; else the ``mqtt_password`` credential, if any."""

    tls: bool = False
    """Connect with TLS (always verified)."""

    ca_file: Path | None = None
    """CA bundle that signs the broker's certificate; None = the system's CAs."""

    cert_file: Path | None = None
    """Client certificate for TLS client authentication (with ``key_file``)."""

    key_file: Path | None = None
    """Private key of ``cert_file``."""

    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    """Every topic starts with this; the loader replaces ``<device.id>`` with the device id."""

    discovery_prefix: str | None = "homeassistant"
    """Home Assistant MQTT discovery prefix; None = no discovery."""

    keepalive_s: int = 60
    """MQTT keep-alive: the broker declares the device gone after 1.5 times this."""

    client_id: str | None = None
    """MQTT client id; None = derived from the device id."""

    remote_listen: bool = True
    """``cmd/listen`` opens the microphone without the wake word; False = MQTT may not (the
    command gets an ``error`` event, Home Assistant no listen button), ``ctl listen`` still may."""

    publish_text: bool = True
    """Publish what was said: ``transcript`` and ``reply`` events; False = no text of the
    user's or the bot's goes on MQTT (nor the two Home Assistant sensors that showed it)."""

    configuration_url: str | None = None
    """Home Assistant's "visit device" link on the device page (http://, https:// or
    homeassistant://); None = none."""

    suggested_area: str | None = None
    """The area Home Assistant puts the device in when it first sees it; None = none."""

    check_updates: bool = True
    """Ask PyPI once a day for the newest release and show it in Home Assistant's update
    entity (with discovery on); False = never ask, no update entity."""

    updates_url: str = PYPI_JSON_URL
    """Where to ask: PyPI's JSON API for coze-edge (https://; http:// only to loopback)."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        if self.host is not None:
            if not self.host.strip():
                yield "host", "must not be empty; null = MQTT off"
            elif "://" in self.host or "/" in self.host:
                yield "host", f"must be a host name or address, not a URL, got {show(self.host)}"
        yield from between("port", self.port, 1, 65535)
        yield from not_blank("username", self.username)
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            yield missing, "cert_file and key_file go together: set both or neither"
        yield from topic("topic_prefix", self.topic_prefix)
        if self.discovery_prefix is not None:
            yield from topic("discovery_prefix", self.discovery_prefix)
        yield from between("keepalive_s", self.keepalive_s, 5, 3600, " s")
        yield from not_blank("client_id", self.client_id, "must not be empty; null = derived")
        if self.configuration_url is not None:
            yield from url(
                "configuration_url", self.configuration_url, ("http", "https", "homeassistant")
            )
        yield from not_blank(
            "suggested_area", self.suggested_area, "must not be empty; null = none"
        )
        yield from url("updates_url", self.updates_url, ("http", "https"))
        with contextlib.suppress(ValueError):  # not a URL: url() said so
            parts = urllib.parse.urlsplit(self.updates_url)
            if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
                yield "updates_url", "http:// only to loopback (a test's fake PyPI): use https://"


@dataclass(frozen=True, slots=True)
class WakeConfig:
    """The wake word; without one, any speech the VAD hears starts a turn."""

    word: str | None = None
    """One of ``coze_edge.core.wake.WAKE_WORDS``, or None (VAD only)."""

    model: Path | None = None
    """A custom wake word instead: a microWakeWord model's manifest (``model.json``, its
    ``.tflite`` beside it); checked at start. Its name is the ``.tflite``'s."""

    sensitivity: float = 0.5
    """From 0 (fewest false wakes) to 1 (fewest missed wakes)."""

    follow_up_s: float = 5.0
    """After a reply, speech alone may answer for this long (0 = always say the wake word)."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from one_of("word", self.word, (*WAKE_WORDS, None))
        if self.word is not None and self.model is not None:
            yield "model", "set wake.word (a built-in wake word) or wake.model, not both"
        yield from between("sensitivity", self.sensitivity, 0, 1)
        yield from between("follow_up_s", self.follow_up_s, 0, 60)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging."""

    level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from one_of("level", self.level, LOG_LEVELS)


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """Programs run on events, for LED rings and displays."""

    on_state: str | None = None
    """Program and arguments run at every state change (split like a shell would, but run
    without one), with the state in $COZE_EDGE_HOOK_STATE; None = no hook. The program is
    an absolute path to an executable file, checked at start."""

    timeout_s: float = 5.0
    """A hook still running after this long is killed."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        if self.on_state is not None:
            try:
                argv = shlex.split(self.on_state)
            except ValueError as exc:
                yield "on_state", f"cannot split into arguments: {exc}"
            else:
                if not argv:
                    yield "on_state", "names no program"
                elif not Path(argv[0]).is_absolute():
                    # No $PATH search: what runs must not depend on the daemon's environment.
                    yield (
                        "on_state",
                        f"must start with the program's absolute path, got {show(argv[0])}",
                    )
        yield from between("timeout_s", self.timeout_s, 0.1, 60)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command tool of ``tools.commands``."""

    name: str
    """The tool's name, as the bot calls it."""
    argv: tuple[str, ...]
    """The program (an absolute path) and its arguments."""


@dataclass(frozen=True, slots=True)
class ToolsConfig:
    """Device-side plugins (Coze's 端插件): tools the bot may call on this device."""

    deadline_ms: int = 5000
    """The bot's tool calls are answered within this (Coze waits only so long); a call still
    running then is stopped and answered with an error."""

    max_output_bytes: int = 4096
    """The longest output of one call sent back to Coze; longer ones are cut."""

    builtin: bool = True
    """Offer the built-in tools: get_volume, set_volume, mute, stop, device_status,
    local_time."""

    commands: Mapping[str, Any] = field(default_factory=_empty)
    """Command tools: name -> the program (an absolute path) and its arguments, as a list,
    or as one string split like a shell would (no shell runs it). The call's arguments go to
    its stdin as JSON; its stdout is the output."""

    command_timeout_ms: int = 4000
    """A command tool still running after this is killed, with its process group."""

    def command_specs(self) -> list[CommandSpec]:
        """The command tools whose entries are well formed (``problems()`` names the rest)."""
        specs = []
        for name, value in self.commands.items():
            with contextlib.suppress(ValueError):
                specs.append(CommandSpec(name, command_argv(value)))
        return specs

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from ms("deadline_ms", self.deadline_ms, 500, 60_000)
        yield from between("max_output_bytes", self.max_output_bytes, 256, 65536, " bytes")
        yield from ms("command_timeout_ms", self.command_timeout_ms, 100, 60_000)
        if self.command_timeout_ms > self.deadline_ms:
            yield (
                "command_timeout_ms",
                (
                    f"must not exceed deadline_ms ({self.deadline_ms} ms), "
                    f"got {self.command_timeout_ms} ms"
                ),
            )
        for name, value in self.commands.items():
            key = f"commands.{name}"
            if not TOOL_NAME.fullmatch(name):
                yield (
                    key,
                    (
                        "not a tool name: lower-case letters, digits and _, starting with a "
                        "letter, at most 64"
                    ),
                )
            elif name in RESERVED_TOOLS:
                yield key, "the name of a built-in tool: choose another"
            try:
                argv = command_argv(value)
            except ValueError as exc:
                yield key, str(exc)
                continue
            if not argv:
                yield key, "names no program"
            elif not argv[0].startswith("/"):
                yield key, f"the program must be an absolute path, got {show(argv[0])}"


@dataclass(frozen=True, slots=True)
class HomeAssistantConfig:
    """Home Assistant tools: the bot reads and controls the entities exposed here."""

    url: str | None = None
    """Home Assistant's address, such as ``https://homeassistant.local:8123``; None = no
    Home Assistant tools. ``http://`` only to loopback, unless ``allow_insecure``."""

    token_file: Path | None = None
    """File holding a long-lived access token (Home Assistant: your profile, Security);
    else the ``homeassistant_token`` credential."""

    ca_file: Path | None = None
    """CA bundle that signs Home Assistant's certificate; None = the system's CAs."""

    allow_insecure: bool = False
    """Allow ``http://`` to a host other than loopback: the token then crosses the network
    in the clear, readable and usable by anyone on the path."""

    entities: str | None = None
    """The entities the bot may read, separated by spaces, commas or lines
    (``light.kitchen sensor.outside_temperature``); none other, whatever it asks."""

    services: Mapping[str, Any] = field(default_factory=_empty)
    """What the bot may do to them: a domain -> the services it may call on every listed
    entity of it (``light: [turn_on, turn_off]``), or an entity id -> those it may call on
    that one (``cover.garage_door: [open_cover]``). An entity without any can only be read."""

    def exposure(self) -> Exposure:
        """``entities`` and ``services`` parsed; ValueError if they cannot be."""
        return Exposure.parse(self.entities, self.services)

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        if self.url is not None:
            wrong = list(url("url", self.url, ("http", "https")))
            yield from wrong
            parts = urllib.parse.urlsplit(self.url) if not wrong else None
            if parts and parts.scheme == "http" and not self.allow_insecure:
                host = parts.hostname or ""
                if not is_loopback(host):
                    yield (
                        "url",
                        f"http:// to {host} would send the token unencrypted: use https://, "
                        "or set homeassistant.allow_insecure: true",
                    )
        try:
            self.exposure()
        except ValueError as exc:
            for line in str(exc).splitlines():
                key, _, message = line.partition(": ")
                yield key, message


Section = (
    CozeConfig
    | AuthConfig
    | DeviceConfig
    | AudioConfig
    | VadConfig
    | MqttConfig
    | WakeConfig
    | HooksConfig
    | ToolsConfig
    | HomeAssistantConfig
    | LogConfig
)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; build it with :func:`load_config` or :func:`config_from_mapping`."""

    coze: CozeConfig = field(default_factory=CozeConfig)
    """Coze: region, hosts, bot, voice, timeouts."""

    auth: AuthConfig = field(default_factory=AuthConfig)
    """How the device gets its token."""

    device: DeviceConfig = field(default_factory=DeviceConfig)
    """Device id and name."""

    state_dir: Path = DEFAULT_STATE_DIR
    """Tokens, binding, conversation id. The loader fills it: value, $STATE_DIRECTORY, default."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    """Microphone and speaker."""

    vad: VadConfig = field(default_factory=VadConfig)
    """Voice activity detection."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    """MQTT broker; off unless ``mqtt.host`` is set."""

    wake: WakeConfig = field(default_factory=WakeConfig)
    """Wake word."""

    hooks: HooksConfig = field(default_factory=HooksConfig)
    """Programs run on state changes."""

    tools: ToolsConfig = field(default_factory=ToolsConfig)
    """Device-side plugins: the tools the bot may call on this device."""

    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    """Home Assistant tools: what the bot may read and control there."""

    log: LogConfig = field(default_factory=LogConfig)
    """Logging."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with the values (not the files they name), with dotted keys."""
        for name in SECTIONS:
            section: Section = getattr(self, name)
            for key, message in section.problems():
                yield f"{name}.{key}", message


SECTIONS: Final[Mapping[str, type[Section]]] = types.MappingProxyType(
    {name: hint for name, hint in get_type_hints(Config).items() if hint is not Path}
)
"""Section name -> its dataclass, in the order of the file: Config's fields but state_dir."""

TOP_LEVEL: Final = tuple(key.name for key in dataclasses.fields(Config))
"""The keys at the top of the file, in order: the sections and ``state_dir``."""
