"""Console sessions: reported to the control plane, limited per token, ended on request or on expiry."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from consoleproxy_services import PORTAL_ORIGIN, start_proxy

from tests.wsclient import ConnectionClosed, HandshakeRefused, WebSocketClient

pytestmark = pytest.mark.integration

RFB_VERSION = b"RFB 003.008\n"


@pytest.fixture(scope="module")
def watched_proxy(tmp_path_factory, consoleauth):
    """A proxy that checks its sessions in twice a second and ends them when their token expires."""
    running = start_proxy(
        tmp_path_factory.mktemp("watched-proxy"),
        consoleauth,
        CONSOLEPROXY_SESSION_CHECK_INTERVAL="0.5",
        CONSOLEPROXY_CLOSE_ON_TOKEN_EXPIRY="1",
        CONSOLEPROXY_MAX_SESSIONS_PER_TOKEN="2",
    )
    yield running
    running.stop()


def connect(proxy, path: str) -> WebSocketClient:
    ws = WebSocketClient.connect("127.0.0.1", proxy.port, path, origin=PORTAL_ORIGIN)
    assert ws.recv_exactly(12) == RFB_VERSION
    return ws


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def closed_by_server(ws: WebSocketClient, timeout: float) -> tuple[ConnectionClosed, float]:
    started = time.monotonic()
    ws._sock.settimeout(timeout)
    with pytest.raises(ConnectionClosed) as excinfo:
        while True:
            ws.recv_message()
    return excinfo.value, time.monotonic() - started


def test_a_session_is_opened_with_the_token_in_the_body_and_closed_with_a_reason(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with connect(proxy, f"/?token={token}"):
        (session,) = consoleauth.sessions_of(token)
        assert session["client"] == "127.0.0.1"
        assert session["max_sessions"] == 1  # the default
        assert session["closed"] is None
    wait_for(lambda: session["closed"] is not None)
    assert session["closed"] == "closed by the client"
    proxy.wait_for_log("closed: closed by the client")
    assert token not in proxy.log()


def test_the_path_form_of_the_token_opens_the_console(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with connect(proxy, f"/token/{token}"):
        assert len(consoleauth.sessions_of(token)) == 1
    time.sleep(0.2)
    assert token not in proxy.log()


def test_a_second_session_with_one_token_is_refused_at_the_limit(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with connect(proxy, f"/?token={token}"):
        with pytest.raises(HandshakeRefused) as refused:
            WebSocketClient.connect("127.0.0.1", proxy.port, f"/?token={token}", origin=PORTAL_ORIGIN)
        assert refused.value.status == 429
        proxy.wait_for_log("refused console websocket: the token already has 1 open console session(s)")
    # Once the first is closed, the token may be used again.
    wait_for(lambda: consoleauth.sessions_of(token)[0]["closed"] is not None)
    with connect(proxy, f"/?token={token}"):
        pass


def test_a_session_the_control_plane_ends_is_closed_at_the_next_check(watched_proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    ws = connect(watched_proxy, f"/?token={token}")
    try:
        (session,) = consoleauth.sessions_of(token)
        session_id = next(key for key, value in consoleauth.sessions.items() if value is session)
        wait_for(lambda: consoleauth.checks.count(session_id) >= 2)  # it lives while the checks say so
        session["close_with"] = "ended by operator"
        closed, seconds = closed_by_server(ws, timeout=5)
    finally:
        ws.close()
    assert (closed.code, closed.reason) == (4002, "ended by operator")
    assert seconds < 2  # a check every 0.5 s
    wait_for(lambda: session["closed"] == "ended by operator")


def test_a_session_is_closed_when_its_token_expires(watched_proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port, expires_in=timedelta(seconds=2))
    ws = connect(watched_proxy, f"/?token={token}")
    try:
        closed, seconds = closed_by_server(ws, timeout=6)
    finally:
        ws.close()
    assert (closed.code, closed.reason) == (4001, "the console token expired")
    assert 0.5 < seconds < 3
    wait_for(lambda: consoleauth.sessions_of(token)[0]["closed"] == "the console token expired")


def test_without_the_expiry_setting_a_session_outlives_its_token(proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port, expires_in=timedelta(seconds=1))
    with connect(proxy, f"/?token={token}") as ws:
        time.sleep(1.5)
        ws.send_binary(RFB_VERSION)  # still relayed: QEMU answers with its security types
        (count,) = ws.recv_exactly(1)
        assert count >= 1


def test_the_session_limit_is_a_setting(watched_proxy, consoleauth, qemu_vnc):
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with connect(watched_proxy, f"/?token={token}"), connect(watched_proxy, f"/?token={token}"):
        with pytest.raises(HandshakeRefused) as refused:
            WebSocketClient.connect("127.0.0.1", watched_proxy.port, f"/?token={token}", origin=PORTAL_ORIGIN)
        assert refused.value.status == 429


def test_novnc_modules_may_be_imported_by_allowed_origins_only(proxy, novnc_dir):
    allowed = requests.get(f"{proxy.origin}/core/rfb.js", headers={"Origin": PORTAL_ORIGIN}, timeout=10)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == PORTAL_ORIGIN
    assert "javascript" in allowed.headers["Content-Type"]
    foreign = requests.get(f"{proxy.origin}/core/rfb.js", headers={"Origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 200
    assert "Access-Control-Allow-Origin" not in foreign.headers
