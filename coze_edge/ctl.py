"""
Local control of a running daemon over a unix socket (``coze-edge ctl COMMAND``).

The daemon listens on ``$RUNTIME_DIRECTORY/ctl.sock`` under systemd (``/run/coze-edge``),
else on ``<state_dir>/ctl.sock``; mode 0660, so the service's group may use it and nobody
else. The client looks in those places (:func:`socket_places`) and, when none answers, says
where it looked and why each failed. One request per connection:
a JSON line ``{"command": NAME, "argument": TEXT}``; one JSON line back:
``{"ok": true, "status": {...}}`` or ``{"ok": false, "error": "..."}`` (with ``"busy":
true`` when refused for want of room, not for what it asked). The commands are
the MQTT ones and go through the same parser, so neither can run programs or touch files.
Clients are bounded (how many at once, how long, how large, how deep): see :class:`CtlServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from coze_edge.core.commands import CTL_COMMANDS, CommandError, QueryStatus, parse_command
from coze_edge.core.status import DeviceStatus, LoginPrompt, login_payload
from coze_edge.errors import EXIT_UNAVAILABLE, EXIT_USAGE

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 64 * 1024
"""Longest request line: ``say`` with its 4,000 characters, each JSON-escaped (12 bytes for
a character outside the BMP), fits."""
MAX_JSON_DEPTH: Final = 4
"""A request is one flat object; Python's json recurses per level (RecursionError past ~1000)."""
MAX_CONNECTIONS: Final = 16
"""Clients served at once. The daemon has LimitNOFILE file descriptors in all: without a cap,
a thousand idle clients took them all, and with them the microphone, Coze and MQTT."""
ACCEPT_BACKLOG: Final = 32
"""Connections the kernel queues for us, and asyncio accepts in one go. Each accepted one
holds a descriptor for a few loop turns even when refused at once: a flood of 1,500 idle
clients peaked at 257 descriptors with asyncio's 100, at 145 with 32 (LimitNOFILE=512)."""
REQUEST_DEADLINE_S: Final = 2.0
"""A client sends its whole request within this, or is closed; ``coze-edge ctl`` sends at once."""
IDLE_GRACE_S: Final = 0.25
"""At the cap, a client that has sent no request for this long is closed to make room."""
REPLY_DEADLINE_S: Final = 2.0
"""How long writing the reply may take, for a client that does not read it."""
ANSWER_WITHIN_S: Final = 10.0
"""How long ``coze-edge ctl`` waits for the daemon's answer."""


def socket_path(state_dir: Path, env: Mapping[str, str]) -> Path:
    runtime = env.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / "ctl.sock"
    return state_dir / "ctl.sock"


class BadRequest(Exception):
    """What is wrong with a request, as the client is told (never an echo of its bytes)."""


@dataclass(eq=False)
class _Client:
    writer: asyncio.StreamWriter
    since: float
    """Loop time at which it connected."""
    reading: bool = True
    """Still waiting for its request (idle, as far as the server can tell)."""
    closed_for_room: bool = False


