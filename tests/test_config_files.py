"""
Hostile or careless local input to the real ``coze-edge check-config`` and ``run``: YAML
that would expand without bound, files that are not files, secrets with something inside,
ids YAML would rewrite, hooks that are not programs. Each is exit 78 with a message that
names the problem, quickly, and never a traceback or the secret.
"""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from coze_edge.config import load_config
from coze_edge.config.files import CONFIG_LIMIT, SECRET_LIMIT
from coze_edge.errors import ConfigError
from tests.support.cli import CliResult, run_cli
from tests.support.data import DATA
from tests.support.timing import MS

BOT = "7496347519799787557"
PAT = "pat_f00dFace"


async def coze_edge(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
    return await run_cli(*args, env=env, stderr=asyncio.subprocess.PIPE, within=20_000 * MS)


def config_text(tmp_path: Path, *, extra: str = "", pat_file: Path | None = None) -> str:
    """A config ``run`` would start with (file backend, personal access token in a file),
    with ``extra`` YAML lines appended."""
    if pat_file is None:
        pat_file = tmp_path / "pat"
        pat_file.write_text(PAT + "\n")
        pat_file.chmod(0o600)
    return (
        f"coze:\n  bot_id: '{BOT}'\n"
        f"auth:\n  method: pat\n  pat_file: {pat_file}\n"
        f"state_dir: {tmp_path}\n"
        f"audio:\n  backend: file\n  file_input: {DATA / 'silence-2s.wav'}\n"
        f"{extra}"
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def billion_laughs(levels: int) -> str:
    """Anchor i is a list of nine aliases to anchor i-1; the last is the bot id."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"coze:\n  bot_id: *l{levels - 1}\n"])


def assert_refused(result: CliResult, *fragments: str, code: int = 78) -> None:
    """Refused with ``code`` (78, the config; 77, only its secret files), each fragment
    said, no traceback."""
    assert result.returncode == code, result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# --- YAML bounds ------------------------------------------------------------------------------


async def test_a_billion_laughs_is_refused_quickly_not_expanded(tmp_path: Path) -> None:
    """Eight lines of anchors (9**8 values once expanded: 5 s and 365 MB to reject before
    the bound) are refused in well under a second, naming the problem."""
    config = write(tmp_path / "laughs.yaml", billion_laughs(8))
    assert config.stat().st_size < 500

    started = time.monotonic()
    result = await coze_edge("check-config", "-c", str(config))
    took = time.monotonic() - started

    assert_refused(result, "more than 10000 values once its aliases are followed", "laughs")
    assert took < 1500 * MS, took


def test_a_deeper_billion_laughs_costs_no_more(tmp_path: Path) -> None:
    """Thirty levels (9**30 values) cost the loader as little as eight: a bounded walk."""
    config = write(tmp_path / "laughs.yaml", billion_laughs(30))

    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    took = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    [(_, message)] = caught.value.problems
    assert "billion laughs" in message
    assert took < 500 * MS, took
    assert peak < 5_000_000, peak


async def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    """A list that contains itself would loop: refused with what is wrong."""
    config = write(tmp_path / "c.yaml", config_text(tmp_path, extra="mqtt:\n  host: &h [*h]\n"))

    result = await coze_edge("check-config", "-c", str(config))

    assert_refused(result, "an alias here refers to a value that contains it")


async def test_deep_nesting_is_a_yaml_error_not_a_recursion_error(tmp_path: Path) -> None:
    """20,000 nested lists: a clear line, where it used to be a RecursionError traceback."""
    config = write(tmp_path / "c.yaml", "coze:\n  bot_id: " + "[" * 20_000 + "]" * 20_000)

    result = await coze_edge("check-config", "-c", str(config))

    assert_refused(result, "invalid YAML at line 2", "nested deeper than 32 levels")


async def test_an_integer_too_long_for_python_is_a_yaml_error(tmp_path: Path) -> None:
    """5,000 digits (past Python's int conversion limit) used to be a ValueError traceback."""
    config = write(tmp_path / "c.yaml", "coze:\n  bot_id: " + "9" * 5000 + "\n")

    result = await coze_edge("check-config", "-c", str(config))

    assert_refused(result, "an integer of 5000 digits is too long")


def test_ordinary_anchors_and_aliases_still_work(tmp_path: Path) -> None:
    """A value reused through an alias, and a merge key, load as before."""
    pat = write(tmp_path / "pat", PAT)
    text = config_text(tmp_path, pat_file=pat).replace(
        f"bot_id: '{BOT}'", f"bot_id: &bot '{BOT}'\n  <<: {{region: com}}"
    )
    config = write(tmp_path / "c.yaml", text + "mqtt:\n  client_id: *bot\n")

    loaded = load_config(config, env={})

    assert (loaded.coze.bot_id, loaded.coze.region, loaded.mqtt.client_id) == (BOT, "com", BOT)


# --- files that are not files -----------------------------------------------------------------


def unusable(tmp_path: Path, kind: str, limit: int) -> tuple[Path, str]:
    """A path of ``kind`` and what the error must say about it."""
    match kind:
        case "/dev/zero":
            return Path("/dev/zero"), "is a character device, not a regular file"
        case "fifo":
            fifo = tmp_path / "fifo"
            os.mkfifo(fifo)
            return fifo, "is a FIFO, not a regular file"
        case "directory":
            directory = tmp_path / "directory"
            directory.mkdir()
            return directory, "is a directory, not a regular file"
        case "too large":
            big = write(tmp_path / "big", "#" * (limit + 1))
            return big, f"is {limit + 1} bytes, over the limit of {limit} bytes"
    raise AssertionError(kind)


KINDS = ["/dev/zero", "fifo", "directory", "too large"]


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_config_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, kind: str, command: str
) -> None:
    """/dev/zero used to be read until memory ran out, a FIFO hung the start for ever."""
    path, says = unusable(tmp_path, kind, CONFIG_LIMIT)

    result = await coze_edge(command, "-c", str(path))

    assert_refused(result, f"{path}: 1 problem(s)", f"the file {says}")


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_secret_file_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, kind: str, command: str
) -> None:
    """auth.pat_file must be a regular file under the size limit, at check-config and run:
    no usable credentials, exit 77."""
    path, says = unusable(tmp_path, kind, SECRET_LIMIT)
    config = write(tmp_path / "c.yaml", config_text(tmp_path, pat_file=path))

    result = await coze_edge(command, "-c", str(config))

    assert_refused(result, f"auth.pat_file: {path} {says}", code=77)


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (f"{PAT[:6]} {PAT[6:]}\n", "whitespace inside the secret (character 7)"),
        (f"{PAT[:6]}\t{PAT[6:]}", "whitespace inside the secret (character 7)"),
        (f"{PAT}\n{PAT}\n", "a line break inside the secret (character 13)"),
        (f"{PAT}\r\n{PAT}", "a line break inside the secret (character 13)"),
        (f"{PAT[:6]}\x1b{PAT[6:]}\n", "a control or invisible character inside the secret"),
        (f"\ufeff{PAT}\n", "a control or invisible character inside the secret (character 1)"),
        (f"{PAT[:6]}\u200b{PAT[6:]}", "a control or invisible character inside the secret"),
    ],
)
async def test_a_secret_with_something_inside_is_refused_without_showing_it(
    tmp_path: Path, content: str, says: str, command: str
) -> None:
    """Whitespace or control characters inside a token (after the newline is stripped)
    are refused (exit 77) naming the key and the file, never the content."""
    pat = tmp_path / "pat"
    pat.write_bytes(content.encode())
    pat.chmod(0o600)
    config = write(tmp_path / "c.yaml", config_text(tmp_path, pat_file=pat))

    result = await coze_edge(command, "-c", str(config))

    assert_refused(result, f"auth.pat_file: {pat} holds {says}", code=77)
    assert PAT[:6] not in result.stdout + result.stderr
    assert PAT[6:] not in result.stdout + result.stderr


