"""Simulated hypervisor hosts and guests in network namespaces, for the data plane's tests and benchmark.

Everything lives in namespaces named ``<prefix>-…`` (``dpt-`` unless told) and addresses inside the lab's
/16 (10.251.0.0/16 unless told), which is made
unreachable in the root namespace first, so that a mistake fails at once instead of leaving the machine.
The underlay is a bridge in a namespace of its own; each host is a namespace with a veth on it whose
address is the host's tunnel address. A guest is a namespace whose ``eth0`` is the far end of a veth
named like a port's tap, on the host's side.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from compute_tasks.rpc import HostNetworkPlan, Neighbour, NetworkPlan, PortPlan, RouterLeg, RouterPlan, SubnetPlan

UDHCPC_SCRIPT = """#!/bin/sh
# busybox udhcpc hands the lease over in the environment; the lab keeps it in a file.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    printf 'ip=%s\\nmask=%s\\nrouter=%s\\ndns=%s\\nmtu=%s\\nstaticroutes=%s\\n' \\
      "$ip" "$mask" "$router" "$dns" "$mtu" "$staticroutes" > "$LEASE_FILE"
    ;;
esac
exit 0
"""


LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    conn.sendall(b"hello\\n")
    conn.close()
"""


# Answers every connection with its tag and the address the connection came from.
PEER_LISTENER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, peer = server.accept()
    conn.sendall(f"{sys.argv[3]} {peer[0]}\\n".encode())
    conn.close()
"""


# The same over UDP: answers each datagram.
UDP_PEER_LISTENER = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((sys.argv[1], int(sys.argv[2])))
while True:
    _data, peer = server.recvfrom(2048)
    server.sendto(f"{sys.argv[3]} {peer[0]}\\n".encode(), peer)
"""


def sh(*args: str, check: bool = True, timeout: float = 20, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check, input=input)


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


@dataclass
class Host:
    name: str
    namespace: str
    tunnel_address: str


@dataclass
class Guest:
    namespace: str
    port: PortPlan
    host: Host
    lease_file: Path

    def dhcp(self, timeout: int = 6) -> dict[str, str]:
        """Ask for a lease with busybox udhcpc; what the server answered ({} for no answer)."""
        with contextlib.suppress(FileNotFoundError):
            self.lease_file.unlink()
        script = self.lease_file.with_suffix(".sh")
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o700)
        sh(
            "ip", "netns", "exec", self.namespace, "env", f"LEASE_FILE={self.lease_file}",
            "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", str(timeout), "-T", "1",
            "-O", "mtu", "-O", "staticroutes", "-s", str(script),
            check=False, timeout=timeout + 10,
        )  # fmt: skip
        try:
            text = self.lease_file.read_text().strip()
        except FileNotFoundError:
            return {}
        return dict(line.split("=", 1) for line in text.splitlines())

    def run(self, *args: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return in_ns(self.namespace, *args, check=False, timeout=timeout)

    def ping(self, address: str) -> bool:
        return self.run("ping", "-c", "1", "-W", "2", address).returncode == 0

    def fetch(self, url: str) -> str:
        done = self.run("timeout", "6", "busybox", "wget", "-q", "-O", "-", url)
        return done.stdout if done.returncode == 0 else ""


@dataclass
class Lab:
    root: Path
    hosts: list[Host] = field(default_factory=list)
    guests: list[Guest] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    route_added: bool = False
    prefix: str = "dpt"  # of every namespace and device the lab makes
    net: str = "10.251"  # the lab's addresses are inside <net>.0.0/16

    @property
    def lab_range(self) -> str:
        return f"{self.net}.0.0/16"

    @property
    def underlay(self) -> str:
        return f"{self.prefix}-ul"

    def start(self, count: int) -> None:
        if sh("ip", "route", "add", "unreachable", self.lab_range, check=False).returncode == 0:
            self.route_added = True
        sh("ip", "netns", "add", self.underlay)
        sh("ip", "-n", self.underlay, "link", "add", f"{self.prefix}-ul0", "type", "bridge")
        sh("ip", "-n", self.underlay, "link", "set", f"{self.prefix}-ul0", "up")
        for index in range(1, count + 1):
            self.add_host(index)

    def add_host(self, index: int) -> Host:
        ns = f"{self.prefix}-h{index}"
        address = f"{self.net}.0.{index}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        leg = f"{self.prefix}-ul{index}"
        sh("ip", "-n", self.underlay, "link", "add", leg, "type", "veth", "peer", "name", "ul0", "netns", ns)
        sh("ip", "-n", self.underlay, "link", "set", leg, "master", f"{self.prefix}-ul0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "ul0")
        sh("ip", "-n", ns, "link", "set", "ul0", "up")
        host = Host(name=f"{self.prefix}-host{index}", namespace=ns, tunnel_address=address)
        self.hosts.append(host)
        return host

    def add_guest(self, host: Host, port: PortPlan, name: str) -> Guest:
        ns = f"{self.prefix}-g-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", host.namespace, "link", "add", port.device, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", ns, "link", "set", "eth0", "address", port.mac, "up")
        guest = Guest(namespace=ns, port=port, host=host, lease_file=self.root / f"{ns}.lease")
        self.guests.append(guest)
        return guest

    def serve_http(self, guest: Guest, text: str, port: int = 8080) -> None:
        www = self.root / f"{guest.namespace}-www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(text)
        self.processes.append(
            subprocess.Popen(
                ["ip", "netns", "exec", guest.namespace, "busybox", "httpd", "-f", "-p", str(port), "-h", str(www)]
            )
        )

    def listen(self, ns: str, address: str, port: int) -> None:
        """A TCP listener in namespace ``ns`` that answers every connection with 'hello'."""
        self.processes.append(
            subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, address, str(port)])
        )
        wait_for(lambda: f":{port}" in in_ns(ns, "ss", "-ltn", check=False).stdout)

    def listen_peer(self, ns: str, address: str, port: int, tag: str) -> None:
        """A TCP listener in namespace ``ns`` that answers every connection with '<tag> <peer address>'."""
        self.processes.append(
            subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PEER_LISTENER, address, str(port), tag])
        )
        wait_for(lambda: f":{port}" in in_ns(ns, "ss", "-ltn", check=False).stdout)

    def listen_udp_peer(self, ns: str, address: str, port: int, tag: str) -> None:
        """A UDP listener in namespace ``ns`` that answers every datagram with '<tag> <peer address>'."""
        self.processes.append(
            subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", UDP_PEER_LISTENER, address, str(port), tag]
            )
        )
        wait_for(lambda: f":{port}" in in_ns(ns, "ss", "-lun", check=False).stdout)

    def add_external(self, hosts: list[Host], device: str, address: str) -> str:
        """A segment outside the cloud (a bridge in namespace ``<prefix>-ext``): each host reaches it by
        its interface ``device``, and an "outside" namespace (returned) sits on it with ``address``
        ("ip/prefixlen"), like the external network's gateway."""
        ext, outside = f"{self.prefix}-ext", f"{self.prefix}-out"
        sh("ip", "netns", "add", ext)
        sh("ip", "-n", ext, "link", "add", "ext0", "type", "bridge")
        sh("ip", "-n", ext, "link", "set", "ext0", "up")
        legs = [(host.namespace, device) for host in hosts] + [(outside, "eth0")]
        sh("ip", "netns", "add", outside)
        sh("ip", "-n", outside, "link", "set", "lo", "up")
        for index, (ns, name) in enumerate(legs):
            sh("ip", "-n", ext, "link", "add", f"ext{index + 1}", "type", "veth", "peer", "name", name, "netns", ns)
            sh("ip", "-n", ext, "link", "set", f"ext{index + 1}", "master", "ext0", "up")
        sh("ip", "-n", outside, "addr", "add", address, "dev", "eth0")
        sh("ip", "-n", outside, "link", "set", "eth0", "up")
        return outside

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        listed = sh("ip", "netns", "list", check=False).stdout.split("\n")
        for line in listed:
            name = line.split(" ")[0]
            if name.startswith(f"{self.prefix}-"):
                sh("ip", "netns", "del", name, check=False)
        if self.route_added:
            sh("ip", "route", "del", "unreachable", self.lab_range, check=False)


