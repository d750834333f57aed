"""The console proxy process against a real QEMU VNC server and a stand-in consoleauth view."""

from __future__ import annotations

import socket
import struct
import time
from datetime import timedelta

import pytest
import requests
from consoleproxy_services import PORTAL_ORIGIN, QEMU_NAME

from tests.wsclient import ConnectionClosed, HandshakeRefused, WebSocketClient

pytestmark = pytest.mark.integration

RFB_VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1


def open_console(proxy, path, **kwargs) -> WebSocketClient:
    return WebSocketClient.connect("127.0.0.1", proxy.port, path, **kwargs)


def rfb_handshake(ws: WebSocketClient) -> tuple[int, int, bytes]:
    """Speak RFB 3.8 up to ServerInit; return the framebuffer size and the desktop name."""
    assert ws.recv_exactly(12) == RFB_VERSION
    ws.send_binary(RFB_VERSION)
    (count,) = ws.recv_exactly(1)
    security_types = ws.recv_exactly(count)
    assert SECURITY_NONE in security_types
    ws.send_binary(bytes([SECURITY_NONE]))
    assert ws.recv_exactly(4) == b"\x00\x00\x00\x00"  # SecurityResult: OK
    ws.send_binary(b"\x01")  # ClientInit: shared
    width, height = struct.unpack(">HH", ws.recv_exactly(4))
    ws.recv_exactly(16)  # pixel format
    (name_length,) = struct.unpack(">I", ws.recv_exactly(4))
    return width, height, ws.recv_exactly(name_length)


def assert_refused(proxy, path, status=403, **kwargs) -> None:
    with pytest.raises(HandshakeRefused) as excinfo:
        open_console(proxy, path, **kwargs)
    assert excinfo.value.status == status


def assert_not_logged(proxy, *secrets: str) -> None:
    time.sleep(0.2)  # the handler processes log after answering
    log = proxy.log()
    for secret in secrets:
        assert secret not in log


