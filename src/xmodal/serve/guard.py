"""Who may talk to the search server, and what its answers may say.

:class:`HostGuard` is an ASGI middleware: a request whose ``Host`` is not an allowed name, or that
carries an ``Origin`` whose host is not one, gets a 403 before any handler runs. The loopback names
(``localhost``, ``127.0.0.1``, ``[::1]``) are always allowed; others only when given (``--allow-host``).
This stops DNS rebinding (a page on ``evil.example`` whose name now points at 127.0.0.1 sends
``Host: evil.example``) and cross-origin requests (a page the user visits posting to the local server
sends its own ``Origin``). :func:`scrub` strips folders from a message: answers name files only by
their file name or by their path relative to an indexed root.
"""

from __future__ import annotations

import re
from typing import Any, Iterable
from urllib.parse import urlsplit

LOOPBACK = ("localhost", "127.0.0.1", "[::1]")  # Host names always allowed
FORBIDDEN = b'{"error": "forbidden: this server answers only its own host names and pages"}'
_PART = r"[^\s'\"\\/:,;()\[\]{}<>]"
ABSOLUTE = re.compile(rf"(?<![\w.~])(?:[A-Za-z]:)?[\\/](?:{_PART}+[\\/])*({_PART}*)")


def host_name(value: str) -> str:
    """The name part of a ``Host`` header or URL netloc, lower case: ``[::1]:80`` -> ``[::1]``."""
    value = value.strip().lower().rsplit("@", 1)[-1]
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return f"[{value}]" if ":" in value else value  # a bare IPv6 address


def allowed_names(extra: Iterable[str]) -> frozenset[str]:
    return frozenset(LOOPBACK) | {host_name(h) for h in extra if h.strip()}


def request_allowed(headers: dict[str, str], allowed: frozenset[str]) -> bool:
    """Whether a request's Host (required) and Origin (when present) name allowed hosts."""
    host = headers.get("host")
    if host is None or host_name(host) not in allowed:
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and host_name(parts.netloc) in allowed


class HostGuard:
    """ASGI middleware answering 403 to requests for a foreign Host or from a foreign Origin."""

    def __init__(self, app: Any, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            if not request_allowed(headers, self.allowed):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(FORBIDDEN)).encode())]})
                await send({"type": "http.response.body", "body": FORBIDDEN})
                return
        await self.app(scope, receive, send)


def scrub(message: str, replace: dict[str, str] | None = None) -> str:
    """``message`` with each key of ``replace`` replaced by its value, then every absolute path cut to
    its last part (``/home/u/media/x.png: bad`` -> ``x.png: bad``)."""
    for old, new in (replace or {}).items():
        message = message.replace(old, new)
    return ABSOLUTE.sub(lambda m: m.group(1), message)
