"""The relay between a guest and the control plane, on loopback: the metadata proxy (a real process) hands
a request to the host's metadata agent, which signs it as the host for a stand-in control plane that checks
the signature; the proxy and the agent each fail cleanly when what is behind them does not answer."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from compute_tasks import metadata_content, signing
from compute_tasks.metadata_agent import MetadataAgent

pytestmark = pytest.mark.integration

KEY = signing.new_private_key()
NETWORK = str(uuid.uuid4())


class ControlPlane(BaseHTTPRequestHandler):
    """Answers with what it was asked, if the host's signature holds."""

    def do_GET(self):  # noqa: N802
        body = metadata_content.request_body(
            method="GET",
            path=self.path.removeprefix("/internal/metadata"),
            network_id=self.headers[metadata_content.NETWORK_HEADER],
            address=self.headers[metadata_content.ADDRESS_HEADER],
        )
        auth = json.loads(base64.b64decode(self.headers[metadata_content.AUTH_HEADER]))
        try:
            signing.verify(
                metadata_content.SIGNED_TASK, signing.CONTROL_PLANE, body, auth, {"hv1": KEY.public_key()}.get
            )
        except signing.Refused:
            self.send_response(403)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def relay(tmp_path):
    control = ThreadingHTTPServer(("127.0.0.1", 0), ControlPlane)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{control.server_address[1]}/internal/metadata"
    agent = MetadataAgent(tmp_path / "metadata.sock", url, lambda: signing.Signer("hv1", KEY), timeout=2)
    agent.start()
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "compute_tasks.metadata_proxy", "--network", NETWORK, "--socket",
         str(agent.socket_path), "--pid-file", str(tmp_path / "proxy.pid"), "--listen", "127.0.0.1",
         "--port", str(port), "--user", "root", "--group", "root"],
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not (tmp_path / "proxy.pid").exists():
        assert time.monotonic() < deadline and proxy.poll() is None, "the proxy did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", agent, control
    finally:
        proxy.terminate()
        proxy.wait(5)
        agent.stop()
        control.shutdown()
        control.server_close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_request_reaches_the_control_plane_signed_as_the_host_with_the_guests_address(relay):
    base, _agent, _control = relay
    status, body = get(base + "/openstack/latest/meta_data.json?ignored=1")
    assert status == 200, body
    assert json.loads(body) == {
        "method": "GET", "path": "/openstack/latest/meta_data.json", "network_id": NETWORK, "address": "127.0.0.1",
    }  # fmt: skip


def test_the_control_plane_gone_is_504_and_the_agent_gone_is_502(relay):
    base, agent, control = relay
    control.shutdown()
    control.server_close()
    assert get(base + "/latest/meta-data/instance-id")[0] == 504
    agent.stop()
    assert get(base + "/latest/meta-data/instance-id")[0] == 502


def test_the_agent_takes_only_well_formed_requests(relay):
    _base, agent, _control = relay
    from compute_tasks.metadata_proxy import UnixHTTPConnection

    connection = UnixHTTPConnection(str(agent.socket_path), 5)
    connection.request("GET", "/x", headers={metadata_content.NETWORK_HEADER: "not-a-uuid",
                                            metadata_content.ADDRESS_HEADER: "10.0.0.1"})  # fmt: skip
    response = connection.getresponse()
    assert (response.status, response.read()) == (400, b"bad request\n")
    connection.close()
