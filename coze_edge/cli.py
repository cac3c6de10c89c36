"""
The ``coze-edge`` command: subcommands, and errors turned into exit codes.

0 clean stop; 64 the command line is wrong (argparse's errors included, for every
subcommand); 69 what the command needs is not there (no daemon on the control socket, a
port taken); 75 restart asked for; 77 no usable credentials and no way to get them without
a person; 78 configuration error; anything else is a crash (a traceback: a bug).
Whatever a command prints, tracebacks included, passes ``logs.redact`` (secrets masked),
except ``ctl``'s answer: the daemon's status, which shows a pending login's code on purpose.
Heavy modules are imported by the subcommand that needs them, so ``--help``,
``check-config`` and the simulator start fast and work without PortAudio.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

from coze_edge import __version__
from coze_edge.core.commands import CTL_COMMANDS
from coze_edge.errors import (
    EXIT_CONFIG,
    EXIT_NO_AUTH,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    AuthError,
    ConfigError,
    CozeAPIError,
    CozeEdgeError,
    CredentialFileError,
    Unavailable,
    UsageError,
)

if TYPE_CHECKING:
    from coze_edge.config import Config

log = logging.getLogger("coze_edge")


EXIT_CODES: Final = (
    "exit codes: 0 done (a clean stop); 64 the command line is wrong; 69 what it needs is not "
    "there (ctl: no daemon answering; simulator: the port is taken); 75 restart asked for "
    "(run); 77 no usable credentials; 78 the config is wrong (check-config lists why); "
    "anything else is a bug"
)
CONFIG_HELP: Final = (
    "config file (default: $COZE_EDGE_CONFIG, else $CONFIGURATION_DIRECTORY/config.yaml, "
    "else /etc/coze-edge/config.yaml)"
)
IGNORED_CONFIG_HELP: Final = "accepted like everywhere, not used: this command needs no config"


class _Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line exits 64 (sysexits' EX_USAGE), not 2, for every
    subcommand: their parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Help(argparse.HelpFormatter):
    """Each option's default after its help text, unless it has none worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" in text
            or not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _port(text: str) -> int:
    """A TCP port for --port: 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coze-edge",
        description="Voice-assistant daemon for edge devices, on Coze.",
        epilog=EXIT_CODES,
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"coze-edge {__version__}")
    # Also before the command (`coze-edge -c FILE doctor`); SUPPRESS keeps a subcommand's
    # unset -c from overwriting it.
    parser.add_argument(
        "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, *, config_help: str = CONFIG_HELP
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Help)
        p.add_argument(
            "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help
        )
        return p

    command("run", "run the daemon (what systemd starts)")
    command("login", "log in with a code typed on a phone (OAuth device flow)")
    bind = command("bind", "bind this device to the configured Coze channel")
    bind.add_argument("--csv", metavar="FILE", help="bind many devices: CSV with device_id,name")
    devices = command("devices", "list audio devices, the recommended ones and their config lines")
    devices.add_argument(
        "--test",
        action="store_true",
        help="record with a level meter, play it back, play a tone and listen for it; "
        "report levels, clipping and echo, and suggest settings",
    )
    devices.add_argument(
        "--seconds", type=float, default=5.0, help="--test: how long to record, in seconds"
    )
    devices.add_argument(
        "--input",
        metavar="DEVICE",
        help="--test: microphone (name or index; default: -c's, else the recommended)",
    )
    devices.add_argument("--output", metavar="DEVICE", help="--test: speaker (likewise)")
    devices.add_argument(
        "--channel", type=int, metavar="N", help="--test: the microphone's channel (0 = first)"
    )
    command("check-config", "validate the config and print every problem")
    command("doctor", "check audio, login, Coze and MQTT; one line per check")
    demo = command(
        "demo",
        "one voice turn offline against the bundled simulator",
        config_help="accepted like everywhere, not used: the demo brings its own config",
    )
    demo.add_argument(
        "--output",
        metavar="FILE",
        default="demo-output/reply.wav",
        help="where to write the reply WAV; its folder is created",
    )
    demo.add_argument(
        "--input", metavar="FILE", help="WAV to use as the microphone (default: a bundled question)"
    )
    simulator = command(
        "simulator", "serve the bundled Coze simulator", config_help=IGNORED_CONFIG_HELP
    )
    simulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulator.add_argument("--port", type=_port, default=8790, help="port to listen on")
    simulator.add_argument(
        "--reply-speed",
        type=float,
        default=6.0,
        help="replies stream this much faster than real time",
    )
    _token_service_parser(sub)
    command("voices", "list the voices the account can use (ids for coze.voice_id)")
    command("tools", "print the device-side plugins offered, as Coze's plugin editor takes them")
    ctl = command(
        "ctl",
        "control a running daemon over its unix socket",
    )
    ctl.epilog = (
        "commands: " + ", ".join(CTL_COMMANDS) + " (- or _ alike: new-conversation). "
        "The daemon's socket: $RUNTIME_DIRECTORY/ctl.sock, else /run/coze-edge/ctl.sock, "
        "else <state_dir>/ctl.sock; root and the group coze-edge may use it."
    )
    ctl.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")
    ctl.add_argument("action", metavar="COMMAND", help="what to do (see below)")
    ctl.add_argument(
        "argument",
        nargs="*",
        metavar="ARG",
        help="volume: 0..100; say: the text; wake_word: off or a word; "
        "turn_detection: client_interrupt or server_vad",
    )
    return parser


def _token_service_parser(sub: Any) -> None:
    service = sub.add_parser(
        "token-service",
        help="the vendor's token service for auth.method token_url (holds the JWT app key)",
        description="Signs the Coze JWT app's grants for the devices of a fleet (README).",
        formatter_class=_Help,
    )
    service.add_argument(
        "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=IGNORED_CONFIG_HELP
    )
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=help_text, formatter_class=_Help
        )
        p.add_argument(
            "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=IGNORED_CONFIG_HELP
        )
        return p

    serve = action("serve", "serve devices' token requests")
    serve.add_argument("--app-id", required=True, help="the JWT app's id (the JWT's iss)")
    serve.add_argument("--key-id", required=True, help="its public key's fingerprint (kid)")
    serve.add_argument(
        "--private-key-file", help="the app's private_key.pem; else credential coze_jwt_private_key"
    )
    serve.add_argument(
        "--master-key-file", help="the devices' master key; else credential token_master_key"
    )
    serve.add_argument(
        "--coze-api-base", default="https://api.coze.cn", help="Coze's REST base for the exchange"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8791, help="port to listen on")
    serve.add_argument(
        "--token-lifetime", type=int, default=3600, help="seconds each access token lives"
    )
    serve.add_argument("--custom-consumer", help="session_context.device_info.custom_consumer")
    issue = action("issue-secret", "print devices' secrets (CSV) to provision")
    issue.add_argument("device_id", nargs="*", help="device ids (see `coze-edge doctor`)")
    issue.add_argument("--csv", metavar="FILE", help="take the device_id column of this CSV")
    issue.add_argument(
        "--master-key-file", help="the devices' master key; else credential token_master_key"
    )


def _token_service(args: argparse.Namespace) -> int:
    from coze_edge import token_service

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    if args.action == "issue-secret":
        master_key = token_service.read_master_key(path(args.master_key_file))
        ids = list(args.device_id)
        if args.csv:
            ids += token_service.device_ids_from_csv(Path(args.csv))
        return token_service.issue_secrets(master_key, ids, out=sys.stdout)
    settings = token_service.settings_from_args(
        app_id=args.app_id,
        key_id=args.key_id,
        private_key_file=path(args.private_key_file),
        master_key_file=path(args.master_key_file),
        coze_api_base=args.coze_api_base,
        token_lifetime_s=args.token_lifetime,
        custom_consumer=args.custom_consumer,
    )
    _setup_logging("info")
    try:
        asyncio.run(token_service.serve(settings, args.host, args.port))
    except OSError as exc:
        raise _cannot_listen(args.host, args.port, exc) from exc
    return 0


def _audio_check(args: argparse.Namespace) -> int:
    """``devices --test``: with ``-c``, the config's devices and channel unless given."""
    from coze_edge.audio_check import CheckSettings, run_audio_check

    if not 0.5 <= args.seconds <= 60:
        print("coze-edge devices: --seconds must be between 0.5 and 60", file=sys.stderr)
        return 64
    input_device, output_device, channel = None, None, None
    if getattr(args, "config", None):
        audio = _load(args).audio
        input_device, output_device = audio.input_device, audio.output_device
        channel = audio.input_channel
    settings = CheckSettings(
        input_device=args.input if args.input is not None else input_device,
        output_device=args.output if args.output is not None else output_device,
        channel=args.channel if args.channel is not None else channel,
        seconds=args.seconds,
    )
    return asyncio.run(run_audio_check(settings, sys.stdout, tty=sys.stdout.isatty()))


