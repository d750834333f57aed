"""The Origin check for websocket upgrades.

A page on any site can open a websocket to the proxy from a victim's browser, and the browser names
that page in the Origin header. Only pages served by the cloud itself may drive a console, so the
header, when there is one, must match an operator-configured allowlist exactly; the proxy never
derives the allowed origin from other request headers (Host, X-Forwarded-*), which the client controls.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
_MAX_SHOWN = 100


class InvalidOrigin(ValueError):
    """An Origin value that names no single http(s) origin."""


@dataclass(frozen=True, order=True)
class Origin:
    """A serialised web origin reduced to what identifies it: lower-case scheme and host, explicit port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"


def parse_origin(value: str) -> Origin:
    """Normalise `scheme://host[:port]` (an optional trailing slash allowed) or raise InvalidOrigin.

    The opaque origin "null" (sandboxed frames, file: pages, some redirects) names no site and is
    never accepted.
    """
    text = value.strip()
    if not text:
        raise InvalidOrigin("empty origin")
    if text.lower() == "null":
        raise InvalidOrigin('opaque origin "null"')
    if not _PRINTABLE_ASCII.fullmatch(text):
        raise InvalidOrigin("origin contains spaces or non-ASCII characters")
    if "?" in text or "#" in text:
        raise InvalidOrigin("origin must not have a query or fragment")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidOrigin("origin is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidOrigin("origin scheme must be http or https")
    if "@" in parts.netloc:
        raise InvalidOrigin("origin must not contain credentials")
    if parts.path not in ("", "/"):
        raise InvalidOrigin("origin must not have a path")
    host = _normalise_host(parts.hostname or "", bracketed=parts.netloc.startswith("["))
    return Origin(scheme=scheme, host=host, port=_port(parts, scheme))


def _normalise_host(host: str, *, bracketed: bool) -> str:
    if not host:
        raise InvalidOrigin("origin has no host")
    if bracketed:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise InvalidOrigin("origin has an invalid IPv6 address") from None
    if not _HOSTNAME.fullmatch(host):
        raise InvalidOrigin("origin has an invalid host name")
    return host


def _port(parts: SplitResult, scheme: str) -> int:
    try:
        port = parts.port
    except ValueError:
        raise InvalidOrigin("origin has an invalid port") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise InvalidOrigin("origin has an empty port")
        return DEFAULT_PORTS[scheme]
    if port == 0:
        raise InvalidOrigin("origin has an invalid port")
    return port


def _shown(value: str) -> str:
    """A bounded, escaped rendering of a client-supplied value for a log line."""
    if len(value) > _MAX_SHOWN:
        return repr(value[:_MAX_SHOWN]) + "..."
    return repr(value)


@dataclass(frozen=True)
class OriginAllowlist:
    """The origins whose pages may open a console websocket."""

    origins: frozenset[Origin]

    @classmethod
    def parse(cls, text: str) -> OriginAllowlist:
        """Build the allowlist from a comma-separated list; raises InvalidOrigin naming the bad entry."""
        origins = set()
        for entry in (item.strip() for item in text.split(",")):
            if not entry:
                continue
            if entry == "*":
                raise InvalidOrigin('"*" is not accepted: list every allowed origin')
            try:
                origins.add(parse_origin(entry))
            except InvalidOrigin as exc:
                raise InvalidOrigin(f"{entry!r}: {exc}") from None
        if not origins:
            raise InvalidOrigin("no origin listed")
        return cls(origins=frozenset(origins))

    def __str__(self) -> str:
        return ", ".join(str(origin) for origin in sorted(self.origins))

    def allows(self, value: str) -> bool:
        try:
            return parse_origin(value) in self.origins
        except InvalidOrigin:
            return False

    def refusal_reason(self, header_values: list[str]) -> str | None:
        """Why a handshake with these Origin header values must be refused, or None to let it through.

        No Origin at all is a client that is not a browser (browsers name the page on every websocket
        handshake): it holds the token itself and drives no victim's session, so it passes, as with
        Nova's proxy. Every Origin a browser sends must be on the list."""
        if not header_values:
            return None
        if len(header_values) > 1:
            return "more than one Origin header"
        value = header_values[0]
        try:
            origin = parse_origin(value)
        except InvalidOrigin as exc:
            return f"Origin {_shown(value)} refused: {exc}"
        if origin not in self.origins:
            return f"Origin {origin} is not in CONSOLE_ALLOWED_ORIGINS"
        return None
