"""The network between simulated hypervisor hosts, for tests whose real guests sit on real networks.

Each host's data plane lives in a network namespace of its own (``COMPUTE_NETWORK_NAMESPACE``), with two
legs on bridges in an "underlay" namespace: ``ul0`` carries the VXLAN tunnels (its address is the host's
tunnel address) and ``pub0`` the flat network ``public``, on a bridge ``brpub`` in the host's namespace
(as an operator's bridge would be). An "outside" namespace on the same public segment stands for the
machines beyond. Everything is in ``RANGE``, made unreachable in the root namespace first: an address of
it that no namespace owns fails at once instead of leaving the machine.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass, field

RANGE = "10.252.0.0/16"
PUBLIC_CIDR = "10.252.100.0/24"
OUTSIDE_ADDRESS = "10.252.100.1"
UNDERLAY = "ntest-ul"
OUTSIDE = "ntest-out"

HTTP_SERVER = """
import http.server, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[3].replace("{client}", self.client_address[0]).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check)


def in_ns(namespace: str, *args: str, check: bool = False, timeout: float = 20) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", namespace, *args, check=check, timeout=timeout)


@dataclass
class NetworkHosts:
    names: list[str]
    namespaces: dict[str, str] = field(default_factory=dict)
    tunnel_addresses: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)

    def start(self, *, guest_ranges: tuple[str, ...] = ()) -> None:
        self.stop_leftovers()
        for cidr in (RANGE, *guest_ranges):
            if sh("ip", "route", "add", "unreachable", cidr, check=False).returncode == 0:
                self.routes.append(cidr)
        sh("ip", "netns", "add", UNDERLAY)
        for bridge in ("ul0", "pub0"):
            sh("ip", "-n", UNDERLAY, "link", "add", bridge, "type", "bridge")
            sh("ip", "-n", UNDERLAY, "link", "set", bridge, "up")
        for index, name in enumerate(self.names, start=1):
            namespace, address = f"ntest-h{index}", f"10.252.0.{index}"
            sh("ip", "netns", "add", namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            self._leg(namespace, f"ul-h{index}", "ul0", "ul0")
            sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "ul0")
            self._leg(namespace, f"pub-h{index}", "pub0", "pub0")
            sh("ip", "-n", namespace, "link", "add", "brpub", "type", "bridge")
            sh("ip", "-n", namespace, "link", "set", "pub0", "master", "brpub")
            sh("ip", "-n", namespace, "link", "set", "brpub", "up")
            self.namespaces[name], self.tunnel_addresses[name] = namespace, address
        sh("ip", "netns", "add", OUTSIDE)
        sh("ip", "-n", OUTSIDE, "link", "set", "lo", "up")
        self._leg(OUTSIDE, "pub-out", "pub0", "eth0")
        sh("ip", "-n", OUTSIDE, "addr", "add", f"{OUTSIDE_ADDRESS}/24", "dev", "eth0")

    def _leg(self, namespace: str, outer: str, bridge: str, inner: str) -> None:
        """A veth from the underlay's ``bridge`` into ``namespace``, named ``inner`` there."""
        sh("ip", "-n", UNDERLAY, "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace)
        sh("ip", "-n", UNDERLAY, "link", "set", outer, "master", bridge, "up")
        sh("ip", "-n", namespace, "link", "set", inner, "up")

    def host_env(self, name: str) -> dict[str, str]:
        """What the compute worker of host ``name`` needs to program its network here."""
        return {
            "COMPUTE_DATAPLANE": "linux",
            "COMPUTE_NETWORK_NAMESPACE": self.namespaces[name],
            "COMPUTE_TUNNEL_ADDRESS": self.tunnel_addresses[name],
            "COMPUTE_PHYSICAL_NETWORKS": "public:brpub",
            "COMPUTE_NETWORK_CHECK_INTERVAL": "2",
        }

    def public_leg_of(self, mac: str) -> str | None:
        """The underlay's port (``pub-h1``, ``pub-out``, ...) on which the public segment last saw ``mac``:
        where the machines beyond send its frames."""
        listing = sh("bridge", "-n", UNDERLAY, "fdb", "show", "br", "pub0").stdout
        for line in listing.splitlines():
            words = line.split()
            if words and words[0] == mac.lower() and "dev" in words:
                return words[words.index("dev") + 1]
        return None

    def serve(self, namespace: str, address: str, port: int, text: str) -> None:
        """An HTTP server in ``namespace`` answering every GET with ``text`` ("{client}" in it: the address
        the request came from)."""
        self.servers.append(
            subprocess.Popen(
                ["ip", "netns", "exec", namespace, sys.executable, "-c", HTTP_SERVER, address, str(port), text],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def stop(self) -> None:
        for server in self.servers:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(5)
        self.stop_leftovers()
        for cidr in self.routes:
            sh("ip", "route", "del", "unreachable", cidr, check=False)
        self.routes.clear()

    @staticmethod
    def stop_leftovers() -> None:
        """Namespaces of this harness (an earlier run that died left them), and the DHCP servers in them."""
        for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
            name = line.split(" ")[0]
            if name.startswith("ntest-"):
                for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                    sh("kill", "-9", pid, check=False)
                sh("ip", "netns", "del", name, check=False)
