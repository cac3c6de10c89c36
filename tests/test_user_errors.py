"""
What a user can get wrong by input, through the real `coze-edge` command: each is one
message and a documented exit code, never a traceback. 64 the command line; 69 what it
needs is taken; 77 no usable credentials (the secret files); 78 the config (and then
`check-config` shows the same problem).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from coze_edge.simulator import Simulator
from tests.support.cli import CliResult, read_until, run_cli, start_cli
from tests.support.data import DATA
from tests.support.mosquitto import make_tls_files
from tests.support.timing import MS

BOT = "7496347519799787557"
PAT = "pat_" + "x" * 40


async def coze_edge(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
    return await run_cli(*args, env=env, stderr=asyncio.subprocess.PIPE, within=60_000 * MS)


def write_config(tmp_path: Path, **sections: object) -> Path:
    """A config `run` would start with (file backend, a personal access token in a file),
    each of ``sections`` replacing or adding a section (or top-level key)."""
    pat = tmp_path / "pat"
    pat.write_text(PAT + "\n")
    pat.chmod(0o600)
    data: dict[str, object] = {
        "coze": {"bot_id": BOT, "api_base": "http://127.0.0.1:9", "ws_base": "ws://127.0.0.1:9"},
        "auth": {"method": "pat", "pat_file": str(pat)},
        "device": {"id": "42"},
        "state_dir": str(tmp_path / "state"),
        "audio": {"backend": "file", "file_input": str(DATA / "silence-2s.wav")},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_one_problem(result: CliResult, code: int, problem: str) -> None:
    """Exit ``code``; stderr is the config's name and the one problem; no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].endswith(": 1 problem(s)"), result.stderr
    assert lines[1:] == [f"  {problem}"]


# --- the microphone file ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check-config", "doctor", "run"])
async def test_a_microphone_file_that_is_not_a_wav_is_a_config_error(
    tmp_path: Path, command: str
) -> None:
    """audio.file_input must be a WAV file: check-config, doctor and run all say so, with
    exit 78, before anything starts."""
    text = tmp_path / "question.wav"
    text.write_text("What is the weather like today?\n")
    config = write_config(tmp_path, audio={"backend": "file", "file_input": str(text)})

    result = await coze_edge(command, "-c", str(config))

    assert_one_problem(
        result, 78, f"audio.file_input: {text}: not a WAV file (no RIFF/WAVE header)"
    )


async def test_a_compressed_wav_says_how_to_convert_it(tmp_path: Path) -> None:
    """A WAV of a kind that is not read (here mu-law) names it and the sox line to fix it."""
    mulaw = tmp_path / "mulaw.wav"
    fmt = (7).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data\x04\x00\x00\x00abcd"
    mulaw.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    config = write_config(tmp_path, audio={"backend": "file", "file_input": str(mulaw)})

    result = await coze_edge("check-config", "-c", str(config))

    assert result.returncode == 78
    assert "audio.file_input: " in result.stderr
    assert "mu-law (format tag 0x0007) is not supported" in result.stderr
    assert "sox in.wav -e signed-integer -b 16 out.wav" in result.stderr


