"""The websockify server: noVNC's static files plus a checked WebSocket-to-VNC relay.

websockify forks one process per accepted connection and runs the request handler there, so every
check below happens in the handler, for each websocket upgrade, before any byte reaches a VNC server:
the Origin header against the allowlist, then the token against the control plane.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from http import HTTPStatus
from typing import NoReturn

from websockify.websocketproxy import ProxyRequestHandler, WebSocketProxy

from consoleproxy.config import ConsoleProxyConfig
from consoleproxy.redaction import redact
from consoleproxy.sessions import SessionLimitReached, SessionReporter, SessionWatcher
from consoleproxy.token_plugin import ConsoleAuthRefusal, ConsoleAuthTokenPlugin, ConsoleTarget
from consoleproxy.tokens import TokenError, token_from_request

# websockify makes an empty certificate path absolute (the working directory, which exists) and would
# then announce TLS support; a path below /dev/null can never exist.
_NO_CERTIFICATE = "/dev/null/no-certificate"
_WEBSOCKET_VERSION = "13"
_MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 are the code


class ConsoleProxyRequestHandler(ProxyRequestHandler):
    """Serves noVNC's files; upgrades to a VNC relay only for an allowed Origin and a valid token."""

    server: ConsoleProxyServer
    console_target: ConsoleTarget | None = None
    console_session_id: int | None = None
    # Why the relay ended: set by whoever ended it, reported to the control plane when the session closes.
    _close_reason: str = "closed"
    _ending: tuple[int, str] | None = None

    def log_message(self, format: str, *args: object) -> None:
        self._log(logging.INFO, format % args)

    def _log(self, level: int, message: str) -> None:
        message = redact(message)
        client = self.client_address[0]
        # websockify names the client itself in some of its messages
        self.logger.log(level, "%s", message if message.startswith(f"{client}:") else f"{client}: {message}")

    def end_headers(self) -> None:
        # vnc_lite.html may be opened with the token in its URL; keep that URL out of Referer headers.
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        # The portal's console page (another origin) imports noVNC's modules from here: module scripts
        # are fetched with CORS, so allowed origins may read them; everyone else gets no CORS header.
        headers = getattr(self, "headers", None)  # absent when the request line itself was malformed
        origin = headers.get("Origin") if headers is not None else None
        if origin and self.server.allowed_origins.allows(origin):
            self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Vary", "Origin")
        super().end_headers()

    def validate_connection(self) -> None:
        """websockify's hook before the handshake is answered: refuse, or choose the VNC target."""
        if self.headers.get("Sec-WebSocket-Version") != _WEBSOCKET_VERSION:
            self._refuse(HTTPStatus.BAD_REQUEST, "websocket version other than 13")
        reason = self.server.allowed_origins.refusal_reason(self.headers.get_all("Origin") or [])
        if reason is not None:
            self._refuse(HTTPStatus.FORBIDDEN, reason)
        try:
            token = token_from_request(self.path, self.headers.get_all("Cookie") or [])
        except TokenError as exc:
            self._refuse(HTTPStatus.FORBIDDEN, str(exc))
        try:
            target = self.server.token_plugin.resolve(token)
        except ConsoleAuthRefusal as exc:
            status = HTTPStatus.SERVICE_UNAVAILABLE if exc.unavailable else HTTPStatus.FORBIDDEN
            self._refuse(status, exc.reason)
        self.console_target = target
        try:
            self.console_session_id = self.server.session_reporter.open(
                token=token, client=self.client_address[0], max_sessions=self.server.max_sessions_per_token
            )
        except SessionLimitReached as exc:
            self._refuse(HTTPStatus.TOO_MANY_REQUESTS, exc.reason)
        except ConsoleAuthRefusal as exc:
            status = HTTPStatus.SERVICE_UNAVAILABLE if exc.unavailable else HTTPStatus.FORBIDDEN
            self._refuse(status, exc.reason)
        # Each connection has its own forked process, so the server object is this connection's alone;
        # websockify's relay loop names the target from it in its verbose messages.
        self.server.target_host = target.host
        self.server.target_port = target.port

    def _refuse(self, status: HTTPStatus, reason: str) -> NoReturn:
        self._log(logging.WARNING, f"refused console websocket: {reason}")
        # No body: a websocket client reads nothing after the status but the connection closing.
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        # An empty message: the reason is logged above, and websockify logs a non-empty one again.
        raise self.server.EClose("")

    def handle_upgrade(self) -> None:
        """The upgrade and the whole relay; a session opened for it is reported closed however it ends."""
        try:
            super().handle_upgrade()
        finally:
            if self.console_session_id is not None:
                self.server.session_reporter.close(self.console_session_id, self._close_reason)
                self.log_message("console session %s closed: %s", self.console_session_id, self._close_reason)
                self.console_session_id = None

    def new_websocket_client(self) -> None:
        """Relay between the accepted websocket and the VNC server chosen in validate_connection."""
        target = self.console_target
        if target is None:
            raise self.CClose(1011, "No console target")
        where = f"VNC {target.host}:{target.port} of instance {target.instance_uuid}"
        try:
            vnc = socket.create_connection((target.host, target.port), timeout=self.server.connect_timeout)
        except OSError as exc:
            self._log(logging.WARNING, f"cannot reach {where}: {exc}")
            self._close_reason = "the console proxy could not reach the VNC server"
            raise self.CClose(1011, "Failed to connect to the console") from None
        self.log_message("console open: %s", where)
        watcher = None
        try:
            vnc.settimeout(None)
            vnc.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.console_session_id is not None:
                watcher = SessionWatcher(
                    reporter=self.server.session_reporter,
                    session_id=self.console_session_id,
                    expires_at=target.expires_at,
                    close_on_token_expiry=self.server.close_on_token_expiry,
                    check_interval=self.server.session_check_interval,
                    on_end=lambda code, reason: self._end_relay(vnc, code, reason),
                )
                watcher.start()
            self._relay(vnc)
        finally:
            if watcher is not None:
                watcher.stop()
            self.log_message("console closed: %s", where)
            with contextlib.suppress(OSError):
                vnc.shutdown(socket.SHUT_RDWR)
            vnc.close()

    def _relay(self, vnc: socket.socket) -> None:
        try:
            self.do_proxy(vnc)
        except self.CClose as exc:
            if self._ending is not None:
                raise self.CClose(*self._ending) from None
            target_closed = len(exc.args) > 1 and exc.args[1] == "Target closed"
            self._close_reason = "the VNC server closed the connection" if target_closed else "closed by the client"
            raise
        except Exception:
            if self._ending is not None:
                raise self.CClose(*self._ending) from None
            self._close_reason = "the connection failed"
            raise

    def _end_relay(self, vnc: socket.socket, code: int, reason: str) -> None:
        """Called from the session watcher: close the VNC side, and the relay loop ends with our reason."""
        self._close_reason = reason
        shown = reason.encode()[:_MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        self._ending = (code, shown)
        self.log_message("ending console session %s: %s", self.console_session_id, reason)
        with contextlib.suppress(OSError):
            vnc.shutdown(socket.SHUT_RDWR)


class ConsoleProxyServer(WebSocketProxy):
    """websockify's forking server, configured from ConsoleProxyConfig."""

    def __init__(self, config: ConsoleProxyConfig, *, token_plugin: ConsoleAuthTokenPlugin | None = None) -> None:
        self.allowed_origins = config.allowed_origins
        self.connect_timeout = config.connect_timeout
        self.consoleauth_url = config.consoleauth_url
        self.session_reporter = SessionReporter(
            consoleauth_url=config.consoleauth_url,
            secret=config.consoleauth_secret,
            timeout=config.consoleauth_timeout,
        )
        self.session_check_interval = config.session_check_interval
        self.close_on_token_expiry = config.close_on_token_expiry
        self.max_sessions_per_token = config.max_sessions_per_token
        if token_plugin is None:
            token_plugin = ConsoleAuthTokenPlugin(
                url=config.consoleauth_url,
                secret=config.consoleauth_secret,
                timeout=config.consoleauth_timeout,
            )
        if config.tls_enabled:
            tls_options = {
                "cert": config.tls_cert,
                "key": config.tls_key,
                "ssl_only": True,
                # websockify replaces the context's options wholesale: keep Python's secure defaults.
                "ssl_options": ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).options,
            }
        else:
            tls_options = {"cert": _NO_CERTIFICATE, "ssl_only": False}
        super().__init__(
            RequestHandlerClass=ConsoleProxyRequestHandler,
            listen_host=config.listen_host,
            listen_port=config.listen_port,
            web=config.novnc_dir,
            file_only=True,
            token_plugin=token_plugin,
            **tls_options,
        )
        self.scheme = "https" if config.tls_enabled else "http"

    @staticmethod
    def get_logger() -> logging.Logger:
        # websockify's own logger is named "websocket.type"; the handlers log through the server's.
        return logging.getLogger("consoleproxy.server")

    def started(self) -> None:
        super().started()
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        self.msg("console proxy at %s://%s:%s/vnc_lite.html", self.scheme, host, self.listen_port)
        self.msg("consoleauth view: %s (the token is appended)", self.consoleauth_url)
        self.msg("allowed origins: %s", self.allowed_origins)
        self.msg(
            "console sessions: checked every %gs, at most %d per token, %s when the token expires",
            self.session_check_interval,
            self.max_sessions_per_token,
            "closed" if self.close_on_token_expiry else "kept open",
        )