async def test_the_mqtt_password_file_is_checked_too(tmp_path: Path) -> None:
    """mqtt.password_file (when MQTT is on) gets the same checks as auth.pat_file."""
    password = write(tmp_path / "password", "hunter 2\n")
    extra = f"mqtt:\n  host: 127.0.0.1\n  username: speaker\n  password_file: {password}\n"
    config = write(tmp_path / "c.yaml", config_text(tmp_path, extra=extra))

    result = await coze_edge("check-config", "-c", str(config))

    assert_refused(
        result, f"mqtt.password_file: {password} holds whitespace inside the secret", code=77
    )
    assert "hunter" not in result.stderr


async def test_a_token_with_only_a_trailing_newline_is_fine(tmp_path: Path) -> None:
    """The usual `echo TOKEN > file` passes."""
    config = write(tmp_path / "c.yaml", config_text(tmp_path))

    result = await coze_edge("check-config", "-c", str(config))

    assert result.returncode == 0, result.stderr


# --- device ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "0123",  # YAML 1.1 octal: was silently 83
        "12_345",  # was silently 12345
        "1:20",  # base 60: was silently 80
        "0x1F",  # was silently 31
        "0b101",  # was silently 5
        "+42",  # was silently 42
        "99999999999999999999",  # past int64
    ],
)
async def test_an_unquoted_device_id_keeps_its_digits_or_is_refused(
    tmp_path: Path, written: str
) -> None:
    """What YAML would turn into another number is refused, showing what the user wrote."""
    config = write(tmp_path / "c.yaml", config_text(tmp_path, extra=f"device:\n  id: {written}\n"))

    result = await coze_edge("check-config", "-c", str(config))

    assert_refused(result, "device.id: must be a positive int64 in decimal", f"got '{written}'")


