"""
The configuration: one YAML file plus ``COZE_EDGE_*`` overrides, turned into frozen dataclasses.

Attribute names equal the YAML keys (``config.mqtt.port`` is ``mqtt: {port: ...}``). The loader
checks everything and raises one :class:`ConfigError` that lists every problem with its dotted
key, so the user fixes the file in one pass. What the loader resolves is never left unset:
``coze.api_base``/``ws_base`` (from ``coze.region``), ``device.id`` (from ``/etc/machine-id``),
``state_dir`` (from ``$STATE_DIRECTORY``) and ``mqtt.topic_prefix`` (``<device.id>`` filled in).

In the file, ``null`` for a key that cannot be null means "the default". Secrets never sit in
the file: :func:`read_secret` reads them from the files the ``*_file`` keys name, or from
systemd's ``$CREDENTIALS_DIRECTORY``.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import shlex
import types
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, get_type_hints

import yaml

from coze_edge.core.identity import device_id_from_machine_id, is_int64_id
from coze_edge.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CREDENTIAL_KEYS",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_MACHINE_ID",
    "DEFAULT_STATE_DIR",
    "DEFAULT_TOPIC_PREFIX",
    "DEVICE_ID_PLACEHOLDER",
    "ENV_PREFIX",
    "REGION_HOSTS",
    "AudioConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "CozeConfig",
    "DeviceConfig",
    "HooksConfig",
    "LogConfig",
    "MqttConfig",
    "VadConfig",
    "WakeConfig",
    "config_from_mapping",
    "load_config",
    "read_secret",
    "resolve_config_path",
    "warn_if_world_readable",
]

log = logging.getLogger(__name__)

ENV_PREFIX: Final = "COZE_EDGE_"
CONFIG_ENV: Final = "COZE_EDGE_CONFIG"
# COZE_EDGE_* variables that are not config overrides: the config path, and the scripts' venv.
# Not config keys: the venv of the scripts, and what hooks get (a hook may run coze-edge).
_NOT_OVERRIDES: Final = frozenset(
    {CONFIG_ENV, "COZE_EDGE_VENV", "COZE_EDGE_HOOK_STATE", "COZE_EDGE_HOOK_MUTED"}
)

DEFAULT_CONFIG_PATH: Final = Path("/etc/coze-edge/config.yaml")
DEFAULT_STATE_DIR: Final = Path("/var/lib/coze-edge")
DEFAULT_MACHINE_ID: Final = Path("/etc/machine-id")
DEVICE_ID_PLACEHOLDER: Final = "<device.id>"
DEFAULT_TOPIC_PREFIX: Final = f"coze-edge/{DEVICE_ID_PLACEHOLDER}"

REGION_HOSTS: Final[Mapping[str, tuple[str, str]]] = types.MappingProxyType(
    {
        "cn": ("https://api.coze.cn", "wss://ws.coze.cn"),
        "com": ("https://api.coze.com", "wss://ws.coze.com"),
    }
)
"""Region -> (REST base, WebSocket base)."""

CREDENTIAL_KEYS: Final[Mapping[str, str]] = types.MappingProxyType(
    {"coze_pat": "auth.pat_file", "mqtt_password": "mqtt.password_file"}
)
"""systemd credential name -> the config key that can name the same secret as a file."""

# Rates Coze accepts for PCM in and out; webrtcvad takes only some of them.
COZE_RATES: Final = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
VAD_RATES: Final = (8000, 16000, 32000, 48000)
WAKE_WORDS: Final = ("okay_nabu", "alexa", "hey_jarvis", "hey_mycroft")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

Problem = tuple[str, str]


# --- checks shared by the sections' problems() methods ---------------------------------------


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(key: str, value: str | None, choices: tuple[str | None, ...]) -> Iterator[Problem]:
    if value not in choices:
        words = [c for c in choices if c is not None]
        names = _alternatives([*words, "null"] if None in choices else words)
        hint = _hint(value.lower(), words) if isinstance(value, str) else ""
        yield key, f"must be {names}, got {_show(value)}{hint}"


def _alternatives(words: list[str]) -> str:
    """'a, b or c'."""
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else "".join(words)


def _between(key: str, value: float, low: float, high: float, unit: str = "") -> Iterator[Problem]:
    if not low <= value <= high:  # written so that NaN fails too
        yield (
            key,
            f"must be between {_num(low)}{unit} and {_num(high)}{unit}, got {_num(value)}{unit}",
        )


def _positive(key: str, value: float, high: float, unit: str) -> Iterator[Problem]:
    if not 0 < value <= high:
        yield (
            key,
            f"must be more than 0{unit} and at most {_num(high)}{unit}, got {_num(value)}{unit}",
        )


def _ms(key: str, value: int, low: int, high: int, *, step: int = 1) -> Iterator[Problem]:
    yield from _between(key, value, low, high, " ms")
    if value % step:
        yield key, f"must be a multiple of {step} ms, got {value} ms"


def _url(key: str, value: str, schemes: tuple[str, ...]) -> Iterator[Problem]:
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        yield key, f"is not a URL, got {_show(value)}"
        return
    if parts.scheme not in schemes or not parts.netloc:
        allowed = " or ".join(f"{s}://" for s in schemes)
        yield key, f"must be a URL starting with {allowed}, got {_show(value)}"
    elif parts.query or parts.fragment:
        yield key, f"must be a base URL without ?query or #fragment, got {_show(value)}"


def _not_blank(key: str, value: str | None, what: str = "must not be empty") -> Iterator[Problem]:
    if value is not None and not value.strip():
        yield key, what


def _topic(key: str, value: str) -> Iterator[Problem]:
    if not value:
        yield key, "must not be empty"
    elif "+" in value or "#" in value:
        yield key, f"must not contain the MQTT wildcards + or #, got {_show(value)}"
    elif value.endswith("/"):
        yield key, f"must not end in '/', got {_show(value)}"
    elif value.startswith("$"):
        yield key, f"must not start with '$' (reserved for the broker), got {_show(value)}"
    elif "\0" in value:
        yield key, "must not contain a NUL character"


# --- the settings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CozeConfig:
    """Which Coze to talk to, which bot, and how patiently."""

    region: str = "cn"
    """``cn`` (coze.cn) or ``com`` (coze.com); picks the default hosts below."""

    api_base: str = ""
    """REST base URL (OAuth, bind, voices); ``""`` = the region's. http:// is for the simulator."""

    ws_base: str = ""
    """WebSocket base URL (the chat path is ``/v1/chat``); ``""`` = the region's."""

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

    def __post_init__(self) -> None:
        api, ws = REGION_HOSTS.get(self.region, ("", ""))
        object.__setattr__(self, "api_base", (self.api_base or api).rstrip("/"))
        object.__setattr__(self, "ws_base", (self.ws_base or ws).rstrip("/"))

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from _one_of("region", self.region, tuple(REGION_HOSTS))
        if self.api_base:  # "" only with an unknown region, which is reported above
            yield from _url("api_base", self.api_base, ("http", "https"))
        if self.ws_base:
            yield from _url("ws_base", self.ws_base, ("ws", "wss"))
        if not self.bot_id.strip():
            yield "bot_id", "required: the id of the bot to talk to (from its URL in Coze)"
        yield from _not_blank("voice_id", self.voice_id, "must not be empty; null = bot default")
        yield from _not_blank("user_id", self.user_id, "must not be empty; null = the device id")
        yield from _one_of(
            "turn_detection", self.turn_detection, ("client_interrupt", "server_vad")
        )
        yield from _ms("reply_timeout_ms", self.reply_timeout_ms, 1000, 300_000)
        yield from _positive("connect_timeout_s", self.connect_timeout_s, 300, " s")
        yield from _positive("read_timeout_s", self.read_timeout_s, 600, " s")
        yield from _positive("ping_interval_s", self.ping_interval_s, 600, " s")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How the device gets its Coze token."""

    method: str = "device_code"
    """``device_code`` (OAuth device flow: a code typed on a phone) or ``pat``."""

    client_id: str | None = None
    """The OAuth app (type TV/device/CLI) to log in with; required for ``device_code``."""

    workspace_id: str | None = None
    """Log in to this workspace only (workspace-scoped device flow); None = account-wide."""

    pat_file: Path | None = None
    """File holding a personal access token (``pat``); else the ``coze_pat`` credential."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from _one_of("method", self.method, ("device_code", "pat"))
        if self.method == "device_code" and not (self.client_id or "").strip():
            yield "client_id", "required with method device_code: the OAuth app's client id"
        yield from _not_blank("workspace_id", self.workspace_id)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """This device, as Coze and Home Assistant see it."""

    id: str = ""
    """Positive int64 in decimal. The loader always fills it: configured, else from machine-id."""

    name: str = "coze-edge"
    """Label shown in the Coze channel and in Home Assistant."""

    connector_id: str | None = None
    """Custom channel (connector) id; when set, the device binds itself to it once."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        if self.id and not is_int64_id(self.id):  # "" means "not resolved": the loader says why
            yield (
                "id",
                (
                    "must be a positive int64 in decimal (1 to 9223372036854775807, "
                    f"no sign or leading zeros), got {_show(self.id)}"
                ),
            )
        yield from _not_blank("name", self.name)
        yield from _not_blank("connector_id", self.connector_id)


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Microphone and speaker: which devices, which rates, which block sizes."""

    backend: str = "sounddevice"
    """``sounddevice`` (PortAudio devices) or ``file`` (WAV files: tests, demos)."""

    input_device: str | int | None = None
    """Microphone: a name (substring, see ``coze-edge devices``) or index; None = default."""

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

    volume: int = 100
    """Speaker volume at start, in percent."""

    earcons: bool = True
    """Play short sounds when listening starts and ends."""

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
        yield from _one_of("backend", self.backend, ("sounddevice", "file"))
        for key, device in (
            ("input_device", self.input_device),
            ("output_device", self.output_device),
        ):
            if isinstance(device, int) and device < 0:
                yield key, f"a device index must be 0 or more, got {device}"
            elif isinstance(device, str):
                yield from _not_blank(key, device, "must not be empty; null = system default")
        if self.backend == "file" and self.file_input is None:
            yield "file_input", "required with backend file: the WAV to use as the microphone"
        if self.output_rate not in COZE_RATES:
            yield "output_rate", f"must be {_rates(COZE_RATES)} Hz, got {self.output_rate}"
        if self.capture_rate not in VAD_RATES:
            yield "capture_rate", f"must be {_rates(VAD_RATES)} Hz, got {self.capture_rate}"
        yield from _ms("block_ms", self.block_ms, 20, 200, step=10)
        yield from _one_of("codec", self.codec, ("pcm", "opus"))
        if self.chunk_ms is not None:
            yield from _ms(
                "chunk_ms", self.chunk_ms, 20, 60 if self.codec == "opus" else 100, step=20
            )
        yield from _between("opus_bitrate", self.opus_bitrate, 6000, 128000, " bit/s")
        if self.codec == "opus" and self.capture_rate not in (8000, 16000, 48000):
            yield (
                "capture_rate",
                f"Opus runs at 8000, 16000 or 48000 Hz here, got {self.capture_rate}",
            )
        yield from _ms("prebuffer_ms", self.prebuffer_ms, 0, 2000)
        yield from _between("volume", self.volume, 0, 100)
        echo = self.echo_cancellation
        if isinstance(echo, str) and echo != "auto":
            yield "echo_cancellation", f"must be auto, true or false, got {echo!r}"


