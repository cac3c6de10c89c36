"""
``coze-edge doctor``: checks what the daemon needs, one line per check.

Each line starts with ``ok``, ``warn`` or ``FAIL``, names the check, says what was found
and, when something is wrong, what to do about it. The exit code is 0 when nothing failed
(warnings allowed), 1 otherwise; a broken config never gets here (the CLI exits 78).

Local checks run first, in order: config, clock, state directory, audio, credentials. Then
the network checks run at the same time, each under its own timeout: MQTT, and for Coze DNS
first, then REST and the WebSocket handshake together. However many of them hang, a run takes
at most about three timeouts (audio, DNS, connections); the lines still come in a fixed
order. Secrets are never printed: a token or password is named by where it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import tempfile
import time
import urllib.parse
import wave
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Final, Literal, TextIO

import httpx

from coze_edge.adapters.coze_http import network_advice
from coze_edge.adapters.coze_ws import CozeSocket, SocketSettings
from coze_edge.config import Config, read_secret
from coze_edge.core.events import ChatUpdated, ServerError
from coze_edge.core.session import ERROR_HINTS, SessionSettings
from coze_edge.errors import (
    AuthenticationError,
    BrokerUnavailable,
    ConfigError,
    CozeAPIError,
    CozeEdgeError,
    CozeUnavailable,
    PermissionDeniedError,
)
from coze_edge.logs import register_secret

__all__ = ["Finding", "Status", "run_doctor"]

CHECK_TIMEOUT_S: Final = 10.0
"""The longest any one check may take (the config's connect timeout, if shorter, wins)."""

EARLIEST_SANE_TIME: Final = datetime(2025, 1, 1, tzinfo=UTC)
"""A clock before this is unset: a Pi without a real-time clock boots in the past until NTP
has run, and then every TLS certificate looks not yet valid."""

MAX_CLOCK_SKEW_S: Final = 120.0
"""More drift from Coze's clock than this gets a warning (token expiry is computed locally)."""

EXPIRY_WARNING_S: Final = 24 * 3600.0
"""A token that cannot be renewed gets a warning this long before it expires."""

LOGIN_HINT: Final = "run `coze-edge login`"


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check: one line of the report."""

    status: Status
    check: str
    detail: str
    """What was checked and what was found."""
    hint: str = ""
    """What to do about it; empty when there is nothing to do."""

    def line(self) -> str:
        text = f"{self.status.value:<4}  {self.check:<11}  {self.detail}"
        return f"{text} -> {self.hint}" if self.hint else text


def _ok(check: str, detail: str) -> Finding:
    return Finding(Status.OK, check, detail)


def _warn(check: str, detail: str, hint: str = "") -> Finding:
    return Finding(Status.WARN, check, detail, hint)


def _fail(check: str, detail: str, hint: str = "") -> Finding:
    return Finding(Status.FAIL, check, detail, hint)


async def run_doctor(
    config: Config,
    *,
    out: TextIO,
    env: Mapping[str, str] | None = None,
    timeout_s: float = CHECK_TIMEOUT_S,
    now: Callable[[], float] = time.time,
) -> int:
    """
    Check everything ``config`` needs and print one line per check to ``out``.

    Returns 0 when no check failed, 1 otherwise. ``env`` (default ``os.environ``) is where
    systemd's ``$CREDENTIALS_DIRECTORY`` is looked up; ``timeout_s`` bounds each check;
    ``now`` is the wall clock (the check of the clock itself reads it).
    """
    env = os.environ if env is None else env
    timeout_s = min(timeout_s, config.coze.connect_timeout_s)
    findings: list[Finding] = []

    def report(finding: Finding) -> None:
        findings.append(finding)
        print(finding.line(), file=out, flush=True)

    report(_check_config(config))
    report(_check_clock(now()))
    report(_check_state_dir(config.state_dir))
    audio_hint = "check the sound system (`coze-edge devices`)"
    for finding in await _bounded("audio", _check_audio(config), timeout_s, audio_hint):
        report(finding)
    if config.auth.method == "token_url":
        credentials = await _check_token_service(config, env, timeout_s, now())
    else:
        credentials = _check_credentials(config, env, now())
    report(credentials.finding)

    async with asyncio.TaskGroup() as tg:
        # Started together, reported in a fixed order.
        coze = tg.create_task(_check_coze(config, credentials.token, timeout_s, now))
        mqtt = tg.create_task(_bounded_one("mqtt", _check_mqtt(config, env, timeout_s), timeout_s))
        for finding in await coze:
            report(finding)
        report(await mqtt)

    failed = sum(f.status is Status.FAIL for f in findings)
    warned = sum(f.status is Status.WARN for f in findings)
    if failed:
        print(f"{failed} check(s) failed, {warned} warning(s)", file=out, flush=True)
        return 1
    print(f"all checks passed, {warned} warning(s)", file=out, flush=True)
    return 0


async def _bounded(
    check: str, work: Awaitable[list[Finding]], timeout_s: float, hint: str = "check the network"
) -> list[Finding]:
    """What ``work`` found, or one FAIL line when it took longer than ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except TimeoutError:
        return [_fail(check, f"no answer within {timeout_s:g} s", hint)]


async def _bounded_one(check: str, work: Awaitable[Finding], timeout_s: float) -> Finding:
    async def as_list() -> list[Finding]:
        return [await work]

    return (await _bounded(check, as_list(), timeout_s))[0]


# --- local checks -------------------------------------------------------------------------------


def _check_config(config: Config) -> Finding:
    return _ok(
        "config",
        f"loaded; device id {config.device.id}, bot {config.coze.bot_id}, "
        f"auth {config.auth.method}, audio {config.audio.backend}",
    )


def _check_clock(now: float) -> Finding:
    shown = _utc(now)
    if now < EARLIEST_SANE_TIME.timestamp():
        return _fail(
            "clock",
            f"system time is {shown}, before {EARLIEST_SANE_TIME:%Y-%m-%d}: TLS certificates "
            "will look not yet valid",
            "wait for NTP to set the clock (`timedatectl status`), or set it by hand",
        )
    return _ok("clock", f"system time {shown}")


def _check_state_dir(path: Path) -> Finding:
    check = "state_dir"
    fix = f"create {path} writable by the service user, or set state_dir"
    if path.exists() and not path.is_dir():
        return _fail(check, f"{path} is not a directory", fix)
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK | os.X_OK):
            return _ok(check, f"{path} does not exist yet; it can be created")
        return _fail(check, f"{path} does not exist and cannot be created", fix)
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return _fail(check, f"cannot write in {path}: {_reason(exc)}", fix)
    return _ok(check, f"{path} is writable")


