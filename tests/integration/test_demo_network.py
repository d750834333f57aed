"""The demo's networks on the machine (scripts/demo_network.py), with hosts in namespaces as ``DEMO_HOSTS=2``
makes them: started twice it is the same, a guest on ``public`` reaches nothing on the machine (the demo's
own guard on the machine's bridge) while the machine reaches it, and stopping leaves nothing behind.

Names and ranges are the test's own (prefix ``dnt``, bridge ``dnt-br``, 10.248.0.0/16), so a running demo
is never touched; the range is unreachable while the test runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from scripts.demo_network import DemoNetwork

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]

PREFIX, BRIDGE, GUEST_NS = "dnt", "dnt-br", "dnt-guest"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=20, check=check)


def in_guest(*args: str) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", GUEST_NS, *args, check=False)


def machine_state() -> str:
    return "\n".join(
        (
            sh("ip", "netns", "list").stdout,
            sh("ip", "-br", "link").stdout,
            sh("ip", "route").stdout,
            sh("nft", "list", "tables").stdout,
        )
    )


def leftovers() -> list[str]:
    state = machine_state()
    return [word for word in (f"{PREFIX}-", BRIDGE, "10.248.", f"{PREFIX}_public") if word in state]


def listen(address: str) -> tuple[socket.socket, int]:
    """A TCP server on ``address`` (of this machine) that answers every connection with ``ok``."""
    server = socket.create_server((address, 0))
    port = server.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"ok")

    threading.Thread(target=serve, daemon=True).start()
    return server, port


CONNECT = "import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); print(s.recv(2))"


def test_demo_network_hosts_guard_and_cleanup(tmp_path):
    assert not leftovers(), "an earlier run left something behind"
    network = DemoNetwork(
        tmp_path, ["h-1", "h-2"], public_cidr="10.248.0.0/24", underlay_cidr="10.248.1.0/24",
        guard_range="10.248.0.0/16", tenant_cidr="10.248.2.0/24", bridge=BRIDGE, prefix=PREFIX,
    )  # fmt: skip
    server = None
    try:
        first = network.start()
        again = network.start()
        assert first == again  # a second start (also after a run that died) makes the same
        assert first["h-2"]["COMPUTE_NETWORK_NAMESPACE"] == f"{PREFIX}-h2"
        assert first["h-2"]["COMPUTE_TUNNEL_ADDRESS"] == "10.248.1.2"
        assert first["h-1"]["COMPUTE_PHYSICAL_NETWORKS"] == f"public:{BRIDGE}"
        routes = sh("ip", "route").stdout
        assert "unreachable 10.248.0.0/16" in routes and f"10.248.0.0/24 dev {BRIDGE}" in routes
        # The hosts' underlay carries their tunnels: host 1 reaches host 2's tunnel address.
        underlay = sh("ip", "netns", "exec", f"{PREFIX}-h1", "ping", "-c1", "-W2", "10.248.1.2", check=False)
        assert underlay.returncode == 0

        # A guest on public, on host 2: its NIC on host 2's bridge, which reaches the machine's by a veth.
        sh("ip", "netns", "add", GUEST_NS)
        sh("ip", "-n", f"{PREFIX}-h2", "link", "add", "gst0", "type", "veth", "peer", "name", "eth0", "netns", GUEST_NS)
        sh("ip", "-n", f"{PREFIX}-h2", "link", "set", "gst0", "master", BRIDGE, "up")
        sh("ip", "-n", GUEST_NS, "addr", "add", "10.248.0.50/24", "dev", "eth0")
        sh("ip", "-n", GUEST_NS, "link", "set", "eth0", "up")
        server, port = listen("0.0.0.0")  # noqa: S104 - every address of the machine, its bridge's too

        # The machine reaches the guest (the replies pass the guard) ...
        assert sh("ping", "-c1", "-W2", "10.248.0.50", check=False).returncode == 0
        # ... the guest reaches nothing on the machine: not its bridge address, not a service on it.
        assert in_guest("ping", "-c1", "-W1", "10.248.0.1").returncode != 0
        assert in_guest(sys.executable, "-c", CONNECT, "10.248.0.1", str(port)).returncode != 0
        # It is the guard that stops it: without its input chain the same connection gets through.
        sh("nft", "flush", "chain", "inet", f"{PREFIX}_public", "input")
        assert "b'ok'" in in_guest(sys.executable, "-c", CONNECT, "10.248.0.1", str(port)).stdout
    finally:
        if server is not None:
            server.close()
        sh("ip", "netns", "del", GUEST_NS, check=False)
        network.stop()
    assert not leftovers()