def _rates(rates: tuple[int, ...]) -> str:
    return _alternatives([str(rate) for rate in rates])


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
        yield from _between("aggressiveness", self.aggressiveness, 0, 3)
        yield from _ms("end_silence_ms", self.end_silence_ms, 100, 5000)
        yield from _ms("pre_roll_ms", self.pre_roll_ms, 0, 2000)
        yield from _ms("start_ms", self.start_ms, 20, 1000)
        yield from _ms("max_utterance_ms", self.max_utterance_ms, 1000, 120_000)
        if self.barge_in_start_ms is not None:
            yield from _ms("barge_in_start_ms", self.barge_in_start_ms, 20, 2000)
        if self.barge_in_level_dbfs is not None:
            yield from _between("barge_in_level_dbfs", self.barge_in_level_dbfs, -90, 0, " dBFS")


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

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        if self.host is not None:
            if not self.host.strip():
                yield "host", "must not be empty; null = MQTT off"
            elif "://" in self.host or "/" in self.host:
                yield "host", f"must be a host name or address, not a URL, got {_show(self.host)}"
        yield from _between("port", self.port, 1, 65535)
        yield from _not_blank("username", self.username)
        if (self.cert_file is None) != (self.key_file is None):
            missing = "key_file" if self.key_file is None else "cert_file"
            yield missing, "cert_file and key_file go together: set both or neither"
        yield from _topic("topic_prefix", self.topic_prefix)
        if self.discovery_prefix is not None:
            yield from _topic("discovery_prefix", self.discovery_prefix)
        yield from _between("keepalive_s", self.keepalive_s, 5, 3600, " s")
        yield from _not_blank("client_id", self.client_id, "must not be empty; null = derived")