async def _check_audio(config: Config) -> list[Finding]:
    audio = config.audio
    codec = [_check_opus()] if audio.codec == "opus" else []
    if audio.backend == "file":
        return [_check_file_input(audio.file_input), _check_file_output(audio.file_output), *codec]
    # PortAudio scans every host API when it starts: slow on some systems, so off the loop.
    devices = [
        await asyncio.to_thread(_check_sound_device, audio.input_device, "input"),
        await asyncio.to_thread(_check_sound_device, audio.output_device, "output"),
    ]
    return devices + codec


def _check_opus() -> Finding:
    from coze_edge.adapters import opus

    try:
        found = opus.version()
    except opus.OpusUnavailable as exc:
        return _fail("opus", str(exc), "apt install libopus0, or set audio.codec: pcm")
    return _ok("opus", f"{found} for the uplink")


def _check_file_input(path: Path | None) -> Finding:
    check = "audio in"
    if path is None:
        return _fail(check, "audio.file_input is not set", "set audio.file_input to a WAV file")
    try:
        with wave.open(str(path), "rb") as wav:
            seconds = wav.getnframes() / wav.getframerate()
            shape = f"{wav.getnchannels()} ch, {wav.getframerate()} Hz, {seconds:.1f} s"
    except (OSError, EOFError, wave.Error) as exc:
        return _fail(
            check, f"cannot read {path} as WAV: {_reason(exc)}", "set audio.file_input to a WAV"
        )
    return _ok(check, f"file {path} ({shape})")