def wait_for(condition, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


def new_port(index: int, ip: str, *, hostname: str = "", instance: str = "") -> PortPlan:
    port_id = str(uuid.uuid4())
    return PortPlan(
        port_id=port_id,
        mac=f"fa:16:3e:00:{index // 256:02x}:{index % 256:02x}",
        device=f"tap{port_id[:11]}",
        instance_uuid=instance or str(uuid.uuid4()),
        ips=[ip],
        hostname=hostname,
    )


@dataclass
class LabNetwork:
    """A network as the control plane knows it: every port with the host it is bound to."""

    network_id: str
    vni: int
    cidr: str
    gateway: str | None
    dhcp_mac: str
    dhcp_ip: str
    mtu: int = 1450
    network_type: str = "vxlan"
    physical_network: str | None = None
    bindings: list[tuple[Host, PortPlan]] = field(default_factory=list)
    host_routes: list[dict[str, str]] = field(default_factory=list)
    routers: list[tuple[Host, RouterLeg]] = field(default_factory=list)  # routers' ports on the network

    def plan_for(self, host: Host) -> NetworkPlan | None:
        mine = [p for h, p in self.bindings if h is host]
        if not mine and not any(h is host for h, _leg in self.routers):
            return None
        # What the other hosts have on the network is found there: guests' ports and routers' legs.
        elsewhere = [(h, p) for h, p in self.bindings if h is not host]
        elsewhere += [
            (h, PortPlan(port_id=leg.port_id, mac=leg.mac, device="", ips=[leg.addresses[0].split("/")[0]]))
            for h, leg in self.routers
            if h is not host
        ]
        return NetworkPlan(
            network_id=self.network_id,
            network_type=self.network_type,
            mtu=self.mtu,
            segmentation_id=self.vni if self.network_type == "vxlan" else None,
            physical_network=self.physical_network,
            subnets=[
                SubnetPlan(
                    subnet_id=str(uuid.uuid5(uuid.NAMESPACE_URL, self.cidr)),
                    cidr=self.cidr,
                    gateway_ip=self.gateway,
                    dns_nameservers=[],
                    host_routes=self.host_routes,
                )
            ],
            ports=mine,
            dhcp_mac=self.dhcp_mac,
            dhcp_ips=[self.dhcp_ip],
            leases=[p for _h, p in self.bindings],
            remotes=sorted({h.tunnel_address for h, _p in elsewhere}) if self.network_type == "vxlan" else [],
            neighbours=[Neighbour(mac=p.mac, ip=p.ips[0], remote=h.tunnel_address) for h, p in elsewhere]
            if self.network_type == "vxlan"
            else [],
        )


def host_plan(
    host: Host, networks: list[LabNetwork], generation: int, routers: list[tuple[Host, RouterPlan]] = ()
) -> HostNetworkPlan:
    plans = [n.plan_for(host) for n in networks]
    return HostNetworkPlan(
        host=host.name,
        generation=generation,
        networks=[p for p in plans if p is not None],
        routers=[r for h, r in routers if h is host],
    )
