"""Console sessions reported to the control plane, and the watch that ends them.

Each websocket the proxy relays is a session the control plane knows about: the proxy opens it with
the token (in the request body, never in a URL) before the upgrade is accepted, checks in every
`check_interval` seconds while it lasts, and reports its end. A check may answer that the session must
close (an administrator ended it, the token was revoked, the instance stopped); with
`close_on_token_expiry` the proxy also ends it when the token expires. Either way the watcher calls
`on_end(code, reason)` once, and the request handler closes both sides of the relay.

    POST {CONSOLEAUTH_URL}sessions             {"token", "client", "max_sessions"} -> 201 {"session_id"}
    POST {CONSOLEAUTH_URL}sessions/<id>/check  -> 200 {"close": bool, "reason"}
    POST {CONSOLEAUTH_URL}sessions/<id>/close  {"reason"} -> 200
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests

from consoleproxy.token_plugin import SECRET_HEADER, ConsoleAuthRefusal

logger = logging.getLogger("consoleproxy.sessions")

# Websocket close codes (4000-4999 are for applications) and the reasons the browser is given.
CLOSE_TOKEN_EXPIRED = 4001
CLOSE_ENDED = 4002
TOKEN_EXPIRED_REASON = "the console token expired"  # noqa: S105 - a message


class SessionLimitReached(ConsoleAuthRefusal):
    """The token already has as many open sessions as the proxy allows."""


class SessionReporter:
    """The control plane's console-session endpoints, called with the shared secret."""

    def __init__(self, *, consoleauth_url: str, secret: str, timeout: float) -> None:
        self._base = consoleauth_url + "sessions"
        self._secret = secret
        self._timeout = timeout

    def _post(self, path: str, body: dict) -> requests.Response:
        # A fresh session per call, for the same reasons as the token plugin's (forked handlers, no proxies).
        with requests.Session() as session:
            session.trust_env = False
            try:
                return session.post(
                    self._base + path,
                    json=body,
                    headers={SECRET_HEADER: self._secret, "Accept": "application/json"},
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.Timeout:
                raise ConsoleAuthRefusal(
                    f"console sessions did not answer within {self._timeout:g}s", unavailable=True
                ) from None
            except requests.RequestException as exc:
                raise ConsoleAuthRefusal(
                    f"console sessions unreachable ({type(exc).__name__})", unavailable=True
                ) from None

    def open(self, *, token: str, client: str, max_sessions: int) -> int:
        """The new session's id; ConsoleAuthRefusal (SessionLimitReached at the limit) when refused."""
        response = self._post("", {"token": token, "client": client, "max_sessions": max_sessions})
        if response.status_code == 409:
            raise SessionLimitReached(_error_text(response) or "too many sessions for this token")
        if response.status_code == 404:
            raise ConsoleAuthRefusal("consoleauth does not know the token (unknown or expired)")
        if response.status_code == 403:
            raise ConsoleAuthRefusal(
                "consoleauth rejected the shared secret (check CONSOLEAUTH_SECRET)", unavailable=True
            )
        if response.status_code != 201:
            raise ConsoleAuthRefusal(f"console sessions answered HTTP {response.status_code}", unavailable=True)
        try:
            session_id = response.json()["session_id"]
        except (ValueError, KeyError, TypeError):
            raise ConsoleAuthRefusal("console sessions answer is malformed", unavailable=True) from None
        if isinstance(session_id, bool) or not isinstance(session_id, int):
            raise ConsoleAuthRefusal("console sessions answer is malformed", unavailable=True)
        return session_id

    def check(self, session_id: int) -> str | None:
        """Why the session must close now, or None; ConsoleAuthRefusal when the control plane is away."""
        response = self._post(f"/{session_id}/check", {})
        if response.status_code != 200:
            raise ConsoleAuthRefusal(f"console sessions answered HTTP {response.status_code}", unavailable=True)
        try:
            body = response.json()
            close, reason = bool(body["close"]), body.get("reason")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConsoleAuthRefusal("console sessions answer is malformed", unavailable=True) from None
        if not close:
            return None
        return reason if isinstance(reason, str) and reason else "ended by the control plane"

    def close(self, session_id: int, reason: str) -> None:
        """Report the end; a failure is logged, and the control plane notices the silence later."""
        try:
            response = self._post(f"/{session_id}/close", {"reason": reason})
        except ConsoleAuthRefusal as exc:
            logger.warning("could not report the end of console session %s: %s", session_id, exc.reason)
            return
        if response.status_code != 200:
            logger.warning("could not report the end of console session %s: HTTP %s", session_id, response.status_code)


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return error if isinstance(error, str) else ""


class SessionWatcher(threading.Thread):
    """Checks an open session in until it must end, then calls `on_end(code, reason)` once."""

    def __init__(
        self,
        *,
        reporter: SessionReporter,
        session_id: int,
        expires_at: datetime,
        close_on_token_expiry: bool,
        check_interval: float,
        on_end: Callable[[int, str], None],
    ) -> None:
        super().__init__(name=f"console-session-{session_id}", daemon=True)
        self._reporter = reporter
        self._session_id = session_id
        self._expires_at = expires_at
        self._close_on_token_expiry = close_on_token_expiry
        self._check_interval = check_interval
        self._on_end = on_end
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def _seconds_to_expiry(self) -> float:
        return (self._expires_at - datetime.now(UTC)).total_seconds()

    def run(self) -> None:
        next_check = time.monotonic() + self._check_interval
        while True:
            wait = max(0.0, next_check - time.monotonic())
            if self._close_on_token_expiry:
                wait = min(wait, max(0.0, self._seconds_to_expiry()))
            if self._stopped.wait(wait):
                return
            if self._close_on_token_expiry and self._seconds_to_expiry() <= 0:
                self._on_end(CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED_REASON)
                return
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + self._check_interval
            try:
                reason = self._reporter.check(self._session_id)
            except ConsoleAuthRefusal as exc:
                # The control plane being away for a moment does not cut people off their screens.
                logger.warning("console session %s: check failed: %s", self._session_id, exc.reason)
                continue
            if reason is not None:
                self._on_end(CLOSE_ENDED, reason)
                return