def _check_file_output(path: Path | None) -> Finding:
    check = "audio out"
    if path is None:
        return _ok(check, "played audio is discarded (audio.file_output is not set)")
    directory = path.parent
    fix = f"create {directory} or point audio.file_output elsewhere"
    if path.is_dir():
        return _fail(check, f"{path} is a directory", "point audio.file_output at a file")
    if not directory.is_dir():
        return _fail(check, f"{directory} (the directory of {path.name}) does not exist", fix)
    if not os.access(directory, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        return _fail(check, f"cannot write {path}", fix)
    return _ok(check, f"file {path} (writable)")


def _check_sound_device(spec: str | int | None, kind: Literal["input", "output"]) -> Finding:
    check = f"audio {'in' if kind == 'input' else 'out'}"
    key = f"audio.{kind}_device"
    wanted = "the system default" if spec is None else f"{key} {spec!r}"
    try:
        from coze_edge.adapters.sound_devices import find_device

        device = find_device(spec, kind)
    except CozeEdgeError as exc:  # AudioDeviceLost: missing, ambiguous, or no PortAudio
        return _fail(check, f"{wanted}: {exc}", f"see `coze-edge devices` and set {key}")
    return _ok(check, f"{kind} device #{device.index} {device.name!r} ({wanted})")


# --- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Credentials:
    finding: Finding
    token: str | None
    """A token to try against Coze; None when there is none believed valid now."""


def _check_credentials(config: Config, env: Mapping[str, str], now: float) -> _Credentials:
    if config.auth.method == "pat":
        return _check_pat(config, env)
    return _check_stored_token(config.state_dir, now)


async def _check_token_service(
    config: Config, env: Mapping[str, str], timeout_s: float, now: float
) -> _Credentials:
    """``auth.method: token_url``: the device's secret, and a token the service gives for it."""
    from coze_edge.token_url import (
        TokenServiceClient,
        TokenServiceRefused,
        TokenServiceUnavailable,
    )

    check = "credentials"
    url, device = config.auth.token_url or "", config.device.id
    fix = (
        f"put the secret `coze-edge token-service issue-secret {device}` prints in a file "
        "(mode 600) and set auth.device_secret_file"
    )
    try:
        secret = read_secret(config.auth.device_secret_file, "device_secret", env=env)
    except ConfigError as exc:  # an unreadable or empty file, named with its key
        return _Credentials(_fail(check, _problems(exc), fix), None)
    if secret is None:
        missing = "no device secret (auth.device_secret_file unset, no device_secret credential)"
        return _Credentials(_fail(check, missing, fix), None)
    register_secret(secret)
    client = TokenServiceClient(
        url, device, lambda: secret, connect_timeout=timeout_s, read_timeout=timeout_s
    )
    try:
        token = await client.fetch(now=now)
    except TokenServiceRefused as exc:
        return _Credentials(_fail(check, exc.detail, fix), None)
    except TokenServiceUnavailable as exc:
        return _Credentials(_fail(check, str(exc), network_advice(url)), None)
    register_secret(token.access_token)
    lifetime = _duration(token.expires_at - token.obtained_at)
    return _Credentials(
        _ok(check, f"token from the token service for device {device} (valid {lifetime})"),
        token.access_token,
    )


def _check_pat(config: Config, env: Mapping[str, str]) -> _Credentials:
    check = "credentials"
    fix = "put a personal access token in a file (mode 600) and set auth.pat_file"
    try:
        pat = read_secret(config.auth.pat_file, "coze_pat", env=env)
    except ConfigError as exc:  # an unreadable or empty file, named with its key
        return _Credentials(_fail(check, _problems(exc), fix), None)
    if pat is None:
        return _Credentials(
            _fail(
                check, "no personal access token (auth.pat_file unset, no coze_pat credential)", fix
            ),
            None,
        )
    register_secret(pat)
    path = config.auth.pat_file
    found = f"personal access token from {path or 'the coze_pat credential'}"
    if path is not None and _world_readable(path):
        warning = _warn(check, f"{found}, readable by every user", f"chmod 600 {path}")
        return _Credentials(warning, pat)
    return _Credentials(_ok(check, found), pat)


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o004)
    except OSError:
        return False


