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
    public: LabNetwork
    flat: LabNetwork
    generation: int = 1

    def apply(self, index: int):
        self.generation += 1
        host = self.lab.hosts[index]
        return self.planes[index].apply(
            host_plan(host, [self.net_a, self.net_b, self.public, self.flat], self.generation)
        )

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
        # A flat network on an operator's bridge of host 1 that has an address: the machine reaches its
        # guests, they do not reach the machine.
        sh("ip", "-n", h1.namespace, "link", "add", "dpt-pub", "type", "bridge")
        sh("ip", "-n", h1.namespace, "addr", "add", "10.251.60.1/24", "dev", "dpt-pub")
        sh("ip", "-n", h1.namespace, "link", "set", "dpt-pub", "up")
        public = LabNetwork(
            network_id=str(uuid.uuid4()),
            vni=0,
            cidr="10.251.60.0/24",
            gateway="10.251.60.1",
            dhcp_mac="fa:16:3e:cc:00:01",
            dhcp_ip="10.251.60.2",
            mtu=1500,
            network_type="flat",
            physical_network="public",
        )
        # A flat network on host 2's interface dpt-eth1, which leads "outside" (a namespace of its own).
        sh("ip", "netns", "add", "dpt-out")
        sh(
            "ip",
            "-n",
            h2.namespace,
            "link",
            "add",
            "dpt-eth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            "dpt-out",
        )
        sh("ip", "-n", "dpt-out", "addr", "add", "10.251.70.100/24", "dev", "eth0")
        sh("ip", "-n", "dpt-out", "link", "set", "eth0", "up")
        flat = LabNetwork(
            network_id=str(uuid.uuid4()),
            vni=0,
            cidr="10.251.70.0/24",
            gateway=None,
            dhcp_mac="fa:16:3e:dd:00:01",
            dhcp_ip="10.251.70.2",
            mtu=1500,
            network_type="flat",
            physical_network="lab",
        )
        a1 = new_port(1, "10.251.10.11", hostname="vm-one")
        a2 = new_port(2, "10.251.10.12", hostname="vm-two")
        b1 = new_port(3, "10.251.10.13", hostname="intruder")
        net_a.bindings = [(h1, a1), (h2, a2)]
        net_b.bindings = [(h1, b1)]
        p1 = new_port(4, "10.251.60.11", hostname="public-vm")
        public.bindings = [(h1, p1)]
        planes = [
            LinuxDataplane(
                h.name,
                root / h.name,
                tunnel_address=h.tunnel_address,
                namespace=h.namespace,
                physical_networks=[("public", "dpt-pub")] if h is h1 else [("lab", "dpt-eth1")],
            )
            for h in lab.hosts
        ]
        lab.add_guest(h1, a1, "a1")
        # The second guest's tap is made in the root namespace, as libvirt makes it: the data plane moves it.
        ns = "dpt-g-a2"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", a2.device, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", ns, "link", "set", "eth0", "address", a2.mac, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "set", a2.device, "up")  # libvirt sets a tap up last, once the guest starts
        lab.guests.append(Guest(namespace=ns, port=a2, host=h2, lease_file=root / f"{ns}.lease"))
        lab.add_guest(h1, b1, "b1")
        lab.add_guest(h1, p1, "p1")
        yield World(lab, planes, net_a, net_b, public, flat)
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
    p1 = guest(world, "p1")
    assert set(reports[0].plugged_ports) == {a1.port.port_id, b1.port.port_id, p1.port.port_id}
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
    again = world.planes[0].apply(
        host_plan(world.lab.hosts[0], [world.net_a, world.net_b, world.public, world.flat], world.generation)
    )
    assert again.drift == [] and again.error == ""
    assert world.planes[0].check() is None and world.planes[1].check() is None


def test_a_changed_subnet_is_served_after_a_reload_and_a_new_one_after_a_restart(world):
    a1 = guest(world, "a1")
    plane = world.planes[0]
    pid = plane.dhcp.pid(world.net_a.network_id)
    world.net_a.gateway = "10.251.10.254"
    report = world.apply(0)
    assert report.drift == [] and not report.error
    assert plane.dhcp.pid(world.net_a.network_id) == pid  # its files changed: SIGHUP, same process
    assert a1.dhcp()["router"] == "10.251.10.254"
    world.net_a.gateway = "10.251.10.1"
    world.net_a.mtu = 1400  # the DHCP leg's MTU and dnsmasq's options change; the command line does not
    world.apply(0)
    assert a1.dhcp()["mtu"] == "1400"
    assert plane.dhcp.pid(world.net_a.network_id) == pid
    world.net_a.mtu = 1450
    assert not world.apply(0).error and a1.dhcp()["mtu"] == "1450"


def test_another_networks_guest_reaches_neither(world):
    a1, b1 = guest(world, "a1"), guest(world, "b1")
    lease = b1.dhcp()
    assert lease["ip"] == "10.251.10.13" and lease["router"] == ""  # no gateway: no router option
    assert not b1.ping("10.251.10.11")  # same host, same addresses, other bridge
    assert not b1.ping("10.251.10.12")  # other host
    assert not a1.ping("10.251.10.13")
    assert b1.fetch("http://10.251.10.12:8080/") == ""


