"""
A Coze JWT app made in the test (a fresh RSA key pair), registered with a simulator, and
the vendor's token service in front of it on loopback.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from coze_edge.simulator import Simulator
from coze_edge.token_service import ServiceSettings, TokenService, device_secret

MASTER_KEY = b"test-master-key_48-characters-of-entropy-or-so-x"
APP_ID = "1127900106117"


@dataclass(frozen=True)
class JwtApp:
    """A JWT app as its owner makes it in Coze's console: id, key fingerprint, key pair."""

    app_id: str
    kid: str
    private_pem: str = field(repr=False)
    public_pem: str

    def settings(self, sim: Simulator, **changes: Any) -> ServiceSettings:
        """The token service's settings for this app, in front of ``sim``."""
        settings = ServiceSettings(
            app_id=self.app_id,
            key_id=self.kid,
            private_key_pem=self.private_pem,
            master_key=MASTER_KEY,
            coze_api_base=sim.api_base,
        )
        return replace(settings, **changes)

    def write_private_key(self, path: Path) -> Path:
        path.write_text(self.private_pem)
        path.chmod(0o600)
        return path


@functools.cache
def _key_pair(name: str) -> tuple[str, str]:
    # 2048-bit RSA, as Coze's console makes; one per name for the whole run (about 50 ms each).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def jwt_app(name: str = "app", *, app_id: str = APP_ID) -> JwtApp:
    """A JWT app whose key pair is made here (``name`` tells different pairs apart)."""
    private, public = _key_pair(name)
    return JwtApp(app_id=app_id, kid=f"kid-{name}", private_pem=private, public_pem=public)


def secret_for(device_id: str) -> str:
    """What ``token-service issue-secret`` prints for ``device_id`` under MASTER_KEY."""
    return device_secret(MASTER_KEY, device_id)


@contextlib.asynccontextmanager
async def token_service(
    sim: Simulator, app: JwtApp | None = None, /, *, register: bool = True, **changes: Any
) -> AsyncIterator[TokenService]:
    """The token service on a free loopback port for ``app`` (default :func:`jwt_app`),
    whose public key ``sim`` knows unless ``register`` is false."""
    app = app or jwt_app()
    if register:
        sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
    async with TokenService(app.settings(sim, **changes)) as service:
        yield service