@dataclass(frozen=True, slots=True)
class WakeConfig:
    """The wake word; without one, any speech the VAD hears starts a turn."""

    word: str | None = None
    """``okay_nabu``, ``alexa``, ``hey_jarvis``, ``hey_mycroft``, or None (VAD only)."""

    sensitivity: float = 0.5
    """From 0 (fewest false wakes) to 1 (fewest missed wakes)."""

    follow_up_s: float = 5.0
    """After a reply, speech alone may answer for this long (0 = always say the wake word)."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from _one_of("word", self.word, (*WAKE_WORDS, None))
        yield from _between("sensitivity", self.sensitivity, 0, 1)
        yield from _between("follow_up_s", self.follow_up_s, 0, 60)


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Logging."""

    level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with these values; keys are relative to the section."""
        yield from _one_of("level", self.level, LOG_LEVELS)


@dataclass(frozen=True, slots=True)
class HooksConfig:
    """Programs run on events, for LED rings and displays."""

    on_state: str | None = None
    """Program and arguments run at every state change (split like a shell would, but run
    without one), with the state in $COZE_EDGE_HOOK_STATE; None = no hook."""

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
        yield from _between("timeout_s", self.timeout_s, 0.1, 60)


Section = (
    CozeConfig
    | AuthConfig
    | DeviceConfig
    | AudioConfig
    | VadConfig
    | MqttConfig
    | WakeConfig
    | HooksConfig
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

    log: LogConfig = field(default_factory=LogConfig)
    """Logging."""

    def problems(self) -> Iterator[Problem]:
        """What is wrong with the values (not the files they name), with dotted keys."""
        for name in _SECTIONS:
            section: Section = getattr(self, name)
            for key, message in section.problems():
                yield f"{name}.{key}", message


_SECTIONS: Final[Mapping[str, type[Section]]] = types.MappingProxyType(
    {
        "coze": CozeConfig,
        "auth": AuthConfig,
        "device": DeviceConfig,
        "audio": AudioConfig,
        "vad": VadConfig,
        "mqtt": MqttConfig,
        "wake": WakeConfig,
        "hooks": HooksConfig,
        "log": LogConfig,
    }
)
_TOP_LEVEL: Final = (
    "coze",
    "auth",
    "device",
    "state_dir",
    "audio",
    "vad",
    "mqtt",
    "wake",
    "hooks",
    "log",
)


# --- loading ----------------------------------------------------------------------------------


def resolve_config_path(cli_path: str | Path | None, env: Mapping[str, str]) -> Path:
    """
    The config file to read: ``-c FILE``, else ``$COZE_EDGE_CONFIG``, else
    ``$CONFIGURATION_DIRECTORY/config.yaml`` (systemd; the first if it lists several),
    else ``/etc/coze-edge/config.yaml``.
    """
    if cli_path is not None and str(cli_path):
        return Path(cli_path)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    directories = [d for d in env.get("CONFIGURATION_DIRECTORY", "").split(":") if d]
    if directories:
        return Path(directories[0]) / "config.yaml"
    return DEFAULT_CONFIG_PATH


def load_config(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    machine_id_path: Path = DEFAULT_MACHINE_ID,
) -> Config:
    """
    Read, override from ``env`` (default ``os.environ``), resolve and check the config file.

    Raises ConfigError listing every problem: an unreadable file, invalid YAML (with its line),
    a top level that is not a mapping, and everything :func:`config_from_mapping` finds.
    """
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [("", f"cannot read the file: {exc.strerror or exc}")], source=source
        ) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError([("", _yaml_problem(exc))], source=source) from exc
    if data is None:  # an empty file: every default, and the problems that follow from that
        data = {}
    if not isinstance(data, Mapping):
        problem = (
            f"expected a mapping of sections (coze:, audio:, ...) at the top, got {_kind(data)}"
        )
        raise ConfigError([("", problem)], source=source)
    return config_from_mapping(data, env=env, source=source, machine_id_path=machine_id_path)


def config_from_mapping(
    data: Mapping[Any, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: str = "config",
    machine_id_path: Path = DEFAULT_MACHINE_ID,
) -> Config:
    """
    The config that ``data`` (a parsed YAML file) describes, after the ``COZE_EDGE_*`` overrides
    in ``env`` (default ``os.environ``); resolves what was left unset and checks everything.

    Raises ConfigError(problems, source=source) listing every problem with its dotted key.
    """
    env = os.environ if env is None else env
    problems: list[Problem] = []
    data, origins = _apply_overrides(data, env, problems)

    for key in data:
        if key not in _TOP_LEVEL:
            problems.append((_key_name(key), _unknown(key, _TOP_LEVEL)))

    state_dir = _resolve_state_dir(data.get("state_dir"), env, problems)
    values: dict[str, dict[str, Any]] = {}
    for name, cls in _SECTIONS.items():
        values[name] = _read_section(name, cls, data.get(name), problems)

    device = values["device"]
    if device.get("id") is None or device["id"] == "":
        device["id"] = _machine_device_id(machine_id_path, problems)
    if device["id"]:  # else device.id says why, and the placeholder stays
        prefix = values["mqtt"].get("topic_prefix", DEFAULT_TOPIC_PREFIX)
        values["mqtt"]["topic_prefix"] = prefix.replace(DEVICE_ID_PLACEHOLDER, device["id"])

    config = Config(
        coze=CozeConfig(**values["coze"]),
        auth=AuthConfig(**values["auth"]),
        device=DeviceConfig(**values["device"]),
        state_dir=state_dir,
        audio=AudioConfig(**values["audio"]),
        vad=VadConfig(**values["vad"]),
        mqtt=MqttConfig(**values["mqtt"]),
        wake=WakeConfig(**values["wake"]),
        hooks=HooksConfig(**values["hooks"]),
        log=LogConfig(**values["log"]),
    )
    # A value of the wrong type was left at its default: say only what was wrong with the value.
    reported = {key for key, _ in problems}
    problems += [(key, message) for key, message in config.problems() if key not in reported]
    problems += _file_problems(config.audio)

    if problems:
        problems = [(key, _with_origin(key, message, origins)) for key, message in problems]
        problems.sort(key=_section_order)  # stable: within a section, the order found
        raise ConfigError(problems, source=source)
    return config


def _apply_overrides(
    data: Mapping[Any, Any], env: Mapping[str, str], problems: list[Problem]
) -> tuple[dict[Any, Any], dict[str, str]]:
    """``data`` with the ``COZE_EDGE_*`` overrides applied, and dotted key -> variable name."""
    merged = dict(data)
    origins: dict[str, str] = {}
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable in _NOT_OVERRIDES:
            continue
        section, sep, key = variable[len(ENV_PREFIX) :].lower().partition("__")
        try:
            value = yaml.safe_load(env[variable])
        except yaml.YAMLError as exc:
            problems.append((variable, f"not a YAML value: {_yaml_problem(exc)}"))
            continue
        if not sep:  # COZE_EDGE_<KEY>: a top-level key
            if section in _SECTIONS:
                problems.append(
                    (variable, f"{section} is a section: set COZE_EDGE_{section.upper()}__<KEY>")
                )
            elif section not in _TOP_LEVEL:
                problems.append(
                    (variable, f"unknown top-level key {section!r}{_hint(section, _TOP_LEVEL)}")
                )
            else:
                merged[section] = value
                origins[section] = variable
            continue
        if section not in _SECTIONS:
            problems.append(
                (variable, f"unknown section {section!r}{_hint(section, list(_SECTIONS))}")
            )
            continue
        fields = _field_names(_SECTIONS[section])
        if key not in fields:
            problems.append((variable, f"unknown key {section}.{key}{_hint(key, fields)}"))
            continue
        existing = merged.get(section)
        if existing is None:
            merged[section] = {key: value}
        elif isinstance(existing, Mapping):
            merged[section] = {**existing, key: value}
        else:  # the file's section is not a mapping: that is reported on its own
            continue
        origins[f"{section}.{key}"] = variable
    return merged, origins


def _read_section(
    name: str, cls: type[Section], raw: object, problems: list[Problem]
) -> dict[str, Any]:
    """The fields of section ``name`` that have the right type, converted; the rest reported."""
    if raw is None:  # "mqtt:" with nothing under it
        return {}
    if not isinstance(raw, Mapping):
        problems.append((name, f"expected a mapping of keys, got {_kind(raw)}"))
        return {}
    hints = get_type_hints(cls)
    fields = _field_names(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{name}.{_key_name(key)}"
        if key not in fields:
            problems.append((dotted, _unknown(key, fields)))
            continue
        converted = _convert(hints[key], value)
        if isinstance(converted, _Wrong):
            problems.append((dotted, f"expected {converted.expected}, got {_show(value)}"))
        elif converted is not _DEFAULT:
            values[key] = converted
    return values


def _resolve_state_dir(raw: object, env: Mapping[str, str], problems: list[Problem]) -> Path:
    """The configured state_dir, else the first of ``$STATE_DIRECTORY``, else the default."""
    converted = _convert(Path | None, raw)
    if isinstance(converted, _Wrong):
        problems.append(("state_dir", f"expected {converted.expected}, got {_show(raw)}"))
    elif isinstance(converted, Path):
        return converted
    directories = [d for d in env.get("STATE_DIRECTORY", "").split(":") if d]
    return Path(directories[0]) if directories else DEFAULT_STATE_DIR


def _machine_device_id(path: Path, problems: list[Problem]) -> str:
    """The device id derived from the machine id in ``path``; "" (and a problem) if unusable."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        problems.append(("device.id", f"cannot read {path} ({reason}): set device.id"))
        return ""
    # systemd writes "uninitialized" until the first boot completes: not unique to this machine
    if not text or text == "uninitialized":
        problems.append(("device.id", f"{path} holds no machine id yet: set device.id"))
        return ""
    return device_id_from_machine_id(text)