def test_guest_reaches_nothing_on_its_host(world):
    p1, a1 = guest(world, "p1"), guest(world, "a1")
    h1, h2 = world.lab.hosts
    world.lab.listen(h1.namespace, "0.0.0.0", 9000)  # noqa: S104 - inside the simulated host's namespace
    # The listener answers whoever may reach it: the other host, over the underlay.
    assert "hello" in in_ns(h2.namespace, "busybox", "nc", "-w", "3", "10.251.0.1", "9000", check=False).stdout
    lease = p1.dhcp()
    assert (lease["ip"], lease["router"], lease["mtu"]) == ("10.251.60.11", "10.251.60.1", "1500")
    p1.run("ip", "route", "add", "default", "via", "10.251.60.1")
    # The machine reaches the guest on its flat network (the replies are let in) ...
    assert in_ns(h1.namespace, "ping", "-c", "1", "-W", "2", "10.251.60.11", check=False).returncode == 0
    # ... and the guest reaches none of the machine's addresses: on its bridge, the underlay, loopback.
    for address in ("10.251.60.1", "10.251.0.1", "127.0.0.1"):
        done = p1.run("busybox", "nc", "-w", "2", address, "9000", timeout=10)
        assert "hello" not in done.stdout, f"a guest reached its host at {address}"
    assert not p1.ping("10.251.60.1")
    # A guest may not claim another address (port security): its packets from it go nowhere.
    a1.run("ip", "addr", "add", "10.251.10.50/24", "dev", "eth0")
    a2 = guest(world, "a2")  # it knows where .50 is, so only the IP source check can stop the exchange
    a2.run("ip", "neigh", "replace", "10.251.10.50", "lladdr", a1.port.mac, "dev", "eth0")
    assert a1.run("ping", "-c", "1", "-W", "2", "-I", "10.251.10.50", "10.251.10.12").returncode != 0
    assert a1.ping("10.251.10.12")
    a1.run("ip", "addr", "del", "10.251.10.50/24", "dev", "eth0")
    # Nor an IPv6 address the port does not have (only link-local ones pass).
    a1.run("ip", "-6", "addr", "add", "fd00:251::1/64", "dev", "eth0", "nodad")
    a2.run("ip", "-6", "addr", "add", "fd00:251::2/64", "dev", "eth0", "nodad")
    assert a1.run("ping", "-6", "-c", "1", "-W", "2", "fd00:251::2").returncode != 0
    a1.run("ip", "-6", "addr", "add", "fe80::a1/64", "dev", "eth0", "nodad")
    a2.run("ip", "-6", "addr", "add", "fe80::a2/64", "dev", "eth0", "nodad")
    assert a2.run("ping", "-6", "-c", "1", "-W", "2", "fe80::a1%eth0").returncode == 0
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


def test_dhcp_namespace_deleted_behind_its_back_is_made_again_with_its_server(world):
    a1 = guest(world, "a1")
    plane = world.planes[0]
    dhcp_ns = next(ns for ns, n in plane.memory["namespaces"].items() if n == world.net_a.network_id)
    sh("ip", "netns", "del", dhcp_ns)  # dnsmasq lives on in the namespace that no longer has a name
    report = plane.check()
    assert report is not None and any(dhcp_ns in line for line in report.drift), report
    assert any("dnsmasq" in line for line in report.drift), report
    assert a1.dhcp()["ip"] == "10.251.10.11"


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


def test_firewall_tables_removed_behind_its_back_are_restored_and_reported(world):
    h1 = world.lab.hosts[0]
    in_ns(h1.namespace, "nft", "delete", "table", "inet", "compute_dataplane")
    report = world.planes[0].check()
    assert report is not None and any("nftables" in line for line in report.drift), report
    assert "chain input" in in_ns(h1.namespace, "nft", "list", "table", "inet", "compute_dataplane").stdout
    assert world.planes[0].check() is None


def test_restarted_host_reapplies_its_kept_plan(world):
    h2 = world.lab.hosts[1]
    sh("ip", "-n", h2.namespace, "link", "del", "vxlan-1001")
    restarted = LinuxDataplane(
        h2.name,
        world.planes[1]._dir.parent,
        tunnel_address=h2.tunnel_address,
        namespace=h2.namespace,
        physical_networks=[("lab", "dpt-eth1")],
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


def test_a_flat_network_on_an_interface_reaches_outside_and_its_dhcp_stays_home(world):
    h2 = world.lab.hosts[1]
    port = new_port(5, "10.251.70.11")
    world.flat.bindings = [(h2, port)]
    flat_guest = world.lab.add_guest(h2, port, "f1")
    report = world.apply(1)
    assert port.port_id in report.plugged_ports and not report.error, report
    bridge = f"brq{world.flat.network_id[:11]}"
    assert f"master {bridge}" in sh("ip", "-n", h2.namespace, "link", "show", "dpt-eth1").stdout
    assert flat_guest.dhcp()["ip"] == "10.251.70.11"
    assert flat_guest.ping("10.251.70.100")
    # The DHCP port is this host's alone: from outside, nothing of it answers.
    assert in_ns("dpt-out", "ping", "-c", "1", "-W", "2", "10.251.70.2", check=False).returncode != 0
    # The network leaves the host: its bridge goes and the interface is free again.
    world.flat.bindings = []
    assert not world.apply(1).error
    assert "master" not in sh("ip", "-n", h2.namespace, "-o", "link", "show", "dpt-eth1").stdout
