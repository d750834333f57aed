"""The console proxy's settings, read once from the environment at start-up."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from consoleproxy.origin import InvalidOrigin, OriginAllowlist

DEFAULT_LISTEN = "127.0.0.1:6080"
DEFAULT_CONSOLEAUTH_URL = "http://127.0.0.1:8000/internal/consoleauth/"
DEFAULT_ALLOWED_ORIGINS = "http://127.0.0.1:8000,http://localhost:8000,http://127.0.0.1:6080,http://localhost:6080"
DEFAULT_CONNECT_TIMEOUT = "5"
DEFAULT_CONSOLEAUTH_TIMEOUT = "3"
DEFAULT_NOVNC_DIR = "/usr/share/novnc"
DEFAULT_SESSION_CHECK_INTERVAL = "5"
DEFAULT_MAX_SESSIONS_PER_TOKEN = "1"  # noqa: S105 - a count
_MAX_SESSIONS_PER_TOKEN = 100
_MAX_TIMEOUT = 300.0

T = TypeVar("T")


class ConfigError(ValueError):
    """The environment does not describe a runnable proxy; the message lists every problem."""


@dataclass(frozen=True)
class ConsoleProxyConfig:
    listen_host: str
    listen_port: int
    consoleauth_url: str
    consoleauth_secret: str = field(repr=False)
    allowed_origins: OriginAllowlist
    connect_timeout: float
    consoleauth_timeout: float
    novnc_dir: str
    tls_cert: str | None = None
    tls_key: str | None = None
    # Seconds between a session's check-ins with the control plane (how soon an ended session closes).
    session_check_interval: float = 5.0
    # End a session when its token expires, rather than letting it run until the browser leaves.
    close_on_token_expiry: bool = False
    max_sessions_per_token: int = 1

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsoleProxyConfig:
        """Read CONSOLEPROXY_*, CONSOLEAUTH_*, CONSOLE_ALLOWED_ORIGINS and NOVNC_DIR; raise ConfigError."""
        env = os.environ if environ is None else environ
        problems: dict[str, str] = {}

        def read(name: str, parse: Callable[[str], T], default: str | None) -> T | None:
            raw = env.get(name, "").strip() or default
            if raw is None:
                return None
            try:
                return parse(raw)
            except ValueError as exc:
                problems[name] = str(exc)
                return None

        listen = read("CONSOLEPROXY_LISTEN", parse_listen, DEFAULT_LISTEN)
        consoleauth_url = read("CONSOLEAUTH_URL", parse_consoleauth_url, DEFAULT_CONSOLEAUTH_URL)
        secret = read("CONSOLEAUTH_SECRET", parse_secret, None)
        if secret is None and "CONSOLEAUTH_SECRET" not in problems:
            problems["CONSOLEAUTH_SECRET"] = "required (the secret shared with the consoleauth view)"  # noqa: S105
        allowed_origins = read("CONSOLE_ALLOWED_ORIGINS", parse_allowed_origins, DEFAULT_ALLOWED_ORIGINS)
        connect_timeout = read("CONSOLEPROXY_CONNECT_TIMEOUT", parse_timeout, DEFAULT_CONNECT_TIMEOUT)
        consoleauth_timeout = read("CONSOLEAUTH_TIMEOUT", parse_timeout, DEFAULT_CONSOLEAUTH_TIMEOUT)
        novnc_dir = read("NOVNC_DIR", parse_directory, DEFAULT_NOVNC_DIR)
        tls_cert = read("CONSOLEPROXY_CERT", parse_readable_file, None)
        tls_key = read("CONSOLEPROXY_KEY", parse_readable_file, None)
        session_check_interval = read(
            "CONSOLEPROXY_SESSION_CHECK_INTERVAL", parse_timeout, DEFAULT_SESSION_CHECK_INTERVAL
        )
        close_on_token_expiry = read("CONSOLEPROXY_CLOSE_ON_TOKEN_EXPIRY", parse_bool, "0")
        max_sessions_per_token = read(
            "CONSOLEPROXY_MAX_SESSIONS_PER_TOKEN", parse_max_sessions, DEFAULT_MAX_SESSIONS_PER_TOKEN
        )
        if tls_key is not None and tls_cert is None and "CONSOLEPROXY_CERT" not in problems:
            problems["CONSOLEPROXY_KEY"] = "set without CONSOLEPROXY_CERT"

        if problems:
            lines = "".join(f"\n  {name}: {problem}" for name, problem in problems.items())
            raise ConfigError(f"invalid console proxy configuration:{lines}")
        return cls(
            listen_host=listen[0],
            listen_port=listen[1],
            consoleauth_url=consoleauth_url,
            consoleauth_secret=secret,
            allowed_origins=allowed_origins,
            connect_timeout=connect_timeout,
            consoleauth_timeout=consoleauth_timeout,
            novnc_dir=novnc_dir,
            tls_cert=tls_cert,
            tls_key=tls_key,
            session_check_interval=session_check_interval,
            close_on_token_expiry=close_on_token_expiry,
            max_sessions_per_token=max_sessions_per_token,
        )


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` or `[ipv6]:port` to (host, port)."""
    host, separator, port_text = value.rpartition(":")
    if not separator or not host:
        raise ValueError(f"{value!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, [addr]:port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_consoleauth_url(value: str) -> str:
    """An http(s) URL to which the token is appended; a missing trailing slash is added."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValueError(f"{value!r} must not have a query or fragment (the token is appended to the path)")
    if parts.username or parts.password:
        raise ValueError("must not contain credentials (the shared secret goes in CONSOLEAUTH_SECRET)")
    return value if value.endswith("/") else value + "/"


def parse_secret(value: str) -> str:
    if not all(0x21 <= ord(char) <= 0x7E for char in value):
        raise ValueError("must be printable ASCII without spaces (it is sent as an HTTP header)")
    return value


def parse_allowed_origins(value: str) -> OriginAllowlist:
    try:
        return OriginAllowlist.parse(value)
    except InvalidOrigin as exc:
        raise ValueError(f"{exc} (expected a comma-separated list of scheme://host[:port])") from None


def parse_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= _MAX_TIMEOUT:
        raise ValueError(f"{value!r}: must be more than 0 and at most {_MAX_TIMEOUT:g} seconds")
    return seconds


def parse_bool(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a yes/no value (1, true, yes, on or 0, false, no, off)")


def parse_max_sessions(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= _MAX_SESSIONS_PER_TOKEN:
        raise ValueError(f"{value!r}: must be a whole number from 1 to {_MAX_SESSIONS_PER_TOKEN}")
    return int(value)


def parse_directory(value: str) -> str:
    path = os.path.abspath(value)
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory (install noVNC or point NOVNC_DIR at it)")
    return path


def parse_readable_file(value: str) -> str:
    path = os.path.abspath(value)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not a readable file")
    return path