def _file_problems(audio: AudioConfig) -> Iterator[Problem]:
    """The files the file backend needs: an input it can read, an output it can create."""
    if audio.backend != "file":
        return
    if audio.file_input is not None:
        source = audio.file_input
        if not source.is_file():
            what = "is a directory" if source.is_dir() else "does not exist"
            yield "audio.file_input", f"{source} {what}"
        elif not os.access(source, os.R_OK):
            yield "audio.file_input", f"{source} is not readable"
    if audio.file_output is not None:
        sink = audio.file_output
        if sink.is_dir():
            yield "audio.file_output", f"{sink} is a directory"
        elif not sink.parent.is_dir():
            yield "audio.file_output", f"{sink.parent} (its directory) does not exist"


def _with_origin(key: str, message: str, origins: Mapping[str, str]) -> str:
    variable = origins.get(key)
    return f"{message} (from {variable})" if variable else message


def _section_order(problem: Problem) -> int:
    top = problem[0].partition(".")[0]
    return _TOP_LEVEL.index(top) if top in _TOP_LEVEL else len(_TOP_LEVEL)


# --- value conversion -------------------------------------------------------------------------


class _Default:
    """The value given was null, for a key that cannot be null: keep the default."""


_DEFAULT: Final = _Default()


@dataclass(frozen=True, slots=True)
class _Wrong:
    expected: str


