"""The Linux data plane on real kernel networking: two simulated hosts, each a namespace with its own
data plane, joined by a VXLAN underlay; guests are namespaces running busybox's DHCP client.

The tests share one lab (built once for the module) and run in order: each leaves the lab as the next
expects it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import uuid

import pytest

from compute_tasks.dataplane.linux import LinuxDataplane
from tests.integration.dataplane.lab import Guest, Lab, LabNetwork, host_plan, in_ns, new_port, sh, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]


@dataclasses.dataclass
class World:
    lab: Lab
    planes: list[LinuxDataplane]
    net_a: LabNetwork
    net_b: LabNetwork
    generation: int = 1

    def apply(self, index: int):
        self.generation += 1
        host = self.lab.hosts[index]
        return self.planes[index].apply(host_plan(host, [self.net_a, self.net_b], self.generation))

    def apply_all(self):
        return [self.apply(i) for i in range(len(self.planes))]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataplane")
    lab = Lab(root)
    planes: list[LinuxDataplane] = []
    try:
        lab.start(2)
        h1, h2 = lab.hosts
        net_a = LabNetwork(
            network_id=str(uuid.uuid4()),
            vni=1001,
            cidr="10.251.10.0/24",
            gateway="10.251.10.1",
            dhcp_mac="fa:16:3e:aa:00:01",
            dhcp_ip="10.251.10.2",
            host_routes=[{"destination": "10.251.99.0/24", "nexthop": "10.251.10.254"}],
        )
        # Another project's network, with the same addresses: only the bridges keep them apart.
        net_b = LabNetwork(
            network_id=str(uuid.uuid4()),
            vni=1002,
            cidr="10.251.10.0/24",
            gateway=None,
            dhcp_mac="fa:16:3e:bb:00:01",
            dhcp_ip="10.251.10.2",
        )
        a1 = new_port(1, "10.251.10.11", hostname="vm-one")
        a2 = new_port(2, "10.251.10.12", hostname="vm-two")
        b1 = new_port(3, "10.251.10.13", hostname="intruder")
        net_a.bindings = [(h1, a1), (h2, a2)]
        net_b.bindings = [(h1, b1)]
        planes = [
            LinuxDataplane(h.name, root / h.name, tunnel_address=h.tunnel_address, namespace=h.namespace)
            for h in lab.hosts
        ]
        lab.add_guest(h1, a1, "a1")
        # The second guest's tap is made in the root namespace, as libvirt makes it: the data plane moves it.
        ns = "dpt-g-a2"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", a2.device, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", ns, "link", "set", "eth0", "address", a2.mac, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        lab.guests.append(Guest(namespace=ns, port=a2, host=h2, lease_file=root / f"{ns}.lease"))
        lab.add_guest(h1, b1, "b1")
        yield World(lab, planes, net_a, net_b)
    finally:
        for plane in planes:
            for network_id in list(plane.memory.get("namespaces", {}).values()):
                plane.metadata.stop(network_id)
                plane.dhcp.stop(network_id)
            shutil.rmtree(plane.dhcp.run_dir, ignore_errors=True)
        for guest in lab.guests:
            sh("ip", "link", "del", guest.port.device, check=False)  # a tap left in the root namespace
        lab.stop()


def guest(world: World, name: str):
    return next(g for g in world.lab.guests if g.namespace == f"dpt-g-{name}")


def test_two_hosts_one_network_guests_get_leases_and_reach_each_other(world):
    reports = world.apply_all()
    assert all(not r.error for r in reports), reports
    a1, a2, b1 = guest(world, "a1"), guest(world, "a2"), guest(world, "b1")
    assert set(reports[0].plugged_ports) == {a1.port.port_id, b1.port.port_id}
    assert reports[1].plugged_ports == [a2.port.port_id]  # moved in from the root namespace, then plugged
    assert a2.port.device not in sh("ip", "-br", "link").stdout

    lease1, lease2 = a1.dhcp(), a2.dhcp()
    assert lease1["ip"] == "10.251.10.11" and lease2["ip"] == "10.251.10.12"
    assert lease1["mask"] == "24" and lease1["mtu"] == "1450" and lease1["router"] == "10.251.10.1"
    assert lease1["dns"] == "10.251.10.2"
    # Host routes become classless static routes, with the default route next to them.
    assert "10.251.99.0/24 10.251.10.254" in lease1["staticroutes"].replace(",", " ")

    assert a1.ping("10.251.10.12") and a2.ping("10.251.10.11")
    world.lab.serve_http(a2, "page of vm-two\n")
    assert wait_for(lambda: a1.fetch("http://10.251.10.12:8080/")) == "page of vm-two\n"
    # The network's names answer from the guest's DHCP address, and nothing upstream is asked.
    answer = a1.run("busybox", "nslookup", "vm-two", "10.251.10.2")
    assert "10.251.10.12" in answer.stdout, answer.stdout + answer.stderr

    # The same plan again: nothing changes, nothing is drift.
    again = world.planes[0].apply(host_plan(world.lab.hosts[0], [world.net_a, world.net_b], world.generation))
    assert again.drift == [] and again.error == ""
    assert world.planes[0].check() is None and world.planes[1].check() is None


def test_another_networks_guest_reaches_neither(world):
    a1, b1 = guest(world, "a1"), guest(world, "b1")
    lease = b1.dhcp()
    assert lease["ip"] == "10.251.10.13" and lease["router"] == ""  # no gateway: no router option
    assert not b1.ping("10.251.10.11")  # same host, same addresses, other bridge
    assert not b1.ping("10.251.10.12")  # other host
    assert not a1.ping("10.251.10.13")
    assert b1.fetch("http://10.251.10.12:8080/") == ""


def test_guest_reaches_nothing_on_its_host(world):
    a1 = guest(world, "a1")
    h1, h2 = world.lab.hosts
    in_ns(h1.namespace, "ip", "addr", "add", "10.251.250.1/32", "dev", "lo")
    world.lab.listen(h1.namespace, "0.0.0.0", 9000)  # noqa: S104 - inside the simulated host's namespace
    # The listener answers whoever may reach it: the other host, over the underlay.
    assert "hello" in in_ns(h2.namespace, "busybox", "nc", "-w", "3", "10.251.0.1", "9000", check=False).stdout
    for address in ("10.251.0.1", "10.251.250.1"):
        a1.run("ip", "route", "add", f"{address}/32", "dev", "eth0")
        done = a1.run("busybox", "nc", "-w", "2", address, "9000", timeout=10)
        assert "hello" not in done.stdout, f"a guest reached its host at {address}"
        assert not a1.ping(address)
    # ... but DHCP and DNS from its own network's server still answer.
    assert a1.dhcp()["ip"] == "10.251.10.11"


def test_dhcp_of_another_host_never_answers_across_the_overlay(world):
    a1 = guest(world, "a1")
    network_id = world.net_a.network_id
    plane = world.planes[0]
    pid = plane.dhcp.pid(network_id)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: plane.dhcp.pid(network_id) is None)
    dhcp_ns = plane.memory and next(ns for ns, n in plane.memory["namespaces"].items() if n == network_id)
    sh("ip", "-n", dhcp_ns, "link", "set", "ns-dhcp", "down")
    # Host 2 serves the same DHCP address on the same network, behind the VXLAN: it stays silent.
    assert a1.dhcp(timeout=3) == {}
    assert not a1.ping("10.251.10.2")
    report = plane.check()  # the periodic check finds the dead server and starts it again
    assert report is not None and any("dnsmasq" in line for line in report.drift), report
    assert a1.dhcp()["ip"] == "10.251.10.11"
    assert a1.ping("10.251.10.2")


def test_unknown_mac_gets_no_lease_and_is_unplugged(world):
    h1 = world.lab.hosts[0]
    bridge = f"brq{world.net_a.network_id[:11]}"
    ns = "dpt-g-stranger"
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", h1.namespace, "link", "add", "dptstranger", "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "-n", ns, "link", "set", "eth0", "address", "fa:16:3e:99:99:99", "up")
    sh("ip", "-n", h1.namespace, "link", "set", "dptstranger", "master", bridge, "up")
    stranger = Guest(namespace=ns, port=new_port(99, "10.251.10.99"), host=h1, lease_file=world.lab.root / "s.lease")
    assert stranger.dhcp(timeout=3) == {}
    report = world.planes[0].check()
    assert report is not None and any("dptstranger" in line for line in report.drift), report
    assert "master" not in in_ns(h1.namespace, "ip", "-d", "link", "show", "dptstranger").stdout.split("link/ether")[0]


def test_bridge_deleted_behind_its_back_is_rebuilt_and_reported(world):
    a1 = guest(world, "a1")
    h1 = world.lab.hosts[0]
    bridge = f"brq{world.net_a.network_id[:11]}"
    sh("ip", "-n", h1.namespace, "link", "del", bridge)
    assert not a1.ping("10.251.10.12")
    report = world.planes[0].check()
    assert report is not None and not report.error, report
    assert any(bridge in line for line in report.drift), report.drift
    assert a1.port.port_id in report.plugged_ports
    # The guest's first packets may still go to the MAC it knew before: give ARP a moment.
    wait_for(lambda: a1.ping("10.251.10.12"), timeout=10)
    assert world.planes[0].check() is None  # mended once, quiet after


def test_restarted_host_reapplies_its_kept_plan(world):
    h2 = world.lab.hosts[1]
    sh("ip", "-n", h2.namespace, "link", "del", "vxlan-1001")
    restarted = LinuxDataplane(
        h2.name, world.planes[1]._dir.parent, tunnel_address=h2.tunnel_address, namespace=h2.namespace
    )
    report = restarted.resume()
    assert report is not None and report.generation == world.planes[1].generation
    assert any("vxlan-1001" in line for line in report.drift), report.drift
    assert guest(world, "a1").ping("10.251.10.12")
    world.planes[1] = restarted


def test_port_removed_from_the_plan_is_unplugged(world):
    a1, a2 = guest(world, "a1"), guest(world, "a2")
    h1 = world.lab.hosts[0]
    world.net_a.bindings = [(h, p) for h, p in world.net_a.bindings if p is not a1.port]
    report = world.apply(0)
    assert a1.port.port_id not in report.plugged_ports and report.drift == [], report
    assert "master" not in in_ns(h1.namespace, "ip", "-o", "link", "show", a1.port.device).stdout
    report2 = world.apply(1)
    assert report2.plugged_ports == [a2.port.port_id]
    assert not a1.ping("10.251.10.12")
    # Host 2's fdb no longer points at the removed port, and host 1 no longer floods network A to it.
    fdb = sh("bridge", "-n", world.lab.hosts[1].namespace, "fdb", "show", "dev", "vxlan-1001").stdout
    tunnel_entries = [line for line in fdb.splitlines() if " dst " in line]
    assert tunnel_entries == [], tunnel_entries