def test_a_valid_token_and_origin_reach_the_vm_screen(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with open_console(proxy, f"/?token={token}", origin=PORTAL_ORIGIN) as ws:
        width, height, name = rfb_handshake(ws)
    assert name == f"QEMU ({QEMU_NAME})".encode()
    assert width > 0 and height > 0
    assert consoleauth.calls[-1] == (token, consoleauth.secret)
    instance_uuid = consoleauth.answers[token]["instance_uuid"]
    proxy.wait_for_log(f"console open: VNC {qemu_vnc.host}:{qemu_vnc.port} of instance {instance_uuid}")
    assert_not_logged(proxy, token)


def test_the_token_may_come_from_a_cookie(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with open_console(proxy, "/", origin=proxy.origin, cookie=f"sessionid=x; token={token}") as ws:
        assert rfb_handshake(ws)[2].startswith(b"QEMU")
    assert_not_logged(proxy, token)


def test_equivalent_spellings_of_an_allowed_origin_pass(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with open_console(proxy, f"/?token={token}", origin="HTTP://127.0.0.1:8000/") as ws:
        assert ws.recv_exactly(12) == RFB_VERSION


def test_an_unknown_token_is_refused_after_asking_consoleauth(proxy, consoleauth):
    token = "unknown-" + "x" * 24
    assert_refused(proxy, f"/?token={token}", origin=PORTAL_ORIGIN)
    assert consoleauth.calls[-1] == (token, consoleauth.secret)
    proxy.wait_for_log("refused console websocket: consoleauth does not know the token")
    assert_not_logged(proxy, token)


@pytest.mark.parametrize(
    ("origin", "reason"),
    [
        ("http://evil.example.com", "Origin http://evil.example.com is not in CONSOLE_ALLOWED_ORIGINS"),
        ("http://127.0.0.1:8001", "Origin http://127.0.0.1:8001 is not in CONSOLE_ALLOWED_ORIGINS"),
        ("https://127.0.0.1:8000", "Origin https://127.0.0.1:8000 is not in CONSOLE_ALLOWED_ORIGINS"),
        ("null", "Origin 'null' refused: opaque origin \"null\""),
    ],
)
def test_a_foreign_origin_is_refused_before_any_lookup(proxy, consoleauth, qemu_vnc, origin, reason):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    assert_refused(proxy, f"/?token={token}", origin=origin)
    proxy.wait_for_log(f"refused console websocket: {reason}")
    assert token not in consoleauth.tokens_asked()
    assert_not_logged(proxy, token)


def test_a_client_that_is_not_a_browser_needs_only_its_token(proxy, consoleauth, qemu_vnc):
    """Without an Origin header (no browser omits it) the token decides, as with Nova's proxy: a valid one
    reaches the screen, a bad one gets a bare 403 and the connection closed, with nothing to read."""
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with open_console(proxy, f"/?token={token}", origin=None) as ws:
        assert rfb_handshake(ws)[2].startswith(b"QEMU")
    request = (
        "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Cookie: token=unknown-{'y' * 24}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403") and body == b""
    proxy.wait_for_log("refused console websocket: consoleauth does not know the token")


def test_the_host_header_does_not_make_an_origin_acceptable(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    request = (
        f"GET /?token={token} HTTP/1.1\r\nHost: evil.example.com\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example.com\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(request.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 403")
    assert token not in consoleauth.tokens_asked()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/", "no token in the URL query or in a cookie"),
        ("/?token=", "empty token in the URL query"),
        ("/?token=a/../../b", "malformed token in the URL query"),
    ],
)
def test_a_missing_or_malformed_token_is_refused_without_a_lookup(proxy, consoleauth, path, reason):
    asked = len(consoleauth.calls)
    assert_refused(proxy, path, origin=PORTAL_ORIGIN)
    proxy.wait_for_log(f"refused console websocket: {reason}")
    assert len(consoleauth.calls) == asked


def test_an_expired_token_is_refused(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port, expires_in=timedelta(seconds=-1))
    assert_refused(proxy, f"/?token={token}", origin=PORTAL_ORIGIN)
    proxy.wait_for_log("refused console websocket: token expired at")
    assert_not_logged(proxy, token)


def test_a_failing_consoleauth_refuses_with_503(proxy, consoleauth):
    token = consoleauth.answer_with(("status", 500))
    assert_refused(proxy, f"/?token={token}", status=503, origin=PORTAL_ORIGIN)
    proxy.wait_for_log("refused console websocket: consoleauth answered HTTP 500")
    assert_not_logged(proxy, token)


def test_a_slow_consoleauth_is_given_up_on_after_the_timeout(proxy, consoleauth):
    token = consoleauth.answer_with(("sleep", 3))
    started = time.monotonic()
    assert_refused(proxy, f"/?token={token}", status=503, origin=PORTAL_ORIGIN)
    assert time.monotonic() - started < 2.5  # CONSOLEAUTH_TIMEOUT=1 in the fixture
    proxy.wait_for_log("refused console websocket: consoleauth did not answer within 1s")
    assert_not_logged(proxy, token)


def test_a_wrong_shared_secret_is_reported_and_refused(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    expected_secret = consoleauth.secret
    consoleauth.secret = "rotated-on-the-control-plane"
    try:
        assert_refused(proxy, f"/?token={token}", status=503, origin=PORTAL_ORIGIN)
    finally:
        consoleauth.secret = expected_secret
    proxy.wait_for_log("consoleauth rejected the shared secret (check CONSOLEAUTH_SECRET)")
    assert_not_logged(proxy, token, expected_secret)


def test_an_unreachable_vnc_server_closes_the_websocket_with_1011(proxy, consoleauth):
    closed_port = _closed_port()
    token = consoleauth.issue("127.0.0.1", closed_port)
    with (
        open_console(proxy, f"/?token={token}", origin=PORTAL_ORIGIN) as ws,
        pytest.raises(ConnectionClosed) as excinfo,
    ):
        ws.recv_message()
    assert excinfo.value.code == 1011
    proxy.wait_for_log(f"cannot reach VNC 127.0.0.1:{closed_port}")
    assert_not_logged(proxy, token)


def test_novnc_files_are_served_without_directory_listings(proxy, novnc_dir):
    page = requests.get(f"{proxy.origin}/vnc_lite.html", timeout=10)
    assert page.status_code == 200
    assert "noVNC" in page.text
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert requests.get(f"{proxy.origin}/core/rfb.js", timeout=10).status_code == 200
    assert requests.get(f"{proxy.origin}/", timeout=10).status_code == 404
    assert requests.get(f"{proxy.origin}/core/", timeout=10).status_code == 404
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /../../../../etc/passwd HTTP/1.0\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404") and b"root:" not in answer


def test_console_page_urls_do_not_leak_the_token_into_the_log(proxy, consoleauth, qemu_vnc, novnc_dir):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    page = requests.get(f"{proxy.origin}/vnc_lite.html?path=%3Ftoken%3D{token}", timeout=10)
    assert page.status_code == 200
    bad_request = b"GET /?token=" + token.encode() + b" extra HTTP/1.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(bad_request)
        assert sock.recv(4096).startswith(b"HTTP/1.1 400")
    proxy.wait_for_log("code 400")
    assert_not_logged(proxy, token)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
