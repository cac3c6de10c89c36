"""
The checks that the sections' ``problems()`` share, and the "did you mean" hint.

Each check yields ``(key, message)`` problems; a message says what the value must be and
what it was, so the user can fix the file without reading the code.
"""

from __future__ import annotations

import difflib
import ipaddress
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Final

Problem = tuple[str, str]
"""A dotted key (relative to its section inside ``problems()``) and what is wrong with it."""


def show(value: object) -> str:
    """``value`` as the user wrote it (its repr), cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def hint(word: str, choices: Iterable[str]) -> str:
    """' (did you mean ...?)' with the choice closest to ``word``, or '' if none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(key: str, value: str | None, choices: tuple[str | None, ...]) -> Iterator[Problem]:
    if value not in choices:
        words = [c for c in choices if c is not None]
        names = alternatives([*words, "null"] if None in choices else words)
        suggestion = hint(value.lower(), words) if isinstance(value, str) else ""
        yield key, f"must be {names}, got {show(value)}{suggestion}"


def alternatives(words: list[str]) -> str:
    """'a, b or c'."""
    return f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else "".join(words)


def between(key: str, value: float, low: float, high: float, unit: str = "") -> Iterator[Problem]:
    if not low <= value <= high:  # written so that NaN fails too
        yield (
            key,
            f"must be between {_num(low)}{unit} and {_num(high)}{unit}, got {_num(value)}{unit}",
        )


def positive(key: str, value: float, high: float, unit: str) -> Iterator[Problem]:
    if not 0 < value <= high:
        yield (
            key,
            f"must be more than 0{unit} and at most {_num(high)}{unit}, got {_num(value)}{unit}",
        )


def ms(key: str, value: int, low: int, high: int, *, step: int = 1) -> Iterator[Problem]:
    yield from between(key, value, low, high, " ms")
    if value % step:
        yield key, f"must be a multiple of {step} ms, got {value} ms"


def url(key: str, value: str, schemes: tuple[str, ...]) -> Iterator[Problem]:
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        yield key, f"is not a URL, got {show(value)}"
        return
    if parts.scheme not in schemes or not parts.netloc:
        allowed = " or ".join(f"{s}://" for s in schemes)
        yield key, f"must be a URL starting with {allowed}, got {show(value)}"
    elif parts.query or parts.fragment:
        yield key, f"must be a base URL without ?query or #fragment, got {show(value)}"


CLEAR_SCHEMES: Final = ("http", "ws")
"""URL schemes without TLS: a token sent over them can be read on the way."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def only_loopback_in_clear(key: str, value: str, allow_key: str) -> Iterator[Problem]:
    """``http://`` / ``ws://`` in ``value`` only to loopback; ``allow_key`` lifts that."""
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname or ""
    except ValueError:
        return  # not a URL: url() says so
    if parts.scheme in CLEAR_SCHEMES and not is_loopback(host):
        secure = {"http": "https", "ws": "wss"}[parts.scheme]
        yield (
            key,
            f"{parts.scheme}:// to {host} would send the token unencrypted: use {secure}://, "
            f"or set coze.{allow_key}: true for a test bench",
        )


def not_blank(key: str, value: str | None, what: str = "must not be empty") -> Iterator[Problem]:
    if value is not None and not value.strip():
        yield key, what


def topic(key: str, value: str) -> Iterator[Problem]:
    if not value:
        yield key, "must not be empty"
    elif "+" in value or "#" in value:
        yield key, f"must not contain the MQTT wildcards + or #, got {show(value)}"
    elif value.endswith("/"):
        yield key, f"must not end in '/', got {show(value)}"
    elif value.startswith("$"):
        yield key, f"must not start with '$' (reserved for the broker), got {show(value)}"
    elif "\0" in value:
        yield key, "must not contain a NUL character"


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def token_url(key: str, value: str) -> Iterator[Problem]:
    """A URL that may carry a secret: https, or http to this machine only (loopback)."""
    problems = list(url(key, value, ("http", "https")))
    if problems:
        yield from problems
        return
    parts = urllib.parse.urlsplit(value)
    host = (parts.hostname or "").lower()
    loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
    if parts.scheme == "http" and not loopback:
        yield (
            key,
            f"must start with https:// (http:// only to this machine, it carries the device's "
            f"secret), got {show(value)}",
        )
    elif parts.username or parts.password:
        yield key, "must not hold a user name or password: the secret goes in a file"
