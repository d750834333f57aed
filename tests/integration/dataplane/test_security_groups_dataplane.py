"""Security groups on real kernel networking: two simulated hosts (namespaces ``sgt-…``, addresses in
10.249.0.0/16) with their data planes, guests on one VXLAN network, each port's rules enforced on its host.

The plans are made here as the control plane makes them (rules compiled, remote groups expanded to the
members' addresses). The tests share one lab and run in order.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from compute_tasks.dataplane.linux import LinuxDataplane
from compute_tasks.rpc import PortPlan, RulePlan
from tests.integration.dataplane.lab import Guest, Lab, LabNetwork, host_plan, in_ns, new_port, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]

ECHO = """
import socket, sys, threading
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
def serve(conn):
    with conn:
        while data := conn.recv(1024):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""
# A client that keeps one connection: each line on stdin goes out, its echo (or "closed") comes back.
KEEP = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("connected", flush=True)
for line in sys.stdin:
    try:
        conn.sendall(line.encode())
        print(conn.recv(1024).decode().strip() or "closed", flush=True)
    except OSError as exc:
        print(f"failed {exc}", flush=True)
"""

UDP_LOG = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
while True:
    _data, (source, _port) = sock.recvfrom(100)
    with open(sys.argv[3], "a") as log:
        log.write(source + "\\n")
"""
UDP_SEND = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 0))
sock.sendto(b"hi", (sys.argv[2], int(sys.argv[3])))
"""

NET = "10.249"
EGRESS_ANY = [RulePlan("egress", "IPv4"), RulePlan("egress", "IPv6")]


@dataclasses.dataclass
class World:
    lab: Lab
    planes: list[LinuxDataplane]
    net: LabNetwork
    groups: dict[str, set[str]]  # group -> the port ids in it
    extra: dict[str, list[RulePlan]]  # port id -> rules beyond its groups' starting ones
    generation: int = 1

    def guest(self, name: str) -> Guest:
        return next(g for g in self.lab.guests if g.namespace == f"sgt-g-{name}")

    def rules_of(self, port: PortPlan) -> list[RulePlan]:
        """The default group's rules (egress anywhere, ingress from members) for a member of ``web``."""
        rules = list(EGRESS_ANY)
        if port.port_id in self.groups["web"]:
            members = sorted(
                f"{p.ips[0]}/32" for _h, p in self.net.bindings if p.port_id in self.groups["web"] and p.ips
            )
            rules.append(RulePlan("ingress", "IPv4", remote=members))
        return rules + self.extra.get(port.port_id, [])

    def apply_all(self):
        self.generation += 1
        bindings = []
        for host, port in self.net.bindings:
            if port.port_security_enabled:
                port = dataclasses.replace(port, filtered=True, rules=self.rules_of(port))
            bindings.append((host, port))
        net = dataclasses.replace(self.net, bindings=bindings)
        reports = [
            plane.apply(host_plan(host, [net], self.generation))
            for plane, host in zip(self.planes, self.lab.hosts, strict=True)
        ]
        assert all(not r.error for r in reports), reports
        return reports


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sgdataplane")
    lab = Lab(root, prefix="sgt", net=NET)
    planes: list[LinuxDataplane] = []
    try:
        lab.start(2)
        h1, h2 = lab.hosts
        net = LabNetwork(
            network_id=str(uuid.uuid4()),
            vni=1401,
            cidr=f"{NET}.10.0/24",
            gateway=None,
            dhcp_mac="fa:16:3e:5a:00:01",
            dhcp_ip=f"{NET}.10.2",
        )
        web1 = new_port(1, f"{NET}.10.11")  # web members: one on each host
        web2 = new_port(2, f"{NET}.10.12")
        other = new_port(3, f"{NET}.10.13")  # another group's port (egress only), on the first host
        loose = dataclasses.replace(new_port(4, f"{NET}.10.14"), port_security_enabled=False)
        net.bindings = [(h1, web1), (h2, web2), (h1, other), (h2, loose)]
        planes = [
            LinuxDataplane(h.name, root / h.name, tunnel_address=h.tunnel_address, namespace=h.namespace)
            for h in lab.hosts
        ]
        for (host, port), name in zip(net.bindings, ("web1", "web2", "other", "loose"), strict=True):
            g = lab.add_guest(host, port, name)
            in_ns(g.namespace, "ip", "addr", "add", f"{port.ips[0]}/24", "dev", "eth0")
        world = World(lab, planes, net, groups={"web": {web1.port_id, web2.port_id}}, extra={})
        world.apply_all()
        yield world
    finally:
        for plane in planes:
            for network_id in list(plane.memory.get("namespaces", {}).values()):
                plane.dhcp.stop(network_id)
            shutil.rmtree(plane.dhcp.run_dir, ignore_errors=True)
        lab.stop()


def can_connect(guest: Guest, address: str, port: int) -> bool:
    done = guest.run("timeout", "3", "busybox", "nc", "-w", "2", address, str(port))
    return "hello" in done.stdout


def test_default_group_admits_its_members_only(world):
    web1, web2, other, loose = (world.guest(n) for n in ("web1", "web2", "other", "loose"))
    assert wait_for(lambda: web1.ping(f"{NET}.10.12"))  # members, across hosts, both ways
    assert web2.ping(f"{NET}.10.11")
    assert not other.ping(f"{NET}.10.11")  # same host, same bridge, not a member
    assert not loose.ping(f"{NET}.10.12")  # from a port with no filtering of its own
    assert not web1.ping(f"{NET}.10.13")  # the other group admits nothing
    assert web1.ping(f"{NET}.10.14")  # a port without port security takes everything
    assert loose.ping(f"{NET}.10.13") is False