def _cannot_listen(host: str, port: int, exc: OSError) -> CozeEdgeError:
    """Why a server could not start listening: the port taken (69), or an address that is
    not this machine's or no address at all (64)."""
    if exc.errno == errno.EADDRINUSE:
        return Unavailable(f"port {port} on {host} is taken (another server?): choose --port")
    if isinstance(exc, socket.gaierror) or not exc.errno:
        reason = exc.strerror or str(exc)
    else:  # aiohttp words a bind error itself, address and all: the errno says it shorter
        reason = os.strerror(exc.errno)
    return UsageError(f"cannot listen on {host}:{port}: {reason}; check --host")


def _load(args: argparse.Namespace) -> Config:
    from coze_edge.config import load_config, resolve_config_path

    return load_config(resolve_config_path(_config_arg(args), os.environ))


def _config_arg(args: argparse.Namespace) -> str | None:
    """-c FILE, before or after the command; None when not given."""
    value: str | None = getattr(args, "config", None)
    return value


def _setup_logging(level: str = "info") -> None:
    from coze_edge.logs import setup_logging

    setup_logging(level)


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "check-config":
            from coze_edge.config import resolve_config_path

            path = resolve_config_path(_config_arg(args), os.environ)
            _load(args)
            print(f"{path}: ok")
            return 0
        case "run":
            config = _load(args)
            _setup_logging(config.log.level)
            from coze_edge.daemon import run_daemon

            return asyncio.run(run_daemon(config))
        case "demo":
            _setup_logging("warning")
            from coze_edge.demo import run_demo

            return asyncio.run(
                run_demo(
                    output=Path(args.output),
                    microphone=Path(args.input) if args.input else None,
                )
            )
        case "token-service":
            return _token_service(args)
        case "simulator":
            _setup_logging("info")
            from coze_edge.simulator import serve

            try:
                asyncio.run(serve(args.host, args.port, reply_speed=args.reply_speed))
            except OSError as exc:
                raise _cannot_listen(args.host, args.port, exc) from exc
            return 0
        case "login":
            config = _load(args)
            _setup_logging("warning")
            from coze_edge.login import terminal_login

            return asyncio.run(terminal_login(config, out=sys.stdout))
        case "bind":
            config = _load(args)
            _setup_logging("warning")
            from coze_edge.binding import bind_command

            csv = Path(args.csv) if args.csv else None
            return asyncio.run(bind_command(config, csv=csv, out=sys.stdout))
        case "voices":
            config = _load(args)
            _setup_logging("warning")
            from coze_edge.voices import list_voices

            return asyncio.run(list_voices(config, out=sys.stdout))
        case "tools":
            import json

            from coze_edge.tools.configured import tool_declarations

            print(json.dumps(tool_declarations(_load(args)), indent=2, ensure_ascii=False))
            return 0
        case "devices":
            if args.test:
                return _audio_check(args)
            from coze_edge.adapters.sound_devices import print_devices

            return print_devices(sys.stdout)
        case "doctor":
            config = _load(args)
            _setup_logging("warning")
            from coze_edge.doctor import run_doctor

            return asyncio.run(run_doctor(config, out=sys.stdout))
        case "ctl":
            from coze_edge.ctl import run_ctl

            return asyncio.run(
                run_ctl(
                    _config_arg(args),
                    args.action,
                    args.argument,
                    as_json=args.json,
                    out=sys.stdout,
                    err=sys.stderr,
                )
            )
    raise AssertionError(args.command)  # pragma: no cover - argparse enforces the choices


