"""``coze-edge voices`` against the real simulator on loopback."""

from __future__ import annotations

import asyncio
import io
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from coze_edge.adapters.coze_http import CozeHttp, Voice
from coze_edge.adapters.token_store import TokenStore
from coze_edge.config import Config, config_from_mapping
from coze_edge.errors import EXIT_NO_AUTH
from coze_edge.simulator import Simulator
from coze_edge.voices import format_voices, list_voices
from tests.support.cli import run_cli
from tests.support.daemon import daemon_settings
from tests.support.ports import free_port

PAT = "voices-pat-secret"
CLIENT_ID = "voices-client"
SIMULATOR_VOICES = ("7426720361733046281", "7426720361733144585", "7426725529589661723")


pytestmark = pytest.mark.simulator(pats=(PAT,))


def settings(tmp_path: Path, sim: Simulator, *, pat: str = PAT, **auth: Any) -> dict[str, Any]:
    pat_file = tmp_path / "pat"
    pat_file.write_text(pat + "\n")
    pat_file.chmod(0o600)
    return daemon_settings(
        sim,
        tmp_path / "state",
        coze={"bot_id": "7496"},
        auth={"pat_file": str(pat_file), **auth},
        device={"id": "5551234"},
    )


def oauth_config(tmp_path: Path, sim: Simulator) -> Config:
    data = settings(tmp_path, sim, method="device_code", client_id=CLIENT_ID, pat_file=None)
    return config_from_mapping(data, env={})


async def log_in(sim: Simulator, state_dir: Path) -> None:
    """A real device login against the simulator, saved where the daemon keeps it."""
    async with CozeHttp(sim.api_base) as http:
        code = await http.device_code(CLIENT_ID)
        sim.approve(code.user_code)
        token = await http.poll_token(CLIENT_ID, code.device_code)
    TokenStore(state_dir).save(token)


async def voices(config: Config) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await list_voices(config, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def test_the_account_voices_are_listed_with_their_ids(tmp_path: Path, sim: Simulator) -> None:
    """With a personal access token, every voice is listed with its id, language and kind."""
    config = config_from_mapping(settings(tmp_path, sim), env={})

    code, out, err = await voices(config)

    assert code == 0, err
    header, *rows, total = out.splitlines()
    assert header.split() == ["voice_id", "name", "language", "kind"]
    assert [row.split()[0] for row in rows] == list(SIMULATOR_VOICES)
    assert rows[2].split()[-2:] == ["English", "system"]
    assert total.startswith("3 voice(s)")
    assert PAT not in out + err


async def test_a_refused_token_is_one_line_with_the_logid(tmp_path: Path, sim: Simulator) -> None:
    """A token Coze refuses gives exit 1 and one error line carrying the Coze logid."""
    config = config_from_mapping(settings(tmp_path, sim, pat="not-a-valid-pat"), env={})

    code, out, err = await voices(config)

    assert code == 1
    assert out == ""
    [line] = err.splitlines()
    assert "http=401" in line
    assert "logid=" in line
    assert "logid=-" not in line
    assert "auth.pat_file" in line


async def test_without_a_login_it_says_to_log_in_and_starts_no_flow(
    tmp_path: Path, sim: Simulator
) -> None:
    """With the device login and nothing saved, exit 77 says `coze-edge login`; no code is asked."""
    code, out, err = await voices(oauth_config(tmp_path, sim))

    assert code == EXIT_NO_AUTH
    assert out == ""
    assert "coze-edge login" in err
    assert sim.pending_user_codes() == []


async def test_a_saved_login_is_used_and_renewed_when_refused(
    tmp_path: Path, sim: Simulator
) -> None:
    """The saved OAuth token lists the voices; once Coze drops it, it is refreshed and retried."""
    config = oauth_config(tmp_path, sim)
    await log_in(sim, config.state_dir)
    before = TokenStore(config.state_dir).load()

    code, out, err = await voices(config)
    assert code == 0, err
    assert out.count("\n") == len(SIMULATOR_VOICES) + 2

    sim.expire_access_tokens()
    code, out, err = await voices(config)
    assert code == 0, err
    after = TokenStore(config.state_dir).load()
    assert before is not None
    assert after is not None
    assert after.access_token != before.access_token


async def test_an_unreachable_coze_is_one_line(tmp_path: Path, sim: Simulator) -> None:
    """Nothing listening at coze.api_base gives exit 1 and one line naming the address."""
    data = settings(tmp_path, sim)
    data["coze"]["api_base"] = f"http://127.0.0.1:{free_port()}"
    config = config_from_mapping(data, env={})

    code, out, err = await voices(config)

    assert code == 1
    assert out == ""
    [line] = err.splitlines()
    assert data["coze"]["api_base"] in line


async def test_an_overdue_renewal_gives_up_when_coze_stays_away(
    tmp_path: Path, sim: Simulator
) -> None:
    """A login due for renewal while Coze is unreachable: exit 1 at once, saying so (the
    token file is kept: the next try may refresh it)."""
    config = oauth_config(tmp_path, sim)
    await log_in(sim, config.state_dir)
    token = TokenStore(config.state_dir).load()
    assert token is not None
    TokenStore(config.state_dir).save(replace(token, expires_at=token.obtained_at))
    unreachable = f"http://127.0.0.1:{free_port()}"
    config = replace(
        config,
        coze=replace(config.coze, api_base=unreachable, connect_timeout_s=0.1, read_timeout_s=0.2),
    )

    code, out, err = await voices(config)

    assert code == 1
    assert out == ""
    assert err.startswith(f"coze-edge voices: cannot reach {unreachable}: token refresh: ")
    kept = TokenStore(config.state_dir).load()
    assert kept is not None
    assert kept.refresh_token == token.refresh_token


def test_the_table_aligns_wide_characters_and_names_cloned_voices() -> None:
    """Columns line up in a terminal even with CJK names, and cloned voices say so."""
    table = format_voices(
        [
            Voice("1", "柔美女友", "zh", "中文", True),
            Voice("22", "Mine", "en", "", False),
        ]
    )

    header, first, second, _ = table.splitlines()
    assert columns(first[: first.index("中文")]) == header.index("language")
    assert columns(second[: second.index("en")]) == header.index("language")
    assert second.split() == ["22", "Mine", "en", "cloned"]


def columns(text: str) -> int:
    """Terminal columns: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) == "W" else 1 for ch in text)


async def test_the_cli_lists_the_simulator_voices(tmp_path: Path, sim: Simulator) -> None:
    """`python -m coze_edge voices -c FILE` prints the simulator's voices and exits 0."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path, sim)))

    result = await run_cli("voices", "-c", str(path), stderr=asyncio.subprocess.PIPE)

    assert result.returncode == 0, result.stderr
    for voice_id in SIMULATOR_VOICES:
        assert voice_id in result.stdout