_TYPE_NAMES: Final[Mapping[object, str]] = types.MappingProxyType(
    {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
)


def _convert(hint: Any, value: object) -> object:
    """
    ``value`` as the field type ``hint`` wants it, ``_DEFAULT``, or ``_Wrong``.

    bool is never an int; an int is fine for a float and for a str (YAML reads an unquoted
    ``bot_id: 7496347519799787557`` as an int); a path is a non-empty string without NUL.
    """
    options = getattr(hint, "__args__", None) or (hint,)
    allowed = tuple(t for t in options if t is not type(None))
    nullable = len(allowed) < len(options)
    if value is None:
        return None if nullable else _DEFAULT
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue
        if kind is int and isinstance(value, int):
            return value
        if kind is float and isinstance(value, float):
            return value
        if kind is float and isinstance(value, int):
            try:
                return float(value)
            except OverflowError:  # past 1.8e308: not a float, say so below
                continue
        if kind is str and isinstance(value, str):
            return value
        if kind is Path and isinstance(value, str) and value and "\0" not in value:
            return Path(value)
    if str in allowed and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    names = [_TYPE_NAMES[kind] for kind in allowed] + (["null"] if nullable else [])
    return _Wrong(" or ".join(names))


def _field_names(cls: type[Section]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _key_name(key: object) -> str:
    return key if isinstance(key, str) else repr(key)


def _unknown(key: object, known: tuple[str, ...]) -> str:
    """'unknown key', with the section the key belongs in, or the likeliest intended key."""
    name = _key_name(key)
    homes = [f"{s}.{name}" for s, cls in _SECTIONS.items() if name in _field_names(cls)]
    if homes:  # e.g. bot_id at the top, or host under coze:
        return f"unknown key (did you mean {' or '.join(homes)}?)"
    if name in _SECTIONS and name not in known:
        return f"unknown key ({name} is a section of its own, at the top)"
    return f"unknown key{_hint(name, known)}"


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string"}
    return next((text for t, text in names.items() if isinstance(value, t)), _show(value))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(mark, yaml.Mark):
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, but a key given twice in one mapping is an error, not a silent override."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; SafeLoader reports it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


# --- secrets ----------------------------------------------------------------------------------


def warn_if_world_readable(path: Path) -> bool:
    """Log a warning if every user on the machine may read ``path``; whether that was so."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # the read that follows reports it
    if mode & 0o004:
        log.warning("! %s is readable by every user on this machine: chmod 600 it", path)
        return True
    return False


def read_secret(
    path: Path | None, credential: str, *, env: Mapping[str, str] | None = None
) -> str | None:
    """
    A secret, stripped: from ``path`` if given (a ``*_file`` key), else from the systemd
    credential ``$CREDENTIALS_DIRECTORY/<credential>`` if there is one, else None.

    An unreadable or empty file is a ConfigError naming the key or credential. The secret is
    never logged; a file that every user may read gets a warning.
    """
    env = os.environ if env is None else env
    if path is not None:
        key = CREDENTIAL_KEYS.get(credential, credential)
    else:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory or not (Path(directory) / credential).exists():
            return None
        path = Path(directory) / credential
        key = f"credential {credential}"
    warn_if_world_readable(path)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([(key, f"cannot read {path}: {exc.strerror or exc}")]) from exc
    except ValueError as exc:
        raise ConfigError([(key, f"{path} is not UTF-8 text")]) from exc
    if not secret:
        raise ConfigError([(key, f"{path} is empty")])
    return secret