def test_a_tcp_rule_opens_exactly_its_port_and_removing_it_keeps_established_connections(world):
    web1, other = world.guest("web1"), world.guest("other")
    world.lab.listen(web1.namespace, f"{NET}.10.11", 8081)
    world.lab.processes.append(
        subprocess.Popen(["ip", "netns", "exec", web1.namespace, sys.executable, "-c", ECHO, f"{NET}.10.11", "8080"])
    )
    wait_for(lambda: ":8080" in in_ns(web1.namespace, "ss", "-ltn").stdout)
    assert not can_connect(other, f"{NET}.10.11", 8081)
    world.extra[web1.port.port_id] = [RulePlan("ingress", "IPv4", protocol=6, port_min=8080, port_max=8080)]
    world.apply_all()
    assert not can_connect(other, f"{NET}.10.11", 8081)  # only the port the rule names
    assert not other.ping(f"{NET}.10.11")
    client = subprocess.Popen(
        ["ip", "netns", "exec", other.namespace, sys.executable, "-c", KEEP, f"{NET}.10.11", "8080"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout.readline().strip() == "connected"
        client.stdin.write("one\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "one"
        # The rule goes: the open connection goes on (stateful), a new one is refused.
        world.extra[web1.port.port_id] = []
        world.apply_all()
        client.stdin.write("two\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "two"
        fresh = other.run(sys.executable, "-c", KEEP, f"{NET}.10.11", "8080", timeout=10)
        assert "connected" not in fresh.stdout
    finally:
        client.kill()
        client.wait()


def test_remote_group_follows_membership(world):
    other = world.guest("other")
    assert not other.ping(f"{NET}.10.12")
    world.groups["web"].add(other.port.port_id)
    world.apply_all()
    assert wait_for(lambda: other.ping(f"{NET}.10.12"))  # a member now: web2's host has its address
    assert world.guest("web2").ping(f"{NET}.10.13")
    world.groups["web"].discard(other.port.port_id)
    world.apply_all()
    assert not other.ping(f"{NET}.10.12")


def test_a_spoofed_source_is_dropped(world, tmp_path):
    other, loose = world.guest("other"), world.guest("loose")
    heard = tmp_path / "heard"
    world.lab.processes.append(
        subprocess.Popen(
            ["ip", "netns", "exec", loose.namespace, sys.executable, "-c", UDP_LOG, f"{NET}.10.14", "9999", str(heard)]
        )
    )
    wait_for(lambda: ":9999" in in_ns(loose.namespace, "ss", "-lun").stdout)
    # A web member's address, taken by a port that is not it: the port may use its own address only.
    in_ns(other.namespace, "ip", "addr", "add", f"{NET}.10.12/32", "dev", "eth0")
    try:
        for source in (f"{NET}.10.13", f"{NET}.10.12", f"{NET}.10.13"):
            other.run(sys.executable, "-c", UDP_SEND, source, f"{NET}.10.14", "9999")
        wait_for(lambda: heard.exists() and heard.read_text().count(f"{NET}.10.13") == 2)
        assert heard.read_text().split() == [f"{NET}.10.13"] * 2  # the spoofed datagram never arrived
    finally:
        in_ns(other.namespace, "ip", "addr", "del", f"{NET}.10.12/32", "dev", "eth0")


def test_rule_changes_while_traffic_flows_lose_nothing(world):
    web1, web2, other = world.guest("web1"), world.guest("web2"), world.guest("other")
    world.extra[web1.port.port_id] = [RulePlan("ingress", "IPv4", protocol=1, remote=[f"{NET}.10.13/32"])]
    world.apply_all()
    assert wait_for(lambda: other.ping(f"{NET}.10.11"))
    flood = subprocess.Popen(
        ["ip", "netns", "exec", other.namespace, "ping", "-q", "-i", "0.002", "-c", "1500", "-W", "1", f"{NET}.10.11"],
        stdout=subprocess.PIPE,
        text=True,
    )
    members = subprocess.Popen(
        ["ip", "netns", "exec", web2.namespace, "ping", "-q", "-i", "0.002", "-c", "1500", "-W", "1", f"{NET}.10.11"],
        stdout=subprocess.PIPE,
        text=True,
    )
    variants = [
        [RulePlan("ingress", "IPv4", protocol=1), RulePlan("ingress", "IPv4", protocol=6, port_min=22, port_max=22)],
        [RulePlan("ingress", "IPv4", protocol=1, remote=[f"{NET}.10.13/32"])],
        [RulePlan("ingress", "IPv4", remote=[f"{NET}.10.0/24"]), RulePlan("ingress", "IPv4", protocol=17)],
    ]
    changes = 0
    while flood.poll() is None:
        world.extra[web1.port.port_id] = variants[changes % len(variants)]
        world.groups["web"].symmetric_difference_update({other.port.port_id})  # membership comes and goes too
        world.apply_all()
        changes += 1
    out, _ = flood.communicate()
    members_out, _ = members.communicate(timeout=30)
    assert changes >= 3, changes
    assert " 0% packet loss" in out, out
    assert " 0% packet loss" in members_out, members_out
    world.groups["web"].discard(other.port.port_id)
    world.extra[web1.port.port_id] = []
    world.apply_all()