def _check_stored_token(state_dir: Path, now: float) -> _Credentials:
    from coze_edge.adapters.token_store import TokenStore
    from coze_edge.core.tokens import Token

    check = "credentials"
    # Read here rather than with TokenStore.load(), which moves an unreadable file aside:
    # a check changes nothing.
    path = TokenStore(state_dir).path
    try:
        token = Token.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _Credentials(_fail(check, f"no saved login in {state_dir}", LOGIN_HINT), None)
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8, not JSON, or the wrong shape
        return _Credentials(_fail(check, f"cannot use {path}: {_reason(exc)}", LOGIN_HINT), None)
    register_secret(token.access_token)
    register_secret(token.refresh_token)
    expires = f"{_utc(token.expires_at)}"
    left = token.expires_at - now
    renewable = bool(token.refresh_token)
    if left <= 0:
        if renewable:
            return _Credentials(
                _ok(check, f"OAuth token expired at {expires}; the daemon renews it"), None
            )
        return _Credentials(
            _fail(check, f"OAuth token expired at {expires} and cannot be renewed", LOGIN_HINT),
            None,
        )
    if left < EXPIRY_WARNING_S and not renewable:
        return _Credentials(
            _warn(
                check,
                f"OAuth token expires at {expires} (in {_duration(left)}) and cannot be renewed",
                f"{LOGIN_HINT} before then",
            ),
            token.access_token,
        )
    renewal = "renewable" if renewable else "not renewable"
    return _Credentials(
        _ok(check, f"OAuth token valid until {expires} ({renewal})"), token.access_token
    )


# --- Coze ---------------------------------------------------------------------------------------

# Sent when there is no usable token: Coze still answers (with 401), which shows it is
# reachable over DNS, TCP and TLS even before the device is logged in.
_NO_TOKEN: Final = "coze-edge-doctor-no-token"


async def _check_coze(
    config: Config, token: str | None, timeout_s: float, now: Callable[[], float]
) -> list[Finding]:
    """DNS of both hosts first; then REST and WebSocket together."""
    dns = await _bounded_one("dns", _check_dns(config, timeout_s), timeout_s)
    if dns.status is Status.FAIL:
        skipped = "not tried: the host name does not resolve"
        return [dns, _fail("coze api", skipped), _fail("coze ws", skipped)]
    async with asyncio.TaskGroup() as tg:
        rest = tg.create_task(_bounded("coze api", _check_rest(config, token, now), timeout_s))
        ws = tg.create_task(
            _bounded_one("coze ws", _check_websocket(config, token, timeout_s), timeout_s)
        )
    return [dns, *rest.result(), ws.result()]


