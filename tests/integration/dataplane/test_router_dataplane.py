"""Routers on real kernel networking: two simulated hosts joined by a VXLAN underlay, two tenant subnets
with guests on both hosts, and a router on host 2 with a gateway on a flat external network that leads
to an "outside" namespace (the external subnet's gateway, 10.246.200.1).

The outside runs listeners that answer with the address a connection came from, so every test sees
which translation the router did. The tests share one lab and run in order.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import uuid

import pytest

from compute_tasks.dataplane.linux import LinuxDataplane
from compute_tasks.rpc import FloatingPlan, RouterLeg, RouterPlan
from tests.integration.dataplane.lab import Guest, Lab, LabNetwork, host_plan, in_ns, new_port, sh, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]

OUTSIDE = "10.246.200.1"
GATEWAY = "10.246.200.10"  # the router's address on the external network
FLOATING = "10.246.200.50"


@dataclasses.dataclass
class World:
    lab: Lab
    planes: list[LinuxDataplane]
    networks: list[LabNetwork]
    router: RouterPlan
    outside: str
    generation: int = 1

    def plan(self, index: int):
        host = self.lab.hosts[index]
        return host_plan(host, self.networks, self.generation, routers=[(self.lab.hosts[1], self.router)])

    def apply(self, index: int):
        self.generation += 1
        return self.planes[index].apply(self.plan(index))

    def apply_all(self):
        return [self.apply(i) for i in range(len(self.planes))]

    @property
    def namespace(self) -> str:
        return f"{self.lab.hosts[1].namespace}-qrouter-{self.router.router_id}"

    def guest(self, name: str) -> Guest:
        return next(g for g in self.lab.guests if g.namespace == f"rtt-g-{name}")


def leg(network: LabNetwork, index: int, address: str, mtu: int) -> RouterLeg:
    return RouterLeg(
        port_id=str(uuid.uuid4()),
        network_id=network.network_id,
        mac=f"fa:16:3e:f0:00:{index:02x}",
        addresses=[address],
        mtu=mtu,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("routers")
    lab = Lab(root, prefix="rtt", net="10.246")
    planes: list[LinuxDataplane] = []
    try:
        lab.start(2)
        h1, h2 = lab.hosts
        outside = lab.add_external([h2], "rtt-eth1", f"{OUTSIDE}/24")
        net1 = LabNetwork(str(uuid.uuid4()), 2001, "10.246.1.0/24", "10.246.1.1", "fa:16:3e:a1:00:01", "10.246.1.2")
        net2 = LabNetwork(str(uuid.uuid4()), 2002, "10.246.2.0/24", "10.246.2.1", "fa:16:3e:a2:00:01", "10.246.2.2")
        ext = LabNetwork(
            str(uuid.uuid4()),
            0,
            "10.246.200.0/24",
            OUTSIDE,
            "",
            "",
            mtu=1500,
            network_type="flat",
            physical_network="ext",
        )
        guests = {
            "a1": (h1, net1, new_port(1, "10.246.1.11")),
            "a2": (h1, net1, new_port(2, "10.246.1.12")),
            "b1": (h2, net2, new_port(3, "10.246.2.11")),
            "b2": (h1, net2, new_port(4, "10.246.2.12")),
        }
        for name, (host, network, port) in guests.items():
            network.bindings.append((host, port))
            guest = lab.add_guest(host, port, name)
            guest.run("ip", "link", "set", "eth0", "mtu", "1450")
            guest.run("ip", "addr", "add", f"{port.ips[0]}/24", "dev", "eth0")
            guest.run("ip", "route", "add", "default", "via", network.gateway)
        qr1, qr2 = leg(net1, 1, "10.246.1.1/24", 1450), leg(net2, 2, "10.246.2.1/24", 1450)
        qg = leg(ext, 3, f"{GATEWAY}/24", 1500)
        net1.routers, net2.routers, ext.routers = [(h2, qr1)], [(h2, qr2)], [(h2, qg)]
        router = RouterPlan(
            router_id=str(uuid.uuid4()),
            interfaces=[qr1, qr2],
            gateway=qg,
            gateway_nexthop=OUTSIDE,
            snat=True,
            floating=[FloatingPlan(floating_ip=FLOATING, fixed_ip="10.246.1.11")],
        )
        planes = [
            LinuxDataplane(
                h.name,
                root / h.name,
                tunnel_address=h.tunnel_address,
                namespace=h.namespace,
                physical_networks=[("ext", "rtt-eth1")] if h is h2 else [],
            )
            for h in lab.hosts
        ]
        lab.listen_peer(outside, "0.0.0.0", 9000, "outside")  # noqa: S104 - inside the outside namespace
        for name in guests:
            lab.listen_peer(f"rtt-g-{name}", "0.0.0.0", 9100, name)  # noqa: S104 - inside the guest
            lab.listen_udp_peer(f"rtt-g-{name}", "0.0.0.0", 9300, name)  # noqa: S104 - inside the guest
        yield World(lab, planes, [net1, net2, ext], router, outside)
    finally:
        for plane in planes:
            for network_id in list(plane.memory.get("namespaces", {}).values()):
                plane.metadata.stop(network_id)
                plane.dhcp.stop(network_id)
            shutil.rmtree(plane.dhcp.run_dir, ignore_errors=True)
        lab.stop()


def connect(ns: str, address: str, port: int) -> str:
    """What the listener at address:port answered ("" for no answer)."""
    return in_ns(ns, "busybox", "nc", "-w", "3", address, str(port), check=False, timeout=10).stdout.strip()


UDP_CLIENT = """
import socket, sys
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.bind(("", int(sys.argv[3])))
client.settimeout(2)
client.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
try:
    print(client.recv(2048).decode().strip())
