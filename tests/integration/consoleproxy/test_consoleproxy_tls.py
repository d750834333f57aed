"""The proxy's optional TLS listener (CONSOLEPROXY_CERT / CONSOLEPROXY_KEY)."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest
from consoleproxy_services import start_proxy

from tests.wsclient import HandshakeRefused, WebSocketClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory, consoleauth):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed: cannot make a test certificate")
    directory = tmp_path_factory.mktemp("consoleproxy-tls")
    cert, key = directory / "proxy.crt", directory / "proxy.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    running = start_proxy(directory, consoleauth, CONSOLEPROXY_CERT=str(cert), CONSOLEPROXY_KEY=str(key))
    yield running, ssl.create_default_context(cafile=str(cert))
    running.stop()


def test_wss_reaches_the_vm_screen(tls_proxy, consoleauth, qemu_vnc):
    proxy, client_tls = tls_proxy
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with WebSocketClient.connect(
        "127.0.0.1", proxy.port, f"/?token={token}", origin=proxy.origin, tls=client_tls
    ) as ws:
        assert ws.recv_exactly(12) == b"RFB 003.008\n"
    assert proxy.origin.startswith("https://")
    assert token not in proxy.log()


def test_plain_websockets_are_refused_on_the_tls_listener(tls_proxy, consoleauth, qemu_vnc):
    proxy, _ = tls_proxy
    token = consoleauth.issue(qemu_vnc.host, qemu_vnc.port)
    with pytest.raises((HandshakeRefused, ConnectionError)):
        WebSocketClient.connect("127.0.0.1", proxy.port, f"/?token={token}", origin=proxy.origin)
    assert token not in consoleauth.tokens_asked()
    proxy.wait_for_log("non-SSL connection received but disallowed")
