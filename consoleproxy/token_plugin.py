"""Resolving a console token to a VNC server by asking the control plane.

`GET {CONSOLEAUTH_URL}<token>` with the shared secret in `X-Console-Auth-Secret` answers
200 `{"instance_uuid", "host", "port", "expires_at"}`, 404 for an unknown or expired token, or 403 for a
wrong secret. Anything else, or no answer within the timeout, refuses the console.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import requests
from websockify.token_plugins import BasePlugin

from consoleproxy.tokens import is_well_formed_token

SECRET_HEADER = "X-Console-Auth-Secret"  # noqa: S105 - a header name
_MAX_HOST_LENGTH = 255


@dataclass(frozen=True)
class ConsoleTarget:
    """The VNC server a valid token opens."""

    instance_uuid: str
    host: str
    port: int
    expires_at: datetime


class ConsoleAuthRefusal(Exception):
    """The control plane did not vouch for a token.

    `reason` is safe to log: it never contains the token. `unavailable` is true when the fault lies with
    the control plane (unreachable, misconfigured) rather than with the token.
    """

    def __init__(self, reason: str, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unavailable = unavailable


class ConsoleAuthTokenPlugin(BasePlugin):
    """websockify token plugin backed by the control plane's consoleauth view."""

    def __init__(self, *, url: str, secret: str, timeout: float) -> None:
        super().__init__(url)
        self._secret = secret
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.source!r})"

    def lookup(self, token: str) -> tuple[str, int] | None:
        """websockify's plugin interface: (host, port) for a valid token, else None."""
        try:
            target = self.resolve(token)
        except ConsoleAuthRefusal:
            return None
        return target.host, target.port

    def resolve(self, token: str) -> ConsoleTarget:
        """The console target of a token, or ConsoleAuthRefusal saying why not."""
        if not is_well_formed_token(token):
            raise ConsoleAuthRefusal("malformed token")
        # A fresh session per lookup: handlers run in forked processes that must not share pooled
        # sockets, and trust_env=False keeps the token away from any HTTP(S)_PROXY in the environment.
        with requests.Session() as session:
            session.trust_env = False
            try:
                response = session.get(
                    self.source + quote(token, safe=""),
                    headers={SECRET_HEADER: self._secret, "Accept": "application/json"},
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.Timeout:
                # `from None`: requests' exceptions quote the URL, which ends with the token.
                raise ConsoleAuthRefusal(
                    f"consoleauth did not answer within {self._timeout:g}s", unavailable=True
                ) from None
            except requests.RequestException as exc:
                raise ConsoleAuthRefusal(f"consoleauth unreachable ({type(exc).__name__})", unavailable=True) from None
        return self._target_from_response(response)

    @staticmethod
    def _target_from_response(response: requests.Response) -> ConsoleTarget:
        if response.status_code == 404:
            raise ConsoleAuthRefusal("consoleauth does not know the token (unknown or expired)")
        if response.status_code == 403:
            raise ConsoleAuthRefusal(
                "consoleauth rejected the shared secret (check CONSOLEAUTH_SECRET)", unavailable=True
            )
        if response.status_code != 200:
            raise ConsoleAuthRefusal(f"consoleauth answered HTTP {response.status_code}", unavailable=True)
        try:
            payload = response.json()
        except ValueError:
            raise ConsoleAuthRefusal("consoleauth answered invalid JSON", unavailable=True) from None
        return console_target_from_payload(payload, now=datetime.now(UTC))


def console_target_from_payload(payload: object, *, now: datetime) -> ConsoleTarget:
    """Validate a consoleauth 200 body; an expired token is refused even if the view let it through."""
    if not isinstance(payload, dict):
        raise _malformed("the body is not a JSON object")
    instance_uuid = payload.get("instance_uuid")
    host = payload.get("host")
    port = payload.get("port")
    expires_at_text = payload.get("expires_at")
    try:
        instance_uuid = str(uuid.UUID(str(instance_uuid)))
    except ValueError:
        raise _malformed("instance_uuid is not a UUID") from None
    if not isinstance(host, str) or not host or len(host) > _MAX_HOST_LENGTH or not host.isprintable():
        raise _malformed("host is not a host name or address")
    if " " in host:
        raise _malformed("host is not a host name or address")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise _malformed("port is not a TCP port")
    if not isinstance(expires_at_text, str):
        raise _malformed("expires_at is missing")
    try:
        expires_at = datetime.fromisoformat(expires_at_text)
    except ValueError:
        raise _malformed("expires_at is not an ISO 8601 date-time") from None
    if expires_at.tzinfo is None:
        raise _malformed("expires_at has no time zone")
    if expires_at <= now:
        raise ConsoleAuthRefusal(f"token expired at {expires_at.isoformat()}")
    return ConsoleTarget(instance_uuid=instance_uuid, host=host, port=port, expires_at=expires_at)


def _malformed(detail: str) -> ConsoleAuthRefusal:
    return ConsoleAuthRefusal(f"consoleauth answer is malformed: {detail}", unavailable=True)
