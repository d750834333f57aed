"""Keeping console tokens out of log lines.

A console token is a bearer credential for a VM's screen until it expires. websockify and http.server
log request lines (with the query string) and error text; every line the proxy writes passes through
`redact`, once where the request handler logs and once more in the log formatter, so that a token
cannot reach a log by a path nobody thought of.
"""

from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"

_PATTERNS = (
    # token=..., also percent-encoded once or twice as in vnc_lite.html?path=%3Ftoken%3D...
    re.compile(r"(?i)(token(?:=|%3D|%253D))[^\s&;#'\"]+"),
    # the path form of a websocket URL, ws://proxy/token/<token>
    re.compile(r"(?i)(/token/)[^\s/?#'\"]+"),
    # the consoleauth URL carries the token as its last path segment
    re.compile(r"(?i)(consoleauth/)[^\s/?#'\"]+"),
    # every other query value: the client chooses the parameter names, and parse_qs decodes them
    re.compile(r"([?&][^\s=&;#'\"?]*=)[^\s&;#'\"]+"),
)


def redact(text: str) -> str:
    """The text with every token-like value replaced by a marker."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\1{REDACTED}", text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output, tracebacks included, never contains a query value or token."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: int = logging.INFO) -> None:
    """Send every logger to stderr through the redacting formatter (foreground process, Procfile)."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3 logs each request URL at DEBUG, and the consoleauth URL ends with the token.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
