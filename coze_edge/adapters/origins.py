"""
Where a request may go with the token: origins (scheme, host, port) and redirects.

Neither the chat handshake (``coze_ws``) nor a REST call (``coze_http``) follows a
redirect, to another origin or to its own. Another origin would receive the token (in
the ``Authorization`` header, and for OAuth calls the refresh token in the body, which no
library strips); Coze's endpoints never redirect, so a redirect means a captive portal, an
intercepting proxy or a wrong base URL, and saying so, with where it pointed, helps the
person fixing it more than following it would. A same-origin redirect is refused too: it
costs nothing to refuse, as Coze sends none, and one rule for every redirect needs no
reasoning about which origin is "the same" (``ws`` vs ``http``, default ports).

The target is named as ``scheme://host:port`` only: a path or query chosen by the server
may hold anything, a token included, and a host name is cleaned of control characters
before it reaches a log line or a terminal.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

from coze_edge.errors import RedirectRefused

DEFAULT_PORTS: Final = {"http": 80, "ws": 80, "https": 443, "wss": 443}

_MAX_HOST: Final = 100


def _printable(text: str) -> str:
    clean = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    return clean if len(clean) <= _MAX_HOST else clean[:_MAX_HOST] + "..."


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the default port written out; never its user
    info, path or query."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed [ of an IPv6 address, a port out of range
        return "(an unreadable URL)"
    scheme = _printable(parts.scheme.lower()) or "(no scheme)"
    host = _printable(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


def redirect_refused(what: str, url: str, status: int, location: str | None) -> RedirectRefused:
    """
    The error for a redirect of ``what`` (e.g. ``"the chat handshake"``), sent to ``url``,
    answered with HTTP ``status`` and ``location``: names the target's origin and says
    whether it is ``url``'s own.
    """
    if location:
        target = origin(urllib.parse.urljoin(url, location))
        where = "its own origin" if target == origin(url) else "another origin"
        pointed = f"to {target} ({where})"
    else:
        target = "(none)"
        pointed = "without a Location"
    return RedirectRefused(
        f"{what} to {origin(url)} was redirected (HTTP {status}) {pointed}: refused, it "
        "would carry the token; check the Coze base URL, and for a captive portal or an "
        "intercepting proxy on the network",
        target=target,
        http_status=status,
    )