# --- the demo --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--input", "TEXT"], "--input TEXT: not a WAV file (no RIFF/WAVE header)"),
        (["--input", "MISSING"], "--input MISSING does not exist: name a WAV file"),
        (["--input", "DIR"], "--input DIR is a directory: name a WAV file"),
        (["--output", "DIR"], "--output DIR is a folder: name a file, e.g. DIR/reply.wav"),
        (
            ["--output", "FILE/replies/reply.wav"],
            "--output FILE/replies/reply.wav: cannot create its folder, FILE is a file",
        ),
    ],
)
async def test_the_demo_refuses_files_it_cannot_use_in_one_line(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """`demo --input` that is not a WAV file, `--output` that cannot be written: one line
    naming the option, exit 64, before the demo starts."""
    names = {
        "TEXT": tmp_path / "question.txt",
        "MISSING": tmp_path / "missing.wav",
        "DIR": tmp_path,
        "FILE": tmp_path / "a-file",
    }
    names["TEXT"].write_text("What is the weather like today?\n")
    names["FILE"].write_text("")

    def filled(text: str) -> str:
        for name, path in names.items():
            text = text.replace(name, str(path))
        return text

    result = await coze_edge("demo", *map(filled, args))

    assert result.returncode == 64, result.stdout + result.stderr
    assert result.stderr == f"coze-edge demo: {filled(says)}\n"
    assert result.stdout == ""


async def test_the_demo_writes_into_a_folder_it_creates(tmp_path: Path) -> None:
    """`demo --output` into folders that do not exist yet creates them and writes the reply."""
    output = tmp_path / "new" / "deeper" / "reply.wav"

    result = await coze_edge("demo", "--output", str(output))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"reply audio: {output}" in result.stdout
    assert output.read_bytes()[:4] == b"RIFF"


# --- the simulator ---------------------------------------------------------------------------


async def test_the_simulator_on_a_taken_port_says_so(tmp_path: Path) -> None:
    """A port another program listens on: one line, exit 69 (EX_UNAVAILABLE)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = await coze_edge("simulator", "--port", str(port))

    assert result.returncode == 69, result.stderr
    assert result.stderr == (
        f"coze-edge simulator: port {port} on 127.0.0.1 is taken (another server?): choose --port\n"
    )


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("192.0.2.1", "Cannot assign requested address"),  # TEST-NET-1: not this machine's
        ("no-such-host.invalid", "check --host"),
    ],
)
async def test_the_simulator_on_an_address_it_cannot_have_says_so(host: str, says: str) -> None:
    """An address that is not this machine's, or a name that does not resolve: one line,
    exit 64 (the command line is wrong)."""
    result = await coze_edge("simulator", "--host", host, "--port", "0")

    assert result.returncode == 64, result.stderr
    assert result.stderr.startswith(f"coze-edge simulator: cannot listen on {host}:0: ")
    assert says in result.stderr
    assert result.stderr.count("\n") == 1


# --- state_dir -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check-config", "doctor", "run"])
@pytest.mark.parametrize("where", ["under a file", "a file"])
async def test_a_state_dir_that_cannot_be_made_is_said_by_every_command(
    tmp_path: Path, command: str, where: str
) -> None:
    """A state_dir that is a file, or would have to be made inside one: check-config,
    doctor and run say so in the same words, exit 78."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    state_dir = blocker / "state" if where == "under a file" else blocker
    config = write_config(tmp_path, state_dir=str(state_dir))

    result = await coze_edge(command, "-c", str(config))

    says = (
        f"cannot create {state_dir}: {blocker} is not a directory"
        if where == "under a file"
        else f"{blocker} is not a directory"
    )
    assert_one_problem(result, 78, f"state_dir: {says}")


# --- secret and TLS files ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check-config", "run"])
async def test_a_device_secret_file_is_checked_like_every_secret(
    tmp_path: Path, command: str
) -> None:
    """auth.device_secret_file (method token_url), when empty: exit 77 (no usable
    credentials), at check-config as at run."""
    secret = tmp_path / "device-secret"
    secret.write_text("\n")
    secret.chmod(0o600)
    auth = {
        "method": "token_url",
        "token_url": "http://127.0.0.1:9/token",
        "device_secret_file": str(secret),
    }
    config = write_config(tmp_path, auth=auth)

    result = await coze_edge(command, "-c", str(config))

    assert_one_problem(result, 77, f"auth.device_secret_file: {secret} is empty")


async def test_a_missing_token_file_is_77_and_with_other_problems_78(tmp_path: Path) -> None:
    """Only the secret file wrong: 77, as the README documents; with another problem
    too, the config is wrong: 78, both listed."""
    missing = tmp_path / "no-such-pat"
    auth = {"method": "pat", "pat_file": str(missing)}
    only = await coze_edge("check-config", "-c", str(write_config(tmp_path, auth=auth)))
    both = await coze_edge(
        "check-config", "-c", str(write_config(tmp_path, auth=auth, log={"level": "loud"}))
    )

    says = f"auth.pat_file: cannot read {missing}: No such file or directory"
    assert_one_problem(only, 77, says)
    assert both.returncode == 78
    assert f"  {says}" in both.stderr.splitlines()
    assert any(line.startswith("  log.level: ") for line in both.stderr.splitlines())


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"ca_file": "MISSING"}, "mqtt.ca_file: cannot read MISSING: No such file or directory"),
        ({"ca_file": "TEXT"}, "mqtt.ca_file: TEXT is not a PEM certificate"),
        ({"cert_file": "KEY", "key_file": "KEY"}, "mqtt.cert_file: KEY is not a PEM certificate"),
        ({"cert_file": "CERT", "key_file": "CERT"}, "mqtt.key_file: CERT is not a PEM private key"),
        ({"cert_file": "CERT", "key_file": "CA_KEY"}, "mqtt.key_file: CA_KEY is not the key of"),
    ],
)
async def test_the_mqtt_tls_files_are_checked(
    tmp_path: Path, files: dict[str, str], says: str
) -> None:
    """With mqtt.tls: the CA file, the client certificate and its key exist, are PEM of
    their kind and belong together; check-config names the key and the file, exit 78."""
    tls = make_tls_files(tmp_path / "tls")
    names = {
        "MISSING": tmp_path / "missing.crt",
        "TEXT": tmp_path / "text.crt",
        "CERT": tls.client_cert,
        "KEY": tls.client_key,
        "CA_KEY": tls.ca.with_suffix(".key"),  # a key, but the CA's
    }
    names["TEXT"].write_text("not a certificate\n")

    def filled(text: str) -> str:
        for name, path in sorted(names.items(), key=lambda item: -len(item[0])):
            text = text.replace(name, str(path))
        return text

    mqtt = {"host": "127.0.0.1", "tls": True, **{k: filled(v) for k, v in files.items()}}
    config = write_config(tmp_path, mqtt=mqtt)

    result = await coze_edge("check-config", "-c", str(config))

    assert result.returncode == 78, result.stderr
    [problem] = result.stderr.splitlines()[1:]
    assert problem.startswith(f"  {filled(says)}"), result.stderr


