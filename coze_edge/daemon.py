"""
``coze-edge run``: the composition root. Builds the parts from the config and hands their
services to the supervisor.

Services: the conversation (audio + Coze), the token keeper (OAuth, or the vendor's token
service), the binding, the MQTT
publisher, the update check, the systemd watchdog, the state hook, the ctl socket, the
microphone health check, a one-shot that says READY, and one that ends the daemon when the
owner asks for a restart (exit 75: the unit's ``RestartForceExitStatus`` starts it again;
exiting rather than re-executing leaves systemd in charge, releases everything the process
held, sound devices included, and a daemon started by hand just stops).

The published state is made in one place (:class:`~coze_edge.status_board.StatusBoard`)
and fans out from here to systemd's STATUS=, the state hook and MQTT.

Imports inside functions are only for what may be missing or is heavy: PortAudio
(``sound_devices``), WebRTC's audio processing (the ``aec`` extra) and the wake-word model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coze_edge import __version__
from coze_edge.adapters import systemd
from coze_edge.adapters.audio_io import Microphone, Speaker
from coze_edge.adapters.coze_http import CozeHttp
from coze_edge.adapters.coze_ws import SocketSettings
from coze_edge.adapters.earcon_files import EarconFileError, load_earcons
from coze_edge.adapters.file_audio import FileMicrophone, FileSpeaker
from coze_edge.adapters.instance_lock import only_instance
from coze_edge.adapters.opus import OpusSettings, OpusUnavailable
from coze_edge.adapters.opus import version as opus_version
from coze_edge.adapters.stores import ControlsStore, ConversationStore, conversation_owner
from coze_edge.adapters.token_store import TokenStore
from coze_edge.adapters.vad_webrtc import WebrtcVad
from coze_edge.adapters.voice_clips import Voice, VoiceClipError, load_voice
from coze_edge.adapters.wake_model import WakeModel, WakeModelError, load_wake_model
from coze_edge.binding import ensure_bound
from coze_edge.config import Config, read_secret
from coze_edge.conversation import IDLE_OUTPUT_BLOCK_MS, Conversation
from coze_edge.core.backoff import backoff
from coze_edge.core.commands import (
    AnyCommand,
    Command,
    RestartDaemon,
    SetTurnDetection,
    SetWakeWord,
)
from coze_edge.core.earcons import EarconKind
from coze_edge.core.endpointer import Endpointer
from coze_edge.core.session import Session, SessionSettings
from coze_edge.core.spoken_code import spoken_code
from coze_edge.core.status import Controls, DeviceStatus, State
from coze_edge.core.tools import ToolError
from coze_edge.credentials import TokenSource, pat_tokens
from coze_edge.ctl import CtlServer, socket_path
from coze_edge.errors import (
    EXIT_RESTART,
    AudioDeviceLost,
    AuthError,
    ConfigError,
    Restart,
    RestartRequested,
    TransientError,
)
from coze_edge.flood_log import FloodLog
from coze_edge.hooks import StateHook
from coze_edge.latest import EventQueue
from coze_edge.login import OAuthTokens
from coze_edge.publisher import Publisher
from coze_edge.status_board import StatusBoard
from coze_edge.supervisor import Service, supervise
from coze_edge.token_url import TokenServiceTokens, token_service_tokens
from coze_edge.tools.configured import configured_toolbox
from coze_edge.updates import UpdateChecker

if TYPE_CHECKING:
    from coze_edge.adapters.apm import AudioProcessor

log = logging.getLogger(__name__)

INSTALL_AEC = "pip install coze-edge[aec]"

BARGE_IN_START_MS = 300
"""Speech that interrupts a reply when no echo canceller runs (echo must not do it)."""
BARGE_IN_START_MS_AEC = 240
"""... and with echo cancellation. Shorter is quicker but riskier: with 80 ms, the echo
path check (scripts/aec-check) passed 27 of 27 fixed-delay runs, yet on the drifting path
a leak of the reply's own voice cut it off (mid-reply, and once reply after reply). With
the residual-echo check, the echo alone still met up to 180 ms of it on a loaded machine
(scripts/audio-run: the most ``barge_in_start_ms`` its echo alone met), so it stays."""

BARGE_IN_DUCK_MS_AEC = 20
"""With echo cancellation: speech that lowers (ducks) the reply by 40 dB before it is cut,
so that it yields at once (scripts/audio-run, both echo paths: the duck heard 155 ms after
the user's onset p50, the cut 370-380 ms)."""

BARGE_IN_LEVEL_DBFS_AEC = -45.0
"""With it, this only keeps the canceller's faint residue (which webrtcvad, deaf to level,
may call speech) from interrupting."""

READY_TIMEOUT_S = 15.0
"""READY=1 is sent after the first connection attempt, or after this long at the latest."""

HELD_COMMANDS = 16
"""Commands kept for the next conversation while one is rebuilt; more are dropped."""

MICROPHONE_CHECK_S = 5.0
"""How often the microphone's health is looked at (Home Assistant's audio problem sensor)."""


def open_audio(config: Config) -> tuple[Microphone, Speaker]:
    """The microphone and speaker the config names (file backend or PortAudio)."""
    audio = config.audio
    block_ms = audio.capture_block_ms(echo_cancellation_wanted(config))
    if audio.backend == "file":
        assert audio.file_input is not None  # the config loader requires it
        output = audio.file_output or Path(os.devnull)
        return (
            FileMicrophone(audio.file_input, block_ms=block_ms, realtime=audio.file_realtime),
            FileSpeaker(output, rate=audio.output_rate, realtime=audio.file_realtime),
        )
    from coze_edge.adapters.sound_devices import SoundDeviceMicrophone, SoundDeviceSpeaker

    return (
        SoundDeviceMicrophone(
            audio.input_device,
            capture_rate=audio.capture_rate,
            block_ms=block_ms,
            channel=audio.input_channel,
            gain_db=audio.input_gain_db,
        ),
        SoundDeviceSpeaker(
            audio.output_device,
            rate=audio.output_rate,
            block_ms=audio.output_block_ms,
            prebuffer_ms=audio.prebuffer_ms,
            keep_open_s=audio.output_keep_open_s,
            warmup_ms=audio.output_warmup_ms,
            idle_block_ms=IDLE_OUTPUT_BLOCK_MS,
        ),
    )


def echo_cancellation_wanted(config: Config) -> bool:
    """``audio.echo_cancellation`` resolved: ``auto`` is on for PortAudio devices when the
    ``aec`` extra loads (a WAV file never hears the speaker)."""
    setting = config.audio.echo_cancellation
    if setting == "auto":
        from coze_edge.adapters import apm

        return config.audio.backend == "sounddevice" and apm.available()
    return bool(setting)


def cleaned(microphone: Microphone, speaker: Speaker, config: Config) -> AudioProcessor | None:
    """
    Puts ``microphone`` behind WebRTC's audio processing if any of it is on: echo cancellation
    (with what ``speaker`` plays as the reference), noise suppression, high-pass, AGC.
    """
    audio = config.audio
    echo = echo_cancellation_wanted(config)
    if not (echo or audio.noise_suppression or audio.high_pass or audio.auto_gain):
        if audio.backend == "sounddevice" and config.vad.barge_in:
            log.info(
                "echo cancellation off (%s): %s",
                "audio.echo_cancellation: false"
                if audio.echo_cancellation is False
                else f"not installed: {INSTALL_AEC}",
                "speech does not interrupt a reply (half-duplex; see vad.barge_in_level_dbfs)"
                if config.vad.barge_in_level_dbfs is None
                else f"only speech above {config.vad.barge_in_level_dbfs:g} dBFS interrupts",
            )
        return None
    from coze_edge.adapters.apm import ApmUnavailable, AudioProcessor

    try:
        processor = AudioProcessor(
            rate=audio.capture_rate,
            echo_cancellation=echo,
            noise_suppression=audio.noise_suppression,
            high_pass=audio.high_pass,
            auto_gain=audio.auto_gain,
        )
    except ApmUnavailable as exc:
        key = "audio.echo_cancellation" if echo else "audio.noise_suppression"
        raise ConfigError([(key, str(exc))]) from exc
    if not echo:
        microphone.on_capture = processor.process_capture
        return processor
    # A speaker underrun or a microphone overrun moves the echo's delay: the canceller is
    # told, at the next block either way (both hooks run on the event loop).
    xruns = (microphone.overruns, speaker.underruns)

    def moved() -> None:
        nonlocal xruns
        if (microphone.overruns, speaker.underruns) != xruns:
            xruns = (microphone.overruns, speaker.underruns)
            processor.path_moved()

    def render(pcm: bytes, rate: int) -> None:
        moved()
        processor.process_render(pcm, rate)

    def capture(pcm: bytes) -> bytes:
        moved()
        return processor.process_capture(pcm)

    speaker.on_render = render
    microphone.on_capture = capture
    return processor


def custom_wake_word(config: Config) -> WakeModel | None:
    """``wake.model``'s model, checked (again: the file may have changed since the config
    was loaded); a ConfigError naming the key if it cannot be used."""
    if config.wake.model is None:
        return None
    try:
        model = load_wake_model(config.wake.model)
    except WakeModelError as exc:
        raise ConfigError([("wake.model", str(exc))]) from None
    log.info("wake word: %s (%s), a custom model", model.manifest.name, model.manifest.phrase)
    return model


def custom_earcons(config: Config) -> dict[EarconKind, bytes]:
    """``audio.earcon_files`` read and converted to the speaker's rate, by event."""
    sounds: dict[EarconKind, bytes] = {}
    for kind, name in config.audio.earcon_files.items():
        try:
            sounds.update(load_earcons({kind: name}, config.audio.output_rate))
        except EarconFileError as exc:
            raise ConfigError([(f"audio.earcon_files.{kind}", str(exc))]) from None
    return sounds


def uplink_opus(config: Config) -> OpusSettings | None:
    """The Opus settings when ``audio.codec`` is opus; libopus is loaded now, so a missing
    library is a configuration error at start, not a failure at the first connection."""
    audio = config.audio
    if audio.codec != "opus":
        return None
    settings = OpusSettings(audio.capture_rate, audio.opus_bitrate, audio.append_ms)
    try:
        settings.encoder()
    except OpusUnavailable as exc:
        raise ConfigError([("audio.codec", str(exc))]) from exc
    log.info(
        "uplink: Opus %d bit/s in %d ms packets (%s)",
        audio.opus_bitrate,
        audio.append_ms,
        opus_version(),
    )
    return settings


def session_settings(
    config: Config,
    conversation_id: str | None,
    *,
    echo_cancelled: bool = False,
    turn_detection: str | None = None,
    tools: frozenset[str] = frozenset(),
) -> SessionSettings:
    """The session's settings; barge-in is more cautious when no echo canceller runs.
    ``turn_detection``: the owner's choice (Controls), else the config's; ``tools``: the
    names of the device-side plugins the toolbox offers."""
    vad = config.vad
    start = vad.barge_in_start_ms
    if start is None:
        start = BARGE_IN_START_MS_AEC if echo_cancelled else BARGE_IN_START_MS
    level = vad.barge_in_level_dbfs
    if level is None and echo_cancelled:
        level = BARGE_IN_LEVEL_DBFS_AEC
    duck = 0
    if echo_cancelled:
        duck = BARGE_IN_DUCK_MS_AEC if vad.barge_in_duck_ms is None else vad.barge_in_duck_ms
    if config.audio.backend != "sounddevice":
        min_rms = 0.0  # a WAV file never hears the speaker
    elif level is None:
        min_rms = math.inf  # half-duplex: the reply's echo would interrupt it
    else:
        min_rms = 32768 * 10 ** (level / 20)
    return SessionSettings(
        barge_in_min_rms=min_rms,
        capture_rate=config.audio.capture_rate,
        output_rate=config.audio.output_rate,
        chunk_ms=config.audio.append_ms,
        input_codec=config.audio.codec,
        reply_timeout_s=config.coze.reply_timeout_ms / 1000,
        max_utterance_s=config.vad.max_utterance_ms / 1000,
        barge_in=config.vad.barge_in,
        voice_id=config.coze.voice_id,
        user_id=config.coze.user_id or config.device.id,
        conversation_id=conversation_id,
        server_vad=(turn_detection or config.coze.turn_detection) == "server_vad",
        end_silence_ms=config.vad.end_silence_ms,
        follow_up_s=config.wake.follow_up_s,
        start_ms=config.vad.start_ms,
        barge_in_start_ms=start,
        barge_in_duck_ms=duck,
        custom_variables=config.coze.custom_variables,
        meta_data=config.coze.meta_data,
        parameters=config.coze.parameters,
        tool_names=tools,
        tool_deadline_s=config.tools.deadline_ms / 1000,
        tool_output_bytes=config.tools.max_output_bytes,
    )


class Daemon:
    """Everything ``coze-edge run`` runs, for one config.

    ``tokens``: where the Coze token comes from; by default what the config says (a
    personal access token, or the OAuth device login kept alive by a token keeper, which
    then needs ``http``). ``audio`` makes the microphone and speaker each time the
    conversation (re)starts; tests and the soak pass their own.
    """

    def __init__(
        self,
        config: Config,
        *,
        tokens: TokenSource | None = None,
        http: CozeHttp | None = None,
        on_status: Callable[[DeviceStatus], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
        audio: Callable[[], tuple[Microphone, Speaker]] | None = None,
    ) -> None:
        self.config = config
        self._open_audio = audio or (lambda: open_audio(config))
        self._opus = uplink_opus(config)
        self._env = dict(os.environ if env is None else env)
        self._extra_status = on_status
        self._extra_event = on_event
        self._hook: StateHook | None = None
        if config.hooks.on_state:
            self._hook = StateHook(config.hooks.on_state, timeout_s=config.hooks.timeout_s)
        self._wake_model = custom_wake_word(config)
        self._earcon_sounds = custom_earcons(config)
        configured = Controls(
            volume=config.audio.volume,
            wake_word=self._wake_model.manifest.name if self._wake_model else config.wake.word,
            turn_detection=config.coze.turn_detection,
        )
        self.board = StatusBoard(
            ControlsStore(config.state_dir, configured),
            default_volume=config.audio.volume,
            on_change=self._fan_out,
            version=__version__,
        )
        self.status = self.board.status
        """The newest published state (MQTT, ``ctl status``)."""
        self.login = self.board.login
        """The pending device login, if any."""
        self.events = EventQueue(maxsize=256)
        self._errors = FloodLog(log)  # a server may send error events by the thousand
        self._http = http
        self._keeper: OAuthTokens | TokenServiceTokens | None = None
        if tokens is None:
            tokens = self._credentials(http)
        elif isinstance(tokens, OAuthTokens | TokenServiceTokens) and tokens.managed:
            self._keeper = tokens
        self._tokens = tokens
        self._conversations = ConversationStore(config.state_dir, whose_conversation(config))
        self._conversation: Conversation | None = None
        self.audio_processor: AudioProcessor | None = None
        """The running conversation's echo canceller (its counters), if any."""
        self._voice: Voice | None = None
        if config.auth.speak_code and isinstance(self._keeper, OAuthTokens):
            try:
                self._voice = load_voice(config.auth.speak_code_language)
            except VoiceClipError as exc:
                raise ConfigError([("auth.speak_code_language", str(exc))]) from None
        self.started = asyncio.Event()
        self._rebuild = asyncio.Event()  # the wake word or turn detection changed
        self._restart = asyncio.Event()  # the owner asked for a restart
        self._held: list[tuple[Command, asyncio.Future[None]]] = []
        """Commands that came while the conversation is rebuilt: the next one gets them."""
        self._rebuilding = False
        self.toolbox = configured_toolbox(config, self, self._env)
        """The device-side plugins the bot may call."""

    def _credentials(self, http: CozeHttp | None) -> TokenSource:
        if self.config.auth.method == "pat":
            return pat_tokens(self.config)
        if self.config.auth.method == "token_url":
            self._keeper = token_service_tokens(
                self.config, managed=True, on_fault=self.board.auth_fault
            )
            return self._keeper
        if http is None:
            raise ValueError("the device login needs an HTTP client for Coze")
        if not self.config.auth.client_id:
            raise AuthError("auth.client_id is needed for the device login")
        self._keeper = OAuthTokens(
            http,
            TokenStore(self.config.state_dir),
            self.config.auth.client_id,
            self.config.auth.workspace_id,
            on_prompt=self.board.login_prompt,
            managed=True,
        )
        return self._keeper

    # ------------------------------------------------------------------ fan-out

    def _fan_out(self, status: DeviceStatus) -> None:
        self._deliver_held(status)
        if self._hook is not None:
            self._hook.changed(status)
        systemd.status(f"{status.state.value}{', muted' if status.muted else ''}", env=self._env)
        if self._extra_status is not None:
            self._extra_status(status)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "error":
            self._errors.warning("error events", "! %s", _describe(event))
        elif kind == "turn":
            log.info("turn: %s", _describe(event))
        elif kind != "wake_word":  # the detector logs its own
            log.info("%s: %s", kind, event.get("text", ""))
        self.events.put_nowait(event)
        if self._extra_event is not None:
            self._extra_event(event)

    @property
    def conversation(self) -> Conversation | None:
        """The running conversation (its ``metrics``), None while audio is being reopened."""
        return self._conversation

    def submit(self, command: AnyCommand) -> asyncio.Future[None] | None:
        """A command from MQTT or the ctl socket; resolves once carried out."""
        if isinstance(command, SetWakeWord | SetTurnDetection | RestartDaemon):
            self._device_command(command)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if (self._rebuilding or self._held) and len(self._held) < HELD_COMMANDS:
            # The conversation is being built anew (a second or so): this command is for
            # the next one, not the one on its way out.
            held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._held.append((command, held))
            return held
        if self._conversation is None:
            log.warning("! %s ignored: the conversation is not running", type(command).__name__)
            return None
        return self._conversation.submit(command)

    def command(self, command: AnyCommand) -> None:
        """A command whose completion nobody waits for (MQTT)."""
        self.submit(command)

    def _deliver_held(self, status: DeviceStatus) -> None:
        """Once the rebuilt conversation is ready (Coze answered: it would drop a ``say``
        before), it gets the commands that came meanwhile."""
        conversation = self._conversation
        if not self._held or self._rebuilding or conversation is None:
            return
        if status.state in (State.STARTING, State.CONNECTING):
            return
        held, self._held = self._held, []
        for command, done in held:
            conversation.submit(command).add_done_callback(_resolve(done))

    def _device_command(self, command: SetWakeWord | SetTurnDetection | RestartDaemon) -> None:
        log.info("command: %s", type(command).__name__)
        controls = self.board.controls
        if isinstance(command, RestartDaemon):
            self._restart.set()
            return
        if isinstance(command, SetWakeWord):
            changed = replace(controls, wake_word=command.word)
        else:
            changed = replace(controls, turn_detection=command.mode)
        if changed != controls:
            # Kept (controls.json) and shown at once; the conversation is built anew with it.
            self.board.set_controls(changed)
            self._rebuilding = True
            self._rebuild.set()

    async def carry_out(self, command: Command) -> None:
        """A command from a built-in tool, carried out before this returns."""
        done = self.submit(command)
        if done is None:
            raise ToolError("the speaker is restarting its audio; try again in a moment")
        await done

    def device_status(self) -> DeviceStatus:
        """The state as published (for the ``device_status`` tool)."""
        return self.status.get_nowait()

    # ------------------------------------------------------------------ services

    async def _run_conversation(self) -> None:
        config = self.config
        self._rebuild.clear()  # what changed until now is what this one is built with
        controls = self.board.controls
        microphone, speaker = self._open_audio()
        processor = cleaned(microphone, speaker, config)
        endpointer = Endpointer(
            WebrtcVad(config.vad.aggressiveness, config.audio.capture_rate),
            pre_roll_ms=config.vad.pre_roll_ms,
            start_ms=config.vad.start_ms,
            end_silence_ms=config.vad.end_silence_ms,
        )
        wake = None
        if controls.wake_word:
            from coze_edge.adapters.wakeword import WakeWordDetector  # TensorFlow Lite: ~4 MB

            custom = self._wake_model
            wake = WakeWordDetector(
                controls.wake_word,
                model=custom if custom and custom.manifest.name == controls.wake_word else None,
                sensitivity=config.wake.sensitivity,
                rate=config.audio.capture_rate,
                on_detected=lambda word: self._on_event({"type": "wake_word", "word": word}),
            )
        session = Session(
            session_settings(
                config,
                self._conversations.load(),
                echo_cancelled=processor is not None and processor.echo_cancellation,
                turn_detection=controls.turn_detection,
                tools=self.toolbox.names,
            ),
            endpointer,
            wake=wake,
        )
        conversation = Conversation(
            session,
            socket_settings=SocketSettings(
                ws_base=config.coze.ws_base,
                bot_id=config.coze.bot_id,
                workflow_id=config.coze.workflow_id,
                device_id=config.device.id,
                open_timeout_s=config.coze.connect_timeout_s,
                ping_interval_s=config.coze.ping_interval_s,
                ping_timeout_s=config.coze.ping_interval_s,
                opus=self._opus,
            ),
            tokens=self._tokens,
            microphone=microphone,
            speaker=speaker,
            board=self.board,
            on_event=self._on_event,
            remember_conversation=self._conversations.save,
            earcons=config.audio.earcons,
            earcon_sounds=self._earcon_sounds,
            refused_retry_s=config.coze.refused_retry_s,
            tools=self.toolbox,
        )
        self.audio_processor = processor
        if processor is not None:
            processor.on_double_talk = conversation.talked_over
        async with speaker:
            self.board.audio_fault(None)
            self._conversation = conversation
            self.started.set()
            self._rebuilding = False  # what comes now is for this one, held until it is ready
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(conversation.run(), name="conversation")
                    tasks.create_task(self._rebuild_when_changed(), name="rebuild")
            finally:
                self._conversation = None
                self._errors.flush()

    async def _rebuild_when_changed(self) -> None:
        await self._rebuild.wait()
        raise Restart("the wake word or the turn detection changed")

    async def _restart_when_asked(self) -> None:
        await self._restart.wait()
        log.info("restarting as asked: stopping, exit code %d", EXIT_RESTART)
        raise RestartRequested("the owner asked for a restart")

    async def _watch_microphone(self) -> None:
        """Tells the board when an open microphone delivers nothing (a lost device is the
        conversation's failure, reported where it happens)."""
        while True:
            await asyncio.sleep(MICROPHONE_CHECK_S)
            conversation = self._conversation
            if conversation is not None:
                silent = not conversation.audio_healthy(within_s=MICROPHONE_CHECK_S)
                problem = f"no audio from the microphone for {MICROPHONE_CHECK_S:g} s"
                self.board.microphone_problem(problem if silent else None)

    def _conversation_failed(self, exc: TransientError) -> None:
        if isinstance(exc, AudioDeviceLost):
            # The supervisor reopens the devices after a backoff; until then, say why.
            self.board.audio_fault(str(exc))

    async def _announce_ready(self) -> None:
        """READY=1 once audio is open and the first connection was attempted."""
        await self.started.wait()
        conversation = self._conversation
        if conversation is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(READY_TIMEOUT_S):
                    await conversation.first_attempt.wait()
        systemd.ready(env=self._env)
        log.info("ready (device id %s)", self.config.device.id)

    def audio_healthy(self) -> bool:
        conversation = self._conversation
        return conversation is not None and conversation.audio_healthy()

    def services(self, extra: list[Service] | None = None) -> list[Service]:
        services = [
            Service("conversation", self._run_conversation, on_failure=self._conversation_failed),
            Service("ready", self._announce_ready),
            Service("restart", self._restart_when_asked),
            Service("microphone-health", self._watch_microphone),
        ]
        if self._keeper is not None:
            services.append(
                Service(
                    "token-keeper",
                    self._keeper.run,
                    delays=self._keeper_delays,
                    on_failure=self._no_token,
                )
            )
        if self._voice is not None:
            services.append(Service("speak-login-code", self._speak_login_code))
        if self.config.device.connector_id and self._http is not None:
            http, tokens, config = self._http, self._tokens, self.config
            services.append(Service("binding", lambda: ensure_bound(config, http, tokens)))
        interval = systemd.watchdog_interval(self._env)
        if interval is not None:
            watchdog = systemd.Watchdog(interval=interval, healthy=self.audio_healthy)
            services.append(Service("watchdog", watchdog.run))
        if self._hook is not None:
            services.append(Service("state-hook", self._hook.run))
        return services + (extra or [])

    def _keeper_delays(self) -> Iterator[float]:
        """Before the first login the owner may be waiting for a code on a device whose
        network just came up: try again every few seconds. A refresh that fails has the
        old token's remaining life to succeed in: back off further."""
        keeper = self._keeper
        assert keeper is not None
        # A fleet asks one token service: after a failure it must not come back in step.
        fast = isinstance(keeper, OAuthTokens) and keeper.logged_out
        return backoff(first=1.0, cap=5.0 if fast else 60.0)

    def _no_token(self, exc: TransientError) -> None:
        self.board.connect_problem(str(exc))

    async def _speak_login_code(self) -> None:
        """``auth.speak_code``: while a login waits, say its code on the speaker, again
        every ``speak_code_every_s`` and at once when a new code replaces it."""
        assert self._voice is not None
        voice, every_s = self._voice, self.config.auth.speak_code_every_s
        said: str | None = None
        while True:
            prompt = self.login.get_nowait()
            conversation = self._conversation
            if prompt is None or conversation is None:
                await self.board.login_changed()
                continue
            left_min = (prompt.expires_at - datetime.now(UTC)).total_seconds() / 60
            speech = spoken_code(
                prompt.user_code,
                minutes_left=left_min,
                renewed=said is not None and said != prompt.user_code,
            )
            rate = conversation.devices[1].rate
            conversation.announce(await asyncio.to_thread(voice.render, speech, rate))
            log.info("said the login code on the speaker; again in %.0f s", every_s)
            said = prompt.user_code
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await self.board.login_changed()


def _resolve(future: asyncio.Future[None]) -> Callable[[asyncio.Future[None]], None]:
    """A done-callback that resolves ``future`` too."""

    def resolve(_: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    return resolve


def whose_conversation(config: Config) -> str:
    """Whose a remembered conversation is: the API host, the bot, the account (the OAuth
    app and workspace, or a fingerprint of the personal access token) and the user."""
    auth = config.auth
    account: str | None = f"oauth:{auth.client_id}:{auth.workspace_id or ''}"
    if auth.method == "token_url":
        account = f"token_url:{auth.token_url}"
    elif auth.method == "pat":
        account = "pat:" + (read_secret(auth.pat_file, "coze_pat") or "")
    return conversation_owner(
        config.coze.api_base, config.coze.bot_id, account, config.coze.user_id or config.device.id
    )


def _describe(event: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in event.items() if k != "type" and v is not None)


async def run_daemon(config: Config) -> int:
    """The body of ``coze-edge run``; returns the exit code of a clean stop."""
    log.info("coze-edge %s starting (device id %s)", __version__, config.device.id)
    with only_instance(config.state_dir):
        async with CozeHttp(
            config.coze.api_base,
            connect_timeout=config.coze.connect_timeout_s,
            read_timeout=config.coze.read_timeout_s,
        ) as http:
            daemon = Daemon(config, http=http)
            ctl = CtlServer(
                socket_path(config.state_dir, os.environ),
                submit=daemon.submit,
                status=daemon.status.get_nowait,
                login=daemon.login.get_nowait,
            )
            extra = [Service("ctl", ctl.run)]
            if config.mqtt.host:
                extra += mqtt_services(config, daemon)
            restart = False
            try:
                await supervise(daemon.services(extra))
            except* RestartRequested:
                restart = True
            finally:
                systemd.stopping()
    log.info("stopped")
    return EXIT_RESTART if restart else 0


def mqtt_services(config: Config, daemon: Daemon) -> list[Service]:
    """The MQTT publisher, and the update check behind its update entity (with Home
    Assistant discovery and ``mqtt.check_updates``)."""
    checker = None
    if config.mqtt.discovery_prefix is not None and config.mqtt.check_updates:
        checker = UpdateChecker(config.mqtt.updates_url, config.state_dir, __version__)
    publisher = Publisher(
        config,
        status=daemon.status,
        events=daemon.events,
        on_command=daemon.command,
        login=daemon.login,
        sw_version=__version__,
        diagnostics=daemon.board.diagnostics,
        update=checker.info if checker is not None else None,
    )
    services = [publisher.service()]
    if checker is not None:
        services.append(Service("update-check", checker.run))
    return services