def _host_port(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    return parts.hostname or "", parts.port or (443 if secure else 80)


async def _check_dns(config: Config, timeout_s: float) -> Finding:
    loop = asyncio.get_running_loop()
    found: list[str] = []
    failed: list[str] = []
    hosts = dict.fromkeys(_host_port(url) for url in (config.coze.api_base, config.coze.ws_base))
    for host, port in hosts:
        try:
            async with asyncio.timeout(timeout_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            failed.append(f"{host}: {_reason(exc) if isinstance(exc, OSError) else 'timed out'}")
            continue
        addresses = dict.fromkeys(str(info[4][0]) for info in infos)
        found.append(f"{host} -> {', '.join(list(addresses)[:2])}")
    if failed:
        return _fail(
            "dns",
            f"cannot resolve {'; '.join(failed)}",
            "check the network connection and the DNS server (/etc/resolv.conf)",
        )
    return _ok("dns", "; ".join(found))


async def _check_rest(config: Config, token: str | None, now: Callable[[], float]) -> list[Finding]:
    from coze_edge.adapters.coze_http import CozeHttp

    check = "coze api"
    base = config.coze.api_base
    dates = _DateRecorder(now)
    try:
        async with CozeHttp(
            base,
            connect_timeout=config.coze.connect_timeout_s,
            read_timeout=config.coze.read_timeout_s,
            transport=dates.transport(),
        ) as http:
            voices = await http.voices(token or _NO_TOKEN)
    except AuthenticationError as exc:
        if token is None:
            found = _ok(check, f"{base} reachable; token not checked (no usable token)")
        else:
            # "token (...)", not "token: ...", which the mask would take for a secret's key
            refused = f"{base} refused the token ({exc.describe()})"
            found = _fail(check, refused, _token_hint(config))
    except PermissionDeniedError as exc:
        found = _warn(
            check,
            f"{base} accepted the token but not for listing voices: {exc.describe()}",
            "only `coze-edge voices` needs this; add the listVoice permission to use it",
        )
    except CozeAPIError as exc:
        found = _fail(check, f"{base} answered with an error: {exc.describe()}", _api_hint(exc))
    except CozeUnavailable as exc:
        found = _fail(check, f"cannot reach {base}: {exc}", network_advice(base))
    else:
        found = _ok(check, f"{base} reachable; token accepted ({len(voices)} voice(s) listed)")
    return [found, *dates.skew_findings()]


async def _check_websocket(config: Config, token: str | None, timeout_s: float) -> Finding:
    check = "coze ws"
    settings = SocketSettings(
        ws_base=config.coze.ws_base,
        bot_id=config.coze.bot_id,
        device_id=config.device.id,
        open_timeout_s=timeout_s,
    )
    where = f"{config.coze.ws_base} (bot {config.coze.bot_id})"
    try:
        sock = await CozeSocket.open(settings, token or _NO_TOKEN)
    except (AuthenticationError, PermissionDeniedError) as exc:
        if token is None:
            return _ok(check, f"{where} reachable; handshake not checked (no usable token)")
        hint = (
            _token_hint(config)
            if isinstance(exc, AuthenticationError)
            else "give the token the chat permission and publish the bot to the API channel"
        )
        return _fail(check, f"{where}: {exc.describe()}", hint)
    except CozeAPIError as exc:
        return _fail(check, f"{where}: {exc.describe()}", _api_hint(exc))
    except CozeUnavailable as exc:
        return _fail(
            check, f"handshake with {where} failed: {exc}", network_advice(config.coze.ws_base)
        )
    logid = sock.logid or "-"
    try:
        if token is None:
            return _ok(check, f"{where} accepted the handshake (logid={logid})")
        return await _check_session(sock, config, where, timeout_s)
    finally:
        with contextlib.suppress(CozeEdgeError, OSError, TimeoutError):
            async with asyncio.timeout(timeout_s):
                await sock.close()


async def _check_session(sock: CozeSocket, config: Config, where: str, timeout_s: float) -> Finding:
    """A handshake is not a session: Coze refuses an unpublished bot or a token without
    the chat permission only when the session is configured. Send ``chat.update`` as the
    daemon does and wait for ``chat.updated`` or an ``error``."""
    check = "coze ws"
    update = SessionSettings(
        capture_rate=config.audio.capture_rate,
        output_rate=config.audio.output_rate,
        voice_id=config.coze.voice_id,
        user_id=config.coze.user_id or config.device.id,
    ).chat_update(None)
    try:
        async with asyncio.timeout(timeout_s):
            await sock.send(update)
            async for event in sock.events():
                if isinstance(event, ChatUpdated):
                    return _ok(check, f"{where} accepted a voice session (logid={sock.logid})")
                if isinstance(event, ServerError):
                    hint = ERROR_HINTS.get(event.code or 0, "quote the logid to Coze support")
                    return _fail(
                        check,
                        f"{where} refused the voice session: {event.msg} (code {event.code}, "
                        f"logid={event.logid or sock.logid or '-'})",
                        hint,
                    )
    except TimeoutError:
        return _fail(
            check,
            f"{where} accepted the handshake but not the session within {timeout_s:g} s "
            f"(logid={sock.logid or '-'})",
            "Coze may be overloaded: try again later; quote the logid to Coze support",
        )
    except CozeUnavailable as exc:
        return _fail(
            check, f"{where} closed the session: {exc}", network_advice(config.coze.ws_base)
        )
    raise AssertionError("events() ends only by raising")  # pragma: no cover


def _token_hint(config: Config) -> str:
    if config.auth.method == "pat":
        return "put a valid personal access token in auth.pat_file"
    if config.auth.method == "token_url":
        return "the token service's tokens are refused: check its JWT app's permissions"
    return LOGIN_HINT


def _api_hint(exc: CozeAPIError) -> str:
    if exc.http_status is not None and exc.http_status >= 500:
        return "Coze has trouble: try again later; quote the logid to Coze support"
    return "check coze.bot_id and coze.api_base; quote the logid to Coze support"


class _DateRecorder:
    """Keeps the local time and the Date header of each Coze response, to compare clocks."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.samples: list[tuple[float, float]] = []
        """(local time, server time) pairs."""

    def transport(self) -> httpx.AsyncBaseTransport:
        """An ordinary (verifying) transport that shows each response to :meth:`add`."""
        recorder = self

        class Recording(httpx.AsyncHTTPTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                response = await super().handle_async_request(request)
                recorder.add(recorder._now(), response.headers.get("date"))
                return response

        return Recording()

    def add(self, now: float, header: str | None) -> None:
        if not header:
            return
        with contextlib.suppress(TypeError, ValueError):
            self.samples.append((now, parsedate_to_datetime(header).timestamp()))

    def skew_findings(self) -> list[Finding]:
        if not self.samples:
            return []
        local, server = self.samples[-1]
        skew = local - server
        if abs(skew) <= MAX_CLOCK_SKEW_S:
            return [_ok("clock skew", f"within {MAX_CLOCK_SKEW_S:g} s of Coze's clock")]
        direction = "ahead of" if skew > 0 else "behind"
        return [
            _warn(
                "clock skew",
                f"system time is {_duration(abs(skew))} {direction} Coze's ({_utc(server)})",
                "enable NTP (`timedatectl set-ntp true`)",
            )
        ]


# --- MQTT ---------------------------------------------------------------------------------------


async def _check_mqtt(config: Config, env: Mapping[str, str], timeout_s: float) -> Finding:
    from coze_edge.adapters.mqtt import BrokerSettings, Will, connect

    check = "mqtt"
    mqtt = config.mqtt
    if mqtt.host is None:
        return _ok(check, "off (mqtt.host is not set)")
    try:
        settings = BrokerSettings.from_config(config, env=env)
    except ConfigError as exc:  # an unusable password, CA or key file
        return _fail(check, _problems(exc), "fix the file the key names")
    # Its own client id: a broker drops the older of two clients with the same id, and that
    # would be the running daemon.
    settings = replace(
        settings,
        client_id=f"{settings.client_id}-doctor-{os.getpid()}",
        connect_timeout_s=timeout_s,
    )
    how = ", ".join(
        [
            "TLS" if mqtt.tls else "no TLS",
            f"user {mqtt.username}" if mqtt.username else "anonymous",
        ]
    )
    will = Will(topic=f"{mqtt.topic_prefix}/doctor", payload=b"", retain=False, qos=0)
    try:
        async with connect(settings, will=will, on_message=_ignore):
            pass
    except BrokerUnavailable as exc:
        text = str(exc)
        if "not authorized" in text.lower() or "bad user name or password" in text.lower():
            hint = "check mqtt.username and the password in mqtt.password_file"
        else:
            hint = "check mqtt.host and mqtt.port, and that the broker is running"
        return _fail(check, f"{text} ({how})", hint)
    return _ok(check, f"connected to {mqtt.host}:{mqtt.port} ({how})")


def _ignore(message: object) -> None:
    pass


# --- wording ------------------------------------------------------------------------------------


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} h"
    if seconds >= 120:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _problems(exc: ConfigError) -> str:
    return "; ".join(f"{key}: {message}" if key else message for key, message in exc.problems)