class CtlServer:
    """
    Serves ctl requests until cancelled; removes its socket on the way out.

    Local clients are hostile until bounded: at most MAX_CONNECTIONS at once, each with
    REQUEST_DEADLINE_S to send one line of at most MAX_REQUEST_BYTES, JSON at most
    MAX_JSON_DEPTH deep. At the cap the oldest client still silent after IDLE_GRACE_S is
    closed to make room (so idle clients cannot lock ``ctl status`` out), else the newcomer
    is refused; each gets one JSON line saying so. Those turned away are logged once per
    episode, with their count when it ends, not once each.
    """

    def __init__(
        self,
        path: Path,
        *,
        submit: Callable[[Any], Awaitable[None] | None],
        status: Callable[[], DeviceStatus],
        login: Callable[[], LoginPrompt | None] = lambda: None,
    ) -> None:
        self._path = path
        self._submit = submit
        self._status = status
        self._login = login
        self._clients: dict[_Client, None] = {}  # oldest first
        self.turned_away = 0
        """Clients refused or closed at the cap, in all."""
        self._turned_away_now = 0  # in the current episode

    async def run(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # a stale socket of a previous run
        old_umask = os.umask(0o117)  # the socket is created 0660
        try:
            server = await asyncio.start_unix_server(
                self._serve,
                path=str(self._path),
                limit=MAX_REQUEST_BYTES + 1,
                backlog=ACCEPT_BACKLOG,
            )
        except OSError as exc:
            # Local control is a convenience: without it the speaker still works.
            log.error("! no control socket at %s: %s", self._path, exc)
            return
        finally:
            os.umask(old_umask)
        log.info("control socket at %s", self._path)
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer, since=asyncio.get_running_loop().time())
        if not self._make_room(client.since):
            self._turn_away(writer, "busy: too many control connections, try again")
            await _closed(writer)
            return
        self._clients[client] = None
        try:
            try:
                async with asyncio.timeout(REQUEST_DEADLINE_S):
                    line = await reader.readline()
            except TimeoutError:
                reply = _refusal(f"no request within {REQUEST_DEADLINE_S:g} s")
            except ValueError:  # the stream's limit: no newline in MAX_REQUEST_BYTES + 1
                reply = _refusal(f"request over {MAX_REQUEST_BYTES} bytes")
            else:
                if client.closed_for_room:
                    return
                client.reading = False
                reply = await self._answer(line)
            with contextlib.suppress(ConnectionError, TimeoutError):
                async with asyncio.timeout(REPLY_DEADLINE_S):
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._clients.pop(client, None)
            if not self._clients and self._turned_away_now:
                log.info(
                    "control socket: turned away %d connections at the cap", self._turned_away_now
                )
                self._turned_away_now = 0
            await _closed(writer)

    def _make_room(self, now: float) -> bool:
        """Whether a new client fits, after closing the oldest idle one if need be."""
        if len(self._clients) < MAX_CONNECTIONS:
            return True
        for old in self._clients:
            if old.reading and now - old.since >= IDLE_GRACE_S:
                old.closed_for_room = True
                del self._clients[old]
                self._turn_away(old.writer, "closed: no request, and others are waiting")
                return True
        return False

    def _turn_away(self, writer: asyncio.StreamWriter, why: str) -> None:
        """One line saying ``why``, then close (the transport flushes it first)."""
        if not self._turned_away_now:
            log.warning(
                "! control socket: %d clients at once (the cap): closing idle ones, refusing more",
                MAX_CONNECTIONS,
            )
        self.turned_away += 1
        self._turned_away_now += 1
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(_refusal(why, busy=True)).encode() + b"\n")
        writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            command = parse_command(*_parse_request(line))
        except (BadRequest, CommandError) as exc:
            return _refusal(str(exc))
        if not isinstance(command, QueryStatus):
            done = self._submit(command)
            if done is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await done
        status: dict[str, Any] = json.loads(self._status().to_json())
        prompt = self._login()
        if prompt is not None:
            # The socket is for the service's group only: the code may be shown here.
            status["login"] = json.loads(login_payload(prompt))
        return {"ok": True, "status": status}


