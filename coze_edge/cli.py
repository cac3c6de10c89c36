"""
The ``coze-edge`` command: subcommands, and errors turned into exit codes.

0 clean stop; 78 configuration error; 77 no usable credentials and no way to get them
without a person; anything else is a crash (a traceback: a bug).
Whatever a command prints, tracebacks included, passes ``logs.redact`` (secrets masked),
except ``ctl``'s answer: the daemon's status, which shows a pending login's code on purpose.
Heavy modules are imported by the subcommand that needs them, so ``--help``,
``check-config`` and the simulator start fast and work without PortAudio.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coze_edge import __version__
from coze_edge.core.commands import CTL_COMMANDS
from coze_edge.errors import (
    EXIT_CONFIG,
    EXIT_NO_AUTH,
    AuthError,
    ConfigError,
    CozeAPIError,
    CozeEdgeError,
)

if TYPE_CHECKING:
    from coze_edge.config import Config

log = logging.getLogger("coze_edge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coze-edge", description="Voice-assistant daemon for edge devices, on Coze."
    )
    parser.add_argument("--version", action="version", version=f"coze-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--config", metavar="FILE", help="config file (see README)")
        return p

    with_config("run", "run the daemon (what systemd starts)")
    with_config("login", "log in with a code typed on a phone (OAuth device flow)")
    bind = with_config("bind", "bind this device to the configured Coze channel")
    bind.add_argument("--csv", metavar="FILE", help="bind many devices: CSV with device_id,name")
    devices = with_config(
        "devices", "list audio devices, the recommended ones and their config lines"
    )
    devices.add_argument(
        "--test",
        action="store_true",
        help="record with a level meter, play it back, play a tone and listen for it; "
        "report levels, clipping and echo, and suggest settings",
    )
    devices.add_argument(
        "--seconds", type=float, default=5.0, help="--test: how long to record (default 5)"
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
    with_config("check-config", "validate the config and print every problem")
    with_config("doctor", "check audio, login, Coze and MQTT; one line per check")
    demo = sub.add_parser("demo", help="one voice turn offline against the bundled simulator")
    demo.add_argument("--output", metavar="FILE", help="where to write the reply WAV")
    demo.add_argument("--input", metavar="FILE", help="WAV to use as the microphone")
    simulator = sub.add_parser("simulator", help="serve the bundled Coze simulator")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8790)
    simulator.add_argument(
        "--reply-speed",
        type=float,
        default=6.0,
        help="replies stream this much faster than real time",
    )
    _token_service_parser(sub)
    with_config("voices", "list the voices the account can use (ids for coze.voice_id)")
    with_config(
        "tools", "print the device-side plugins offered, as Coze's plugin editor takes them"
    )
    ctl = with_config("ctl", "control a running daemon over its unix socket")
    ctl.add_argument("action", choices=CTL_COMMANDS)
    ctl.add_argument(
        "argument",
        nargs="*",
        help="volume: 0..100; say: the text; wake_word: off or a word; "
        "turn_detection: client_interrupt or server_vad",
    )
    return parser


def _token_service_parser(sub: Any) -> None:
    service = sub.add_parser(
        "token-service",
        help="the vendor's token service for auth.method token_url (holds the JWT app key)",
        description="Signs the Coze JWT app's grants for the devices of a fleet (README).",
    )
    actions = service.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="serve devices' token requests")
    serve.add_argument("--app-id", required=True, help="the JWT app's id (the JWT's iss)")
    serve.add_argument("--key-id", required=True, help="its public key's fingerprint (kid)")
    serve.add_argument(
        "--private-key-file", help="the app's private_key.pem; else credential coze_jwt_private_key"
    )
    serve.add_argument(
        "--master-key-file", help="the devices' master key; else credential token_master_key"
    )
    serve.add_argument("--coze-api-base", default="https://api.coze.cn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8791)
    serve.add_argument(
        "--token-lifetime", type=int, default=3600, help="seconds each access token lives"
    )
    serve.add_argument("--custom-consumer", help="session_context.device_info.custom_consumer")
    issue = actions.add_parser("issue-secret", help="print devices' secrets (CSV) to provision")
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
    asyncio.run(token_service.serve(settings, args.host, args.port))
    return 0


def _audio_check(args: argparse.Namespace) -> int:
    """``devices --test``: with ``-c``, the config's devices and channel unless given."""
    from coze_edge.audio_check import CheckSettings, run_audio_check

    if not 0.5 <= args.seconds <= 60:
        print("coze-edge devices: --seconds must be between 0.5 and 60", file=sys.stderr)
        return 64
    input_device, output_device, channel = None, None, None
    if args.config:
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


def _load(args: argparse.Namespace) -> Config:
    from coze_edge.config import load_config, resolve_config_path

    return load_config(resolve_config_path(args.config, os.environ))


def _setup_logging(level: str = "info") -> None:
    from coze_edge.logs import setup_logging

    setup_logging(level)


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "check-config":
            from coze_edge.config import resolve_config_path

            path = resolve_config_path(args.config, os.environ)
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
                    output=Path(args.output) if args.output else None,
                    microphone=Path(args.input) if args.input else None,
                )
            )
        case "token-service":
            return _token_service(args)
        case "simulator":
            _setup_logging("info")
            from coze_edge.simulator import serve

            asyncio.run(serve(args.host, args.port, reply_speed=args.reply_speed))
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

            return asyncio.run(run_ctl(args.config, args.action, args.argument, out=sys.stdout))
    raise AssertionError(args.command)  # pragma: no cover - argparse enforces the choices


def _report(exc: CozeEdgeError) -> int:
    """One clear line (or block) for a handled error, secrets masked, and its exit code."""
    from coze_edge.logs import redact

    if isinstance(exc, ConfigError):
        print(redact(exc.render()), file=sys.stderr)
        return EXIT_CONFIG
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
        return _report(exc)
    except BaseExceptionGroup as group:
        # An error raised inside a TaskGroup (the supervisor) arrives wrapped.
        leaves = _leaves(group)
        if not leaves or not all(isinstance(e, CozeEdgeError) for e in leaves):
            raise
        codes = [_report(e) for e in leaves if isinstance(e, CozeEdgeError)]
        return max(codes, key=lambda c: (c == EXIT_CONFIG, c == EXIT_NO_AUTH, c))
