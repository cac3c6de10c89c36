"""Where the daemon's Coze access token comes from: the seam between login and conversation."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from coze_edge.errors import AuthError

if TYPE_CHECKING:
    from coze_edge.config import Config

log = logging.getLogger(__name__)


class TokenSource(Protocol):
    """Gives the conversation a usable access token, and hears when Coze refused one."""

    async def token(self) -> str:
        """A token believed valid now; waits (e.g. for a login or a refresh) when there is none."""
        ...

    async def rejected(self, token: str) -> None:
        """Coze refused ``token`` (HTTP 401 at the handshake, error 4100 on a session)."""
        ...


class StaticToken:
    """A personal access token: nothing to refresh, so a refusal is final."""

    def __init__(self, token: str) -> None:
        if not token:
            raise AuthError("the personal access token is empty")
        self._token = token

    async def token(self) -> str:
        return self._token

    async def rejected(self, token: str) -> None:
        raise AuthError(
            "Coze refused the personal access token (expired, revoked, or missing the "
            "'chat' permission); put a new one in auth.pat_file"
        )


def pat_tokens(config: Config) -> StaticToken:
    """The personal access token of ``auth.method: pat``; AuthError when there is none."""
    from coze_edge.config import read_secret
    from coze_edge.logs import register_secret

    token = read_secret(config.auth.pat_file, "coze_pat")
    if not token:
        raise AuthError(
            "auth.method is pat but no token was found: set auth.pat_file, "
            "or give systemd the credential coze_pat"
        )
    register_secret(token)
    return StaticToken(token)
