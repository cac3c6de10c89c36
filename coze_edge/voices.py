"""
``coze-edge voices``: the voices the account can use, with the ids for ``coze.voice_id``.

The token comes from the same source as the daemon's (a PAT, or the saved OAuth login,
refreshed when due), but this command never starts a login: without saved credentials it
says to run ``coze-edge login`` and exits 77.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from coze_edge.config import Config
from coze_edge.errors import (
    EXIT_NO_AUTH,
    AuthenticationError,
    AuthError,
    CozeAPIError,
    CozeUnavailable,
)

if TYPE_CHECKING:
    from coze_edge.adapters.coze_http import CozeHttp, Voice
    from coze_edge.credentials import TokenSource

__all__ = ["format_voices", "list_voices"]

HEADER = ("voice_id", "name", "language", "kind")


async def list_voices(config: Config, *, out: TextIO, err: TextIO | None = None) -> int:
    """
    Print a table of the voices the configured account can use to ``out``; the exit code.

    0 listed; 77 no usable credentials (the message, on ``err``, says what to do); 1 Coze
    refused or could not be reached (one line on ``err``, with the Coze logid). Gives up
    after ``coze.connect_timeout_s + coze.read_timeout_s``.
    A ConfigError (an unreadable ``auth.pat_file``) propagates: the CLI exits 78.
    """
    from coze_edge.adapters.coze_http import CozeHttp
    from coze_edge.login import token_source_for

    err = sys.stderr if err is None else err
    # Renewing a token retries while Coze is unreachable (right for the daemon); a command
    # gives up instead.
    limit_s = config.coze.connect_timeout_s + config.coze.read_timeout_s
    try:
        async with (
            asyncio.timeout(limit_s),
            CozeHttp(
                config.coze.api_base,
                connect_timeout=config.coze.connect_timeout_s,
                read_timeout=config.coze.read_timeout_s,
            ) as http,
        ):
            # No on_prompt: without a saved login, token() raises AuthError instead of
            # starting a device flow.
            voices = await _fetch(http, token_source_for(config, http), config)
    except AuthError as exc:
        print(f"coze-edge voices: {exc}", file=err)
        return EXIT_NO_AUTH
    except CozeAPIError as exc:
        hint = ""
        if isinstance(exc, AuthenticationError):
            hint = (
                "; put a valid personal access token in auth.pat_file"
                if config.auth.method == "pat"
                else "; run `coze-edge login`"
            )
        print(f"coze-edge voices: Coze refused: {exc.describe()}{hint}", file=err)
        return 1
    except CozeUnavailable as exc:
        print(f"coze-edge voices: cannot reach {config.coze.api_base}: {exc}", file=err)
        return 1
    except TimeoutError:
        print(
            f"coze-edge voices: no answer from {config.coze.api_base} within {limit_s:g} s",
            file=err,
        )
        return 1
    out.write(format_voices(voices))
    out.flush()
    return 0


async def _fetch(http: CozeHttp, tokens: TokenSource, config: Config) -> list[Voice]:
    token = await tokens.token()
    try:
        return await http.voices(token)
    except AuthenticationError:
        if config.auth.method == "pat":
            raise  # nothing to renew: say what Coze said, with its logid
        # A saved OAuth token Coze no longer takes (revoked early): renew it once and retry.
        await tokens.rejected(token)
        return await http.voices(await tokens.token())


def format_voices(voices: Sequence[Voice]) -> str:
    """The table: a header, one voice per line, columns aligned; then a count."""
    if not voices:
        return "no voices available to this account\n"
    rows = [HEADER] + [
        (
            voice.voice_id,
            voice.name,
            voice.language_name or voice.language_code or "-",
            "system" if voice.is_system_voice else "cloned",
        )
        for voice in voices
    ]
    widths = [max(_width(row[column]) for row in rows) for column in range(len(HEADER))]
    lines = [
        "  ".join(_pad(cell, width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(f"{len(voices)} voice(s); put a voice_id in coze.voice_id")
    return "\n".join(lines) + "\n"


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