def _report(exc: CozeEdgeError, command: str) -> int:
    """One clear line (or block) for a handled error, secrets masked, and its exit code."""
    from coze_edge.logs import redact

    if isinstance(exc, ConfigError):
        print(redact(exc.render()), file=sys.stderr)
        return EXIT_NO_AUTH if isinstance(exc, CredentialFileError) else EXIT_CONFIG
    if isinstance(exc, UsageError):
        print(redact(f"coze-edge {command}: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, Unavailable):
        print(redact(f"coze-edge {command}: {exc}"), file=sys.stderr)
        return EXIT_UNAVAILABLE
    if isinstance(exc, AuthError):
        print(redact(f"coze-edge: {exc}"), file=sys.stderr)
        return EXIT_NO_AUTH
    if isinstance(exc, CozeAPIError):
        print(redact(f"coze-edge: Coze refused: {exc}"), file=sys.stderr)
        return 1
    print(redact(f"coze-edge: {exc}"), file=sys.stderr)
    return 1


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return leaves


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "ctl":
        from coze_edge.logs import redact_output

        redact_output()
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except CozeEdgeError as exc:
        return _report(exc, args.command)
    except BaseExceptionGroup as group:
        # An error raised inside a TaskGroup (the supervisor) arrives wrapped.
        leaves = _leaves(group)
        if not leaves or not all(isinstance(e, CozeEdgeError) for e in leaves):
            raise
        codes = [_report(e, args.command) for e in leaves if isinstance(e, CozeEdgeError)]
        return max(codes, key=lambda c: (c == EXIT_CONFIG, c == EXIT_NO_AUTH, c))