@pytest.mark.parametrize("written", ["0123", "1_000", "007"])
async def test_a_device_id_from_the_environment_is_taken_as_written(
    tmp_path: Path, written: str
) -> None:
    """COZE_EDGE_DEVICE__ID=0123 used to become device 83; now it is refused, saying where
    it came from."""
    config = write(tmp_path / "c.yaml", config_text(tmp_path))

    result = await coze_edge(
        "check-config", "-c", str(config), env={"COZE_EDGE_DEVICE__ID": written}
    )

    assert_refused(result, f"got '{written}' (from COZE_EDGE_DEVICE__ID)")


@pytest.mark.parametrize("written", ["7496347519799787557", "9223372036854775807", "1"])
def test_a_valid_device_id_keeps_exactly_its_digits(tmp_path: Path, written: str) -> None:
    """Unquoted in the file or from the environment, the id is the user's digits."""
    config = write(tmp_path / "c.yaml", config_text(tmp_path, extra=f"device:\n  id: {written}\n"))

    from_file = load_config(config, env={})
    from_env = load_config(config, env={"COZE_EDGE_DEVICE__ID": written})

    assert from_file.device.id == from_env.device.id == written
    assert from_file.mqtt.topic_prefix == f"coze-edge/{written}"


def test_other_ids_keep_the_text_too(tmp_path: Path) -> None:
    """An unquoted bot id or client id is the text the user wrote, not YAML's number."""
    config = write(tmp_path / "c.yaml", "coze:\n  bot_id: 0777\nauth:\n  client_id: 1_164\n")

    loaded = load_config(config, env={"COZE_EDGE_DEVICE__ID": "42"})

    assert (loaded.coze.bot_id, loaded.auth.client_id) == ("0777", "1_164")


# --- hooks ------------------------------------------------------------------------------------


def hook_case(tmp_path: Path, case: str) -> tuple[str, str]:
    """hooks.on_state for ``case`` and what the error must say."""
    match case:
        case "relative":
            return "leds --ring", "must start with the program's absolute path, got 'leds'"
        case "missing":
            return f"{tmp_path / 'leds'} --ring", f"{tmp_path / 'leds'} does not exist"
        case "not executable":
            script = write(tmp_path / "leds", "#!/bin/sh\n")
            script.chmod(0o644)
            return str(script), f"{script} is not executable"
        case "directory":
            return str(tmp_path), f"{tmp_path} is not a regular file"
    raise AssertionError(case)


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("case", ["relative", "missing", "not executable", "directory"])
async def test_a_hook_must_be_an_absolute_executable(
    tmp_path: Path, case: str, command: str
) -> None:
    """Checked at start, not at the first state change: exit 78 naming hooks.on_state."""
    on_state, says = hook_case(tmp_path, case)
    extra = f"hooks:\n  on_state: {yaml.safe_dump(on_state).splitlines()[0]}\n"
    config = write(tmp_path / "c.yaml", config_text(tmp_path, extra=extra))

    result = await coze_edge(command, "-c", str(config))

    assert_refused(result, f"hooks.on_state: {says}")


async def test_an_executable_hook_passes(tmp_path: Path) -> None:
    """An absolute path to an executable, with arguments, is accepted."""
    script = write(tmp_path / "leds", "#!/bin/sh\n")
    script.chmod(0o755)
    extra = f"hooks:\n  on_state: {script} --ring\n"
    config = write(tmp_path / "c.yaml", config_text(tmp_path, extra=extra))

    result = await coze_edge("check-config", "-c", str(config))

    assert result.returncode == 0, result.stderr