async def _closed(writer: asyncio.StreamWriter) -> None:
    """Close ``writer`` and wait until it is (aborting it after REPLY_DEADLINE_S). Waiting
    also collects a client's reset or broken pipe, which asyncio would otherwise log as
    "Future exception was never retrieved" when the stream is collected."""
    writer.close()
    try:
        async with asyncio.timeout(REPLY_DEADLINE_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass  # the client went first


def _refusal(error: str, *, busy: bool = False) -> dict[str, Any]:
    """A refused request; ``busy``: for want of room, not for what it asked."""
    return {"ok": False, "error": error, "busy": True} if busy else {"ok": False, "error": error}


def _parse_request(line: bytes) -> tuple[str, bytes]:
    """NAME and TEXT of the request line ``{"command": NAME, "argument": TEXT}``, TEXT as
    UTF-8 bytes (as MQTT payloads are); BadRequest saying what is wrong otherwise."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not UTF-8") from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"request nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        request = json.loads(text)
    except ValueError:  # also an int past Python's 4,300 digits
        raise BadRequest("request is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise BadRequest("request needs a 'command' string")
    argument = request.get("argument", "")
    if not isinstance(argument, str):
        raise BadRequest("'argument' must be a string")
    try:
        payload = argument.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, "\ud800"
        raise BadRequest("'argument' is not valid Unicode text") from None
    return request["command"], payload


def _nesting(text: str) -> int:
    """How deeply the JSON arrays and objects in ``text`` nest (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


async def request(path: Path, command: str, argument: str = "") -> dict[str, Any]:
    """One request to a running daemon; OSError when none listens at ``path``, TimeoutError
    when it does not answer, ValueError when the answer is not a JSON object."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps({"command": command, "argument": argument}).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(ANSWER_WITHIN_S):
            line = await reader.readline()
    finally:
        writer.close()
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError("the daemon answered something that is not a JSON object")
    return reply


SYSTEMD_SOCKET: Final = Path("/run/coze-edge/ctl.sock")
"""Where the daemon of the unit listens: its ``RuntimeDirectory=coze-edge``."""

JOIN_GROUP: Final = (
    "only root and the group coze-edge may use it: `sudo usermod -aG coze-edge $USER`, "
    "then log in again"
)


def socket_places(
    env: Mapping[str, str], state_dir: Callable[[], Path | None], *, config_named: bool
) -> Iterator[Path]:
    """
    Where ``coze-edge ctl`` looks for the daemon, in order, each place once:
    ``$RUNTIME_DIRECTORY/ctl.sock`` (inside the unit, or when set by hand), then the one the
    daemon that systemd started listens on (:data:`SYSTEMD_SOCKET`), then
    ``<state_dir>/ctl.sock`` (a daemon started by hand). When a config was named (``-c``,
    ``$COZE_EDGE_CONFIG``), its state_dir comes before the systemd one: that daemon was
    meant. ``state_dir`` is called only when its place is reached; None skips it.
    """
    seen: set[Path] = set()

    def once(directory: Path | None) -> Iterator[Path]:
        path = None if directory is None else directory / "ctl.sock"
        if path is not None and path not in seen:
            seen.add(path)
            yield path

    if runtime := env.get("RUNTIME_DIRECTORY"):
        yield from once(Path(runtime.split(":")[0]))
    if config_named:
        yield from once(state_dir())
    yield from once(SYSTEMD_SOCKET.parent)
    if not config_named:
        yield from once(state_dir())


def _why_not(exc: BaseException) -> str:
    """Why a place did not answer, for the user."""
    if isinstance(exc, FileNotFoundError):
        return "no socket there"
    if isinstance(exc, PermissionError):
        return f"permission denied ({JOIN_GROUP})"
    if isinstance(exc, ConnectionRefusedError):
        return "a socket, but no daemon listens on it (left by one that stopped)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {ANSWER_WITHIN_S:g} s"
    if isinstance(exc, ValueError):
        return f"not a coze-edge answer ({exc})"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


async def run_ctl(
    config: str | None,
    action: str,
    words: list[str],
    *,
    as_json: bool = False,
    out: TextIO,
    err: TextIO,
) -> int:
    """The ``coze-edge ctl`` command: 0 done; 64 a command or argument the daemon would
    refuse (checked here, before asking it); 69 no daemon answers, or it is too busy;
    78 the config named (``-c``, ``$COZE_EDGE_CONFIG``) cannot be used. A config nobody
    named is read only if its state_dir is reached, and its problem is then one more
    place that did not answer."""
    from coze_edge.config import CONFIG_ENV, load_config, resolve_config_path
    from coze_edge.errors import ConfigError

    name = action.replace("-", "_")
    if name not in CTL_COMMANDS:
        known = ", ".join(CTL_COMMANDS)
        print(f"coze-edge ctl: unknown command {action!r}; known: {known}", file=err)
        return EXIT_USAGE
    argument = " ".join(words)
    try:
        parse_command(name, argument.encode("utf-8", errors="surrogateescape"))
    except CommandError as exc:
        print(f"coze-edge ctl: {exc}", file=err)
        return EXIT_USAGE

    env = os.environ
    config_named = config is not None or bool(env.get(CONFIG_ENV))
    tried: list[str] = []

    def state_dir() -> Path | None:
        path = resolve_config_path(config, env)
        try:
            return load_config(path).state_dir
        except ConfigError as exc:
            if config_named:
                raise  # the config asked for is broken: exit 78 says so
            # Only a daemon started by hand would need it: say why it was not looked for.
            reason = "; ".join(message for _, message in exc.problems[:1])
            tried.append(f"<state_dir>/ctl.sock: not looked for, {path}: {reason}")
            return None

    for place in socket_places(env, state_dir, config_named=config_named):
        try:
            reply = await request(place, name, argument)
        except (OSError, TimeoutError, ValueError) as exc:
            tried.append(f"{place}: {_why_not(exc)}")
            continue
        break
    else:
        print("coze-edge ctl: no daemon answers; looked at:", file=err)
        for line in tried:
            print(f"  {line}", file=err)
        return EXIT_UNAVAILABLE
    if not reply.get("ok"):
        print(f"coze-edge ctl: {reply.get('error', 'refused')}", file=err)
        return EXIT_UNAVAILABLE if reply.get("busy") else EXIT_USAGE
    status = reply.get("status", {})
    if as_json:
        print(json.dumps(status, ensure_ascii=False), file=out)
    else:
        for line in describe_status(status if isinstance(status, dict) else {}):
            print(line, file=out)
    return 0


def describe_status(status: Mapping[str, Any]) -> list[str]:
    """The daemon's status for a person, one ``name: value`` per line (``--json`` gives
    the document itself); keys this client does not know are left out."""

    def yes_no(value: object) -> str:
        return "yes" if value else "no"

    lines = [f"state: {status.get('state', '?')}"]
    if status.get("detail"):
        lines.append(f"detail: {status['detail']}")
    lines += [
        f"muted: {yes_no(status.get('muted'))}",
        f"volume: {status.get('volume', '?')}",
        f"coze connected: {yes_no(status.get('coze_connected'))}",
        f"wake word: {status.get('wake_word') or 'off'}",
        f"turn detection: {status.get('turn_detection', '?')}",
    ]
    login = status.get("login")
    if isinstance(login, Mapping):
        lines += [
            f"login code: {login.get('user_code', '?')}",
            f"login URL: {login.get('verification_url', '?')}",
            f"login expires: {login.get('expires_at', '?')}",
        ]
    return lines
