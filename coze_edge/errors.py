"""
Errors raised by coze_edge, and what each branch means for the caller.

* CozeEdgeError
    * UsageError                  the command line is wrong (an option, an argument, a file
                                  named on it); exit 64
    * Unavailable                 what a command needs is not there (no daemon on the control
                                  socket, a port already taken); exit 69
    * ConfigError                 the config is unusable; exit 78, systemd does not restart
        * CredentialFileError     only secret files are unusable (missing, empty, unreadable);
                                  exit 77 like AuthError
    * AuthError                   no usable token and no way to get one; exit 77
    * CozeAPIError                Coze answered with an error (code, msg, HTTP status, logid)
        * BadRequestError         400 / 4000
        * AuthenticationError     401 / 4100: refresh or log in again
        * PermissionDeniedError   403 / 4101
        * NotFoundError           404 / 4200
        * RequestTimeoutError     408 (the SDKs' TimeoutError, renamed to not shadow the builtin)
        * RateLimitError          429 / 4013
        * InternalServerError     500 and other 5xx
        * GatewayError            502
    * ProtocolError
        * LocalProtocolError      we drove a state machine wrongly: a bug
        * RemoteProtocolError     Coze (or a peer) sent something we cannot accept
    * TransientError              worth retrying after a backoff (``retry_after``: at least)
        * CozeUnavailable         websocket refused, closed or timed out; REST unreachable
            * CozeRefused         Coze refuses this bot or account (4015, 4101, ...):
                                  a person must change something there; retried slowly
            * RedirectRefused     Coze's URL answered with a redirect, which the token
                                  must not follow (a portal, a proxy, a wrong base URL)
        * BrokerUnavailable       MQTT broker unreachable (never stops the audio path)
        * AudioDeviceLost         microphone or speaker vanished or busy
    * Restart                     not a failure: restart the service now (a new
                                  conversation, a refreshed token), logged at INFO
    * RestartRequested            not a failure: the owner asked for a restart of the
                                  whole daemon; it stops cleanly and exits 75
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_USAGE = 64  # EX_USAGE
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_NO_AUTH = 77  # EX_NOPERM
EXIT_RESTART = 75  # EX_TEMPFAIL: asked to restart; the unit's RestartForceExitStatus=75


class CozeEdgeError(Exception):
    """Base of every error coze_edge raises on purpose."""


class ConfigError(CozeEdgeError):
    """The configuration cannot be used; ``problems`` holds (dotted key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]], *, source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        lines += [
            f"  {key}: {message}" if key else f"  {message}" for key, message in self.problems
        ]
        return "\n".join(lines)


class CredentialFileError(ConfigError):
    """Every problem is a secret file (``auth.pat_file``, a systemd credential, ...): the
    config is fine, but there are no usable credentials, which is exit 77, not 78."""


class UsageError(CozeEdgeError):
    """The command line asks for something that cannot be done as written."""


class Unavailable(CozeEdgeError):
    """Something the command needs is not there (a daemon to talk to, a free port)."""


class AuthError(CozeEdgeError):
    """No usable credentials, and no way to get them without a person."""


class CozeAPIError(CozeEdgeError):
    """Coze answered with an error. ``logid`` is what Coze support asks for."""

    def __init__(
        self,
        msg: str,
        *,
        code: int | str | None = None,
        http_status: int | None = None,
        logid: str | None = None,
    ) -> None:
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.logid = logid
        super().__init__(self.describe())

    def describe(self) -> str:
        parts = [self.msg or "error"]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        parts.append(f"logid={self.logid or '-'}")
        return " ".join(parts)


class BadRequestError(CozeAPIError):
    pass


class AuthenticationError(CozeAPIError):
    pass


class PermissionDeniedError(CozeAPIError):
    pass


class NotFoundError(CozeAPIError):
    pass


class RequestTimeoutError(CozeAPIError):
    pass


class RateLimitError(CozeAPIError):
    pass


class InternalServerError(CozeAPIError):
    pass


class GatewayError(CozeAPIError):
    pass


_CHECKED_IN_ORDER: tuple[tuple[type[CozeAPIError], int, int | None], ...] = (
    (BadRequestError, 400, 4000),
    (AuthenticationError, 401, 4100),
    (PermissionDeniedError, 403, 4101),
    (NotFoundError, 404, 4200),
    (RateLimitError, 429, 4013),  # 4013 is "model service error" in Coze's docs; coze-js
    # files it under rate limits all the same, and so do we (the hint names it right)
    (RequestTimeoutError, 408, None),
    (GatewayError, 502, None),
)
"""The class coze-js's ``APIError.generate`` picks: the first row whose HTTP status or
body code matches, in this order (coze-protocol.md 1.6); then any 5xx; then the base."""


def api_error(
    msg: str,
    *,
    code: Any = None,
    http_status: int | None = None,
    logid: str | None = None,
) -> CozeAPIError:
    """The error class the official SDKs would pick (coze-js's order, :data:`_CHECKED_IN_ORDER`)."""
    cls: type[CozeAPIError] = CozeAPIError
    for candidate, status, body_code in _CHECKED_IN_ORDER:
        if http_status == status or (body_code is not None and code == body_code):
            cls = candidate
            break
    else:
        if http_status is not None and http_status >= 500:
            cls = InternalServerError
    return cls(msg, code=code, http_status=http_status, logid=logid)


class ProtocolError(CozeEdgeError):
    pass


class LocalProtocolError(ProtocolError):
    """We drove a state machine wrongly: a bug in coze_edge."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something we cannot accept (malformed frame, wrong shape)."""


class TransientError(CozeEdgeError):
    """Worth retrying after a backoff; the supervisor does so."""

    retry_after: float | None = None
    """Wait at least this long before the next attempt (seconds); None: the backoff alone."""


class Restart(CozeEdgeError):
    """A deliberate restart of the service that raises it: at once, no backoff, no warning."""


class CozeUnavailable(TransientError):
    def __init__(self, msg: str, *, logid: str | None = None, http_status: int | None = None):
        self.logid = logid
        self.http_status = http_status
        suffix = f" (logid={logid})" if logid else ""
        super().__init__(f"{msg}{suffix}")


class CozeRefused(CozeUnavailable):
    """Coze refuses this bot, account or token's permissions: retried after minutes, since
    only a person (in Coze's console) can fix it; ``detail`` says what to do."""

    def __init__(
        self, msg: str, *, detail: str, retry_after: float, logid: str | None = None
    ) -> None:
        super().__init__(msg, logid=logid)
        self.detail = detail
        self.retry_after = retry_after


class RedirectRefused(CozeUnavailable):
    """A Coze URL answered with a redirect, and we do not follow one: the request carries
    the token. ``target`` is where it pointed, as ``scheme://host:port`` only (a query may
    hold anything, the token included)."""

    def __init__(self, msg: str, *, target: str, http_status: int) -> None:
        super().__init__(msg, http_status=http_status)
        self.target = target


class BrokerUnavailable(TransientError):
    pass


class AudioDeviceLost(TransientError):
    pass


class RestartRequested(CozeEdgeError):
    """The owner asked for a restart (Home Assistant's restart button, ``cmd/restart``):
    raised by a service, it stops the daemon as a signal would, and ``coze-edge run`` exits
    with EXIT_RESTART for systemd to start it again."""