except TimeoutError:
    pass
"""


def exchange_udp(ns: str, address: str, port: int, source_port: int) -> str:
    """What the UDP listener at address:port answered a datagram sent from ``source_port``."""
    done = in_ns(ns, sys.executable, "-c", UDP_CLIENT, address, str(port), str(source_port), check=False)
    return done.stdout.strip()


def seen_from_outside(guest: Guest) -> str:
    """The address the outside saw a connection of the guest's come from."""
    return wait_for(lambda: connect(guest.namespace, OUTSIDE, 9000)).removeprefix("outside ")


def test_router_legs_are_plugged_and_the_router_routes_between_its_subnets(world):
    h2 = world.lab.hosts[1]
    host_forwarding = in_ns(h2.namespace, "sysctl", "-n", "net.ipv4.ip_forward").stdout
    reports = world.apply_all()
    assert all(not r.error for r in reports), reports
    legs = {leg.port_id for leg in [*world.router.interfaces, world.router.gateway]}
    assert legs <= set(reports[1].plugged_ports)
    assert not legs & set(reports[0].plugged_ports)
    # Forwarding is on in the router's namespace, and only there.
    assert in_ns(world.namespace, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert in_ns(h2.namespace, "sysctl", "-n", "net.ipv4.ip_forward").stdout == host_forwarding
    a1, b1 = world.guest("a1"), world.guest("b1")
    # Across the router on host 2: from host 1 to host 2, and from host 1 back to host 1.
    assert wait_for(lambda: a1.ping("10.246.2.11")) and b1.ping("10.246.1.11")
    assert wait_for(lambda: a1.ping("10.246.2.12"))
    # Between subnets nothing is translated: the guest sees the other guest's own address.
    assert connect(b1.namespace, "10.246.1.11", 9100) == "a1 10.246.2.11"
    assert connect(a1.namespace, "10.246.2.12", 9100) == "b2 10.246.1.11"
    # The same plan again changes nothing and reports no drift.
    for index in (0, 1):
        again = world.planes[index].apply(world.plan(index))
        assert again.drift == [] and again.error == "", again
        assert world.planes[index].check() is None


def test_the_host_is_not_reachable_from_a_router_leg(world):
    h2 = world.lab.hosts[1]
    rules = in_ns(h2.namespace, "nft", "list", "set", "inet", "compute_dataplane", "guest_ifaces").stdout
    for leg in [*world.router.interfaces, world.router.gateway]:
        assert f"rtr{leg.port_id[:11]}" in rules
    world.lab.listen(h2.namespace, "10.246.0.2", 9200)
    assert "hello" in in_ns(world.lab.hosts[0].namespace, "busybox", "nc", "-w", "3", "10.246.0.2", "9200").stdout
    # The router's namespace routes, but not into the host: its address on the underlay is out of reach.
    in_ns(
        world.namespace, "ip", "route", "add", "10.246.0.0/24", "dev", f"qr-{world.router.interfaces[0].port_id[:11]}"
    )
    try:
        assert "hello" not in connect(world.namespace, "10.246.0.2", 9200)
    finally:
        in_ns(world.namespace, "ip", "route", "del", "10.246.0.0/24")


def test_snat_a_guest_without_floating_address_reaches_outside_from_the_gateway_address(world):
    assert seen_from_outside(world.guest("a2")) == GATEWAY
    assert seen_from_outside(world.guest("b1")) == GATEWAY  # the router's own host


def test_floating_address_reaches_the_guest_on_the_other_host_and_its_traffic_leaves_from_it(world):
    a1 = world.guest("a1")
    assert wait_for(lambda: connect(world.outside, FLOATING, 9100)) == f"a1 {OUTSIDE}"
    assert seen_from_outside(a1) == FLOATING
    # The router answers ARP for the floating address on the external network.
    neighbours = in_ns(world.outside, "ip", "neigh", "show", FLOATING).stdout
    assert world.router.gateway.mac in neighbours


def test_hairpin_a_guest_reaches_a_floating_address_of_its_own_subnet_and_of_another(world):
    # From the same subnet, the floating address's guest sees the router's address on the subnet ...
    assert connect(world.guest("a2").namespace, FLOATING, 9100) == "a1 10.246.1.1"
    # ... and from another of the router's subnets, the guest's own address.
    assert connect(world.guest("b1").namespace, FLOATING, 9100) == "a1 10.246.2.11"


def test_a_floating_address_moved_to_another_guest_reaches_that_one_only(world):
    # A UDP flow from one source port: its conntrack entry outlives the move unless it is forgotten.
    assert wait_for(lambda: exchange_udp(world.outside, FLOATING, 9300, 40000)) == f"a1 {OUTSIDE}"
    world.router = dataclasses.replace(
        world.router, floating=[FloatingPlan(floating_ip=FLOATING, fixed_ip="10.246.2.12")]
    )
    report = world.apply(1)
    assert not report.error and report.drift == [], report
    assert wait_for(lambda: connect(world.outside, FLOATING, 9100)) == f"b2 {OUTSIDE}"
    for _ in range(3):
        assert connect(world.outside, FLOATING, 9100) == f"b2 {OUTSIDE}"  # never the first guest any more
    assert seen_from_outside(world.guest("b2")) == FLOATING
    assert seen_from_outside(world.guest("a1")) == GATEWAY
    assert exchange_udp(world.outside, FLOATING, 9300, 40000) == f"b2 {OUTSIDE}"


def test_without_snat_only_floating_addresses_are_translated(world):
    world.router = dataclasses.replace(world.router, snat=False)
    report = world.apply(1)
    assert not report.error and report.drift == [], report
    a2 = world.guest("a2")
    # Without a route back to the subnet, the outside cannot answer an untranslated guest at all.
    assert connect(a2.namespace, OUTSIDE, 9000) == ""
    in_ns(world.outside, "ip", "route", "add", "10.246.1.0/24", "via", GATEWAY)
    try:
        assert seen_from_outside(a2) == "10.246.1.12"
        assert seen_from_outside(world.guest("b2")) == FLOATING
    finally:
        in_ns(world.outside, "ip", "route", "del", "10.246.1.0/24")
    world.router = dataclasses.replace(world.router, snat=True)
    assert not world.apply(1).error
    assert seen_from_outside(a2) == GATEWAY


def test_router_namespace_deleted_behind_its_back_is_made_again_and_reported(world):
    plane = world.planes[1]
    sh("ip", "netns", "del", world.namespace)
    report = plane.check()
    assert report is not None and not report.error, report
    assert any(world.namespace in line for line in report.drift), report.drift
    assert seen_from_outside(world.guest("a2")) == GATEWAY
    assert wait_for(lambda: connect(world.outside, FLOATING, 9100)) == f"b2 {OUTSIDE}"
    assert wait_for(lambda: world.guest("a1").ping("10.246.2.11"))
    assert plane.check() is None


def test_router_table_flushed_or_leg_unplugged_behind_its_back_is_mended_and_reported(world):
    plane = world.planes[1]
    in_ns(world.namespace, "nft", "flush", "table", "ip", "compute_router")
    assert connect(world.guest("a2").namespace, OUTSIDE, 9000) == ""  # no SNAT: no way back
    report = plane.check()
    assert report is not None and any("nftables table of router" in line for line in report.drift), report
    assert seen_from_outside(world.guest("a2")) == GATEWAY
    assert plane.check() is None
    veth = f"rtr{world.router.interfaces[0].port_id[:11]}"
    sh("ip", "-n", world.lab.hosts[1].namespace, "link", "set", veth, "nomaster")
    report = plane.check()
    assert report is not None and any(veth in line for line in report.drift), report
    assert world.router.interfaces[0].port_id in report.plugged_ports
    address = f"{GATEWAY}/24"
    in_ns(world.namespace, "ip", "addr", "del", address, "dev", f"qg-{world.router.gateway.port_id[:11]}")
    report = plane.check()
    assert report is not None and any("qg-" in line for line in report.drift), report
    assert seen_from_outside(world.guest("a2")) == GATEWAY
    assert plane.check() is None


def test_forwarding_switched_off_in_the_router_is_switched_on_again_and_reported(world):
    in_ns(world.namespace, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
    assert connect(world.guest("a2").namespace, OUTSIDE, 9000) == ""
    report = world.planes[1].check()
    assert report is not None and any("did not forward" in line for line in report.drift), report
    assert seen_from_outside(world.guest("a2")) == GATEWAY


def test_a_restarted_host_takes_its_router_up_again_without_change(world):
    h2 = world.lab.hosts[1]
    restarted = LinuxDataplane(
        h2.name,
        world.planes[1]._dir.parent,
        tunnel_address=h2.tunnel_address,
        namespace=h2.namespace,
        physical_networks=[("ext", "rtt-eth1")],
    )
    report = restarted.resume()
    assert report is not None and report.drift == [] and not report.error, report
    assert world.router.gateway.port_id in report.plugged_ports
    world.planes[1] = restarted


def test_a_leg_removed_from_the_router_goes_and_its_subnet_is_cut_off(world):
    h2 = world.lab.hosts[1]
    qr2 = world.router.interfaces[1]
    world.router = dataclasses.replace(world.router, interfaces=[world.router.interfaces[0]])
    world.networks[1].routers = []
    report, _ = world.apply(1), world.apply(0)
    assert not report.error and report.drift == [], report
    assert qr2.port_id not in report.plugged_ports
    assert f"rtr{qr2.port_id[:11]}" not in sh("ip", "-n", h2.namespace, "-br", "link").stdout
    assert f"qr-{qr2.port_id[:11]}" not in in_ns(world.namespace, "ip", "-br", "link").stdout
    assert not world.guest("a1").ping("10.246.2.11")
    assert seen_from_outside(world.guest("a2")) == GATEWAY


def test_a_router_removed_from_the_plan_leaves_nothing_behind(world):
    h2 = world.lab.hosts[1]
    legs = [*world.router.interfaces, world.router.gateway]
    namespace = world.namespace
    for network in world.networks:
        network.routers = []
    world.generation += 1
    report = world.planes[1].apply(host_plan(h2, world.networks, world.generation))
    assert not report.error and report.drift == [], report
    assert not set(report.plugged_ports) & {leg.port_id for leg in legs}
    assert namespace not in sh("ip", "netns", "list").stdout
    assert "qrouter" not in sh("ip", "netns", "list").stdout
    assert "rtr" not in sh("ip", "-n", h2.namespace, "-br", "link").stdout
    assert "rtr" not in in_ns(h2.namespace, "nft", "list", "ruleset").stdout
    assert "compute_router" not in in_ns(h2.namespace, "nft", "list", "ruleset").stdout
    assert world.planes[1].memory.get("routers") == {} and world.planes[1].memory.get("router_tables") == {}
    assert connect(world.guest("a2").namespace, OUTSIDE, 9000) == ""
    assert world.planes[1].check() is None