async def test_good_tls_files_pass(tmp_path: Path) -> None:
    """The CA, a client certificate and its own key: check-config is content."""
    tls = make_tls_files(tmp_path / "tls")
    mqtt = {
        "host": "127.0.0.1",
        "tls": True,
        "ca_file": str(tls.ca),
        "cert_file": str(tls.client_cert),
        "key_file": str(tls.client_key),
    }

    result = await coze_edge("check-config", "-c", str(write_config(tmp_path, mqtt=mqtt)))

    assert result.returncode == 0, result.stderr


# --- login -----------------------------------------------------------------------------------


@pytest.mark.simulator(poll_interval_s=1)
async def test_a_login_whose_token_cannot_be_saved_says_so(sim: Simulator, tmp_path: Path) -> None:
    """The state directory checked at the start is gone by the time the code is approved
    (a file in its place): one line saying the login was approved but not saved, exit 77."""
    config = write_config(
        tmp_path,
        coze={"bot_id": BOT, "api_base": sim.api_base, "ws_base": sim.ws_base},
        auth={"method": "device_code", "client_id": "1234.app.coze"},
    )
    state = tmp_path / "state"
    login = await start_cli("login", "-c", str(config))
    seen: list[str] = []
    async with asyncio.timeout(30_000 * MS):
        await read_until(login, "enter the code", seen)
        state.rmdir()
        state.write_text("")
        [code] = sim.pending_user_codes()
        sim.approve(code)
        rest, _ = await login.communicate()
    said = "".join(seen) + rest.decode()

    assert login.returncode == 77, said
    assert said.splitlines()[-1].startswith(
        f"coze-edge login: approved, but the token cannot be saved in {state}/token.json: "
    ), said
    assert "Traceback" not in said
