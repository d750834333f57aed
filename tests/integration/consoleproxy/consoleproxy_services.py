"""The processes around the console proxy in tests: a stand-in consoleauth view, QEMU, the proxy."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
CONSOLEAUTH_PATH = "/internal/consoleauth/"
SECRET_HEADER = "X-Console-Auth-Secret"
PORTAL_ORIGIN = "http://127.0.0.1:8000"
QEMU_NAME = "consoleproxy-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_token() -> str:
    return secrets.token_urlsafe(32)


# --- consoleauth stand-in ---------------------------------------------------------------------------


@dataclass
class ConsoleAuthStub:
    """Answers GET /internal/consoleauth/<token> as the portal's view does, and records each call."""

    secret: str
    answers: dict[str, object] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0
    # Console sessions the proxy reported: id -> {"token", "client", "max_sessions", "closed", "close_with"}
    sessions: dict[int, dict] = field(default_factory=dict)
    checks: list[int] = field(default_factory=list)

    def sessions_of(self, token: str) -> list[dict]:
        return [session for session in self.sessions.values() if session["token"] == token]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CONSOLEAUTH_PATH}"

    def issue(self, host: str, port: int, *, expires_in: timedelta = timedelta(minutes=10)) -> str:
        token = new_token()
        self.answers[token] = {
            "instance_uuid": str(uuid.uuid4()),
            "host": host,
            "port": port,
            "expires_at": (datetime.now(UTC) + expires_in).isoformat(),
        }
        return token

    def answer_with(self, behaviour: object) -> str:
        """A token whose lookup answers with `behaviour`: ("status", code) or ("sleep", seconds)."""
        token = new_token()
        self.answers[token] = behaviour
        return token

    def tokens_asked(self) -> list[str]:
        return [token for token, _ in self.calls]


def _stub_handler(stub: ConsoleAuthStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.startswith(CONSOLEAUTH_PATH):
                self._json(404, {"error": "not found"})
                return
            token = self.path[len(CONSOLEAUTH_PATH) :]
            secret = self.headers.get(SECRET_HEADER)
            stub.calls.append((token, secret))
            if secret != stub.secret:
                self._json(403, {"error": "bad secret"})
                return
            answer = stub.answers.get(token)
            if isinstance(answer, dict):
                self._json(200, answer)
            elif isinstance(answer, tuple) and answer[0] == "status":
                self._json(answer[1], {"error": "broken"})
            elif isinstance(answer, tuple) and answer[0] == "sleep":
                time.sleep(answer[1])
                self._json(404, {"error": "too late"})
            else:
                self._json(404, {"error": "unknown or expired token"})

        def do_POST(self) -> None:
            """The console-session endpoints: open, check, close."""
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.headers.get(SECRET_HEADER) != stub.secret:
                self._json(403, {"error": "bad secret"})
                return
            path = self.path[len(CONSOLEAUTH_PATH) :]
            if path == "sessions":
                token = body["token"]
                if not isinstance(stub.answers.get(token), dict):
                    self._json(404, {"error": "unknown or expired token"})
                    return
                open_sessions = [s for s in stub.sessions_of(token) if s["closed"] is None]
                if len(open_sessions) >= body["max_sessions"]:
                    self._json(409, {"error": f"the token already has {len(open_sessions)} open console session(s)"})
                    return
                session_id = len(stub.sessions) + 1
                stub.sessions[session_id] = {**body, "closed": None, "close_with": None}
                self._json(201, {"session_id": session_id, "instance_uuid": stub.answers[token]["instance_uuid"]})
                return
            parts = path.split("/")
            session = stub.sessions.get(int(parts[1])) if len(parts) == 3 and parts[1].isdigit() else None
            if session is None:
                self._json(404, {"error": "unknown session"})
            elif parts[2] == "check":
                stub.checks.append(int(parts[1]))
                reason = session["close_with"]
                self._json(200, {"close": reason is not None, "reason": reason})
            elif parts[2] == "close":
                session["closed"] = body["reason"]
                self._json(200, {"closed_at": datetime.now(UTC).isoformat()})
            else:
                self._json(404, {"error": "not found"})

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@dataclass(frozen=True)
class ConsoleAuthEndpoint:
    """The portal's own consoleauth view (a live server), for tests that need its real answers."""

    url: str
    secret: str


# --- QEMU ------------------------------------------------------------------------------------------


@contextmanager
def running_consoleauth() -> Iterator[ConsoleAuthStub]:
    """A real HTTP server on 127.0.0.1 in a thread, answering the consoleauth contract."""
    stub = ConsoleAuthStub(secret=secrets.token_urlsafe(24))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _stub_handler(stub))
    server.daemon_threads = True
    stub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class VncServer:
    host: str
    port: int


def _wait_for_rfb(port: int, process: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.settimeout(2)
                if sock.recv(12).startswith(b"RFB "):
                    return True
        except OSError:
            time.sleep(0.1)
    return False


# --- the proxy -------------------------------------------------------------------------------------


@dataclass
class ProxyProcess:
    process: subprocess.Popen
    port: int
    log_path: Path
    scheme: str = "http"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the proxy log:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running_qemu(qemu: str, log_path: Path) -> Iterator[VncServer]:
    """A diskless QEMU sitting in SeaBIOS, its screen on a VNC port of 127.0.0.1."""
    for _ in range(5):
        display = free_port() % 1000 + 100  # VNC display N listens on 5900 + N
        port = 5900 + display
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [qemu, "-display", "none", "-vnc", f"127.0.0.1:{display}", "-machine", "pc", "-m", "64",
                 "-nodefaults", "-vga", "std", "-name", QEMU_NAME],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if _wait_for_rfb(port, process, time.monotonic() + 30):
            break
        process.kill()
        process.wait()
    else:
        raise AssertionError(f"QEMU did not open a VNC port:\n{log_path.read_text(errors='replace')}")
    try:
        yield VncServer("127.0.0.1", port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_proxy(log_dir: Path, consoleauth: ConsoleAuthStub | ConsoleAuthEndpoint, **extra_env: str) -> ProxyProcess:
    port = free_port()
    scheme = "https" if "CONSOLEPROXY_CERT" in extra_env else "http"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("CONSOLE")},
        "CONSOLEPROXY_LISTEN": f"127.0.0.1:{port}",
        "CONSOLEAUTH_URL": consoleauth.url,
        "CONSOLEAUTH_SECRET": consoleauth.secret,
        "CONSOLE_ALLOWED_ORIGINS": f"{PORTAL_ORIGIN},{scheme}://127.0.0.1:{port}",
        "CONSOLEAUTH_TIMEOUT": "1",
        "CONSOLEPROXY_CONNECT_TIMEOUT": "2",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    if not os.path.isdir(env.get("NOVNC_DIR", "/usr/share/novnc")):
        env["NOVNC_DIR"] = str(log_dir)  # the websocket tests need no static files
    log_path = log_dir / f"consoleproxy-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "consoleproxy"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proxy = ProxyProcess(process=process, port=port, log_path=log_path, scheme=scheme)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the proxy exited with {process.returncode}:\n{proxy.log()}")
        if "console proxy at" in proxy.log():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return proxy
            except OSError:
                pass
        time.sleep(0.05)
    proxy.stop()
    raise AssertionError(f"the proxy did not start listening:\n{proxy.log()}")
