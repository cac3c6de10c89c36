"""
The JWT grant of Coze's token endpoint (coze-protocol.md 2.7; Coze's "OAuth JWT" page):
a JWT app's RS256 JWT in ``Authorization: Bearer``, body ``{"grant_type":
"urn:ietf:params:oauth:grant-type:jwt-bearer", "duration_seconds": N}``; the answer is an
access token and its absolute expiry, no refresh token.

Checked as Coze documents it: header ``alg`` RS256, ``typ`` JWT, ``kid`` a registered
public key; signature; ``iss`` the app that key belongs to; ``aud`` the API host;
``iat`` and ``exp`` (now between them, ``exp`` after ``iat``); ``jti`` present and used
once; ``session_context.device_info`` an object of strings; ``duration_seconds`` 1 to
86399 (default 900). A bad JWT is ``invalid_client``, a bad parameter
``invalid_request`` (the codes of Coze's page). The HTTP statuses are inferred: 401 for
``invalid_client`` (RFC 6749 5.2, the client authenticated in the header), 400 else.

Verified with PyJWT (the ``token-service`` extra), independently of how the token service
signs; cozepy's own JWT app (signed with authlib) is checked against it in the tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger(__name__)

JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_DURATION_S: Final = 900
MAX_DURATION_S: Final = 86399
LEEWAY_S: Final = 60
"""Clock skew allowed on ``iat`` and ``exp`` [INF]."""
DEVICE_INFO_KEYS: Final = ("device_id", "custom_consumer")


class JwtRefused(Exception):
    """The grant is refused: ``error`` (an OAuth code), ``status``, and why."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = 401 if error == "invalid_client" else 400


@dataclass(frozen=True, slots=True)
class JwtGrant:
    """One accepted JWT grant, as the simulator saw it."""

    app_id: str
    kid: str
    jti: str
    duration_s: int
    session_name: str | None
    device_info: dict[str, str] | None
    """``session_context.device_info``: what Coze counts usage and quota by."""
    claims: dict[str, Any] = field(repr=False)
    access_token: str = field(default="", repr=False)
    """The token issued for it."""


class JwtApps:
    """The JWT apps' public keys, the ``jti`` seen, and every grant accepted."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, Any]] = {}  # kid -> (app id, public key)
        self._seen_jti: dict[str, float] = {}  # jti -> when it may be forgotten
        self.grants: list[JwtGrant] = []
        self.refusals: list[str] = []
        """The ``error: message`` of each refused grant, in order."""

    def register(self, app_id: str, kid: str, public_key_pem: str | bytes) -> None:
        """A JWT app's public key, as made in Coze's console (``kid`` its fingerprint)."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        self._keys[kid] = (app_id, load_pem_public_key(pem))

    def grant(self, authorization: str | None, body: dict[str, Any], audience: str) -> JwtGrant:
        """The grant (its ``duration_s`` the token lifetime to issue); JwtRefused when Coze
        would refuse it. The caller :meth:`record` s it with the token it issues."""
        try:
            return self._grant(authorization, body, audience)
        except JwtRefused as exc:
            self.refusals.append(f"{exc.error}: {exc.message}")
            log.info("! JWT grant refused: %s: %s", exc.error, exc.message)
            raise

    def record(self, grant: JwtGrant) -> None:
        self.grants.append(grant)

    def _grant(self, authorization: str | None, body: dict[str, Any], audience: str) -> JwtGrant:
        try:
            import jwt
        except ImportError:  # pragma: no cover - the test extra has it
            raise JwtRefused(
                "internal_error",
                "the simulator needs PyJWT: pip install 'coze-edge[token-service]'",
            ) from None
        duration = body.get("duration_seconds", DEFAULT_DURATION_S)
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or not 1 <= duration <= MAX_DURATION_S
        ):
            raise JwtRefused("invalid_request", "invalid request: duration_seconds")
        if not authorization or not authorization.startswith("Bearer "):
            raise JwtRefused("invalid_client", "no JWT in the Authorization header")
        token = authorization[len("Bearer ") :].strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise JwtRefused("invalid_client", f"malformed JWT: {exc}") from None
        if header.get("alg") != "RS256":
            raise JwtRefused("invalid_client", f"alg must be RS256, got {header.get('alg')!r}")
        if header.get("typ") != "JWT":
            raise JwtRefused("invalid_client", f"typ must be JWT, got {header.get('typ')!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise JwtRefused("invalid_client", f"unknown public key fingerprint (kid) {kid!r}")
        app_id, key = self._keys[kid]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=audience,
                issuer=app_id,
                leeway=LEEWAY_S,
                options={"require": ["iss", "aud", "iat", "exp", "jti"], "verify_iat": True},
            )
        except jwt.InvalidSignatureError:
            raise JwtRefused("invalid_client", "the JWT's signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise JwtRefused("invalid_client", "the JWT has expired (exp)") from None
        except jwt.ImmatureSignatureError:
            raise JwtRefused("invalid_client", "the JWT is issued in the future (iat)") from None
        except jwt.InvalidAudienceError:
            raise JwtRefused("invalid_client", f"aud must be {audience!r}") from None
        except jwt.InvalidIssuerError:
            raise JwtRefused("invalid_client", "iss is not the app of this kid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise JwtRefused("invalid_client", f"the JWT lacks {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise JwtRefused("invalid_client", f"invalid JWT: {exc}") from None
        if claims["exp"] <= claims["iat"]:
            raise JwtRefused("invalid_client", "exp must be later than iat")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise JwtRefused("invalid_client", "jti must be a non-empty string")
        now = time.time()
        self._seen_jti = {j: t for j, t in self._seen_jti.items() if t > now}
        if jti in self._seen_jti:
            raise JwtRefused("invalid_client", "the JWT was used already (jti)")
        session_name = claims.get("session_name")
        if session_name is not None and not isinstance(session_name, str):
            raise JwtRefused("invalid_request", "invalid request: session_name")
        device_info = _device_info(claims.get("session_context"))
        self._seen_jti[jti] = float(claims["exp"]) + LEEWAY_S
        return JwtGrant(app_id, kid, jti, duration, session_name, device_info, claims)


def _device_info(context: object) -> dict[str, str] | None:
    if context is None:
        return None
    if not isinstance(context, dict):
        raise JwtRefused("invalid_request", "invalid request: session_context")
    info = context.get("device_info")
    if info is None:
        return None
    if not isinstance(info, dict) or not info:
        raise JwtRefused("invalid_request", "invalid request: session_context.device_info")
    for key, value in info.items():
        if key not in DEVICE_INFO_KEYS or not isinstance(value, str) or not value:
            raise JwtRefused(
                "invalid_request", f"invalid request: session_context.device_info.{key}"
            )
    return dict(info)
