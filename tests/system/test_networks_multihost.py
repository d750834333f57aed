"""Real guests on real networks across two real hosts.

Two hosts, each its own libvirtd and its own data plane in a namespace of its own (``tests.network_hosts``).
Project A's two guests, one per host, on A's VXLAN network, get their addresses by DHCP, read their own
metadata from 169.254.169.254, and reach each other (ping and a page), as their user data reports on
the serial console. Project B's guest, on a
network of its own with the *same* addresses, reaches neither. A guest on the shared flat network
``public`` is reachable from its host and from the machines beyond it, reaches those machines, and
reaches nothing of its hypervisor; the machines beyond reach it once a security group admits them
(ICMP and TCP 80); live-migrated to the other host, it is still reachable there. Then,
with the guests running: a NIC is plugged in through
os-interface, a port deleted is unplugged, and a bridge deleted behind the host's back comes back.

Behind a router (on one host) with its gateway on ``public``, two subnets' guests (one per host) reach
each other and the machines beyond, seen there as the router's address, or as the floating IP of the one
that has one; from beyond, the floating IP leads to its guest once a group admits it, and to the other
guest once re-associated.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time

import pytest

from compute_tasks.dataplane.desired import bridge_name
from portal.models import HostNetworkState, Instance, Port, Role, Router
from tests.http import ApiUser
from tests.images import public_image
from tests.libvirt_hosts import LibvirtHosts, start_compute_on
from tests.network_hosts import OUTSIDE, OUTSIDE_ADDRESS, PUBLIC_CIDR, NetworkHosts, in_ns, sh
from tests.processes import Cluster, purge_broker, wait_for_host, wait_until
from tests.system.conftest import TWO_HOSTS

pytestmark = pytest.mark.system

HOST_FIELD = {"OpenStack-API-Version": "compute 2.74"}
GUEST_CIDR = "10.60.0.0/24"
HOST1_PUBLIC = "10.252.100.2"  # the first host's own address on public, as an operator's bridge has one

# The guest's user data: wait for its DHCP lease, serve a page, then try each peer (ping, then the page).
PROBE = """#!/bin/sh
for i in $(seq 1 60); do ip -4 addr show eth0 | grep -q 'inet ' && break; sleep 1; done
echo "NET-ADDR $(ip -4 addr show eth0 | sed -n 's/.*inet \\([0-9.]*\\).*/\\1/p') mtu $(cat /sys/class/net/eth0/mtu)"
mkdir -p /www && echo "page-of-$(hostname)" > /www/index.html && httpd -p 80 -h /www
meta=$(timeout 4 wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json 2>/dev/null | tr -d '\\n')
echo "NET-META [$(echo "$meta" | sed -n 's/.*"uuid": *"\\([0-9a-f-]*\\)".*/\\1/p')]"
for peer in {peers}; do
    ok=fail
    for i in $(seq 1 {tries}); do ping -c 1 -W 1 "$peer" >/dev/null 2>&1 && {{ ok=ok; break; }}; sleep 1; done
    echo "NET-PING $peer $ok"
    page=
    for i in 1 2 3; do page=$(timeout 5 wget -q -O - "http://$peer/" 2>/dev/null) && break; sleep 1; done
    echo "NET-FETCH $peer [$page]"
done
echo "NET-DONE"
"""


def probe(peers: list[str], tries: int) -> str:
    return base64.b64encode(PROBE.format(peers=" ".join(peers), tries=tries).encode()).decode()


class Networking(ApiUser):
    def net(self, method: str, path: str, body=None):
        return self.session.request(method, f"{self.base}/networking/v2.0{path}", json=body, timeout=10)

    def made(self, path: str, body: dict) -> dict:
        response = self.net("POST", path, body)
        assert response.status_code == 201, response.text
        return next(iter(response.json().values()))


@pytest.fixture(scope="module")
def cloud(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    """Two hosts on private libvirtds whose data planes program the namespaces of ``NetworkHosts``."""
    purge_broker()
    network = NetworkHosts(list(TWO_HOSTS))
    network.start(guest_ranges=("10.60.0.0/16",))
    work_dir = tmp_path_factory.mktemp("net-hosts")
    cluster = Cluster(live_server.url, work_dir)
    cluster.libvirt_hosts = LibvirtHosts(work_dir / "libvirt")
    cluster.network = network
    try:
        cluster.start_conductor()
        for name, address in TWO_HOSTS.items():
            start_compute_on(cluster, name, cluster.libvirt_hosts.start(name, address), **network.host_env(name))
        with django_db_blocker.unblock():
            for name in TWO_HOSTS:
                wait_for_host(name)
        yield cluster
    finally:
        with django_db_blocker.unblock():
            cluster.stop()
        cluster.libvirt_hosts.stop()
        network.stop()


def console(cluster, host: str, server_id: str) -> str:
    log = cluster.instance_dir(host, server_id) / "console.log"
    return log.read_text(errors="replace") if log.exists() else ""


def probed(cloud, name: str, host: str, server_id: str) -> None:
    """Until the guest's probe says it is done; what its serial console shows when it does not."""
    try:
        wait_until(lambda: "NET-DONE" in console(cloud, host, server_id), 180, message=f"{name} probed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its console ends:\n{console(cloud, host, server_id)[-3000:]}") from None


@contextlib.contextmanager
def deleted_afterwards(cloud, user: ApiUser, server_ids: list[str]):
    """Delete the servers after the block and wait until they are gone. When the block failed, they are
    deleted without waiting, and its failure is the one reported."""
    try:
        yield
    except BaseException:
        for server_id in server_ids:
            user.delete(f"/servers/{server_id}")
        raise
    for server_id in server_ids:
        user.delete(f"/servers/{server_id}")
    for server_id in server_ids:
        try:
            wait_until(lambda s=server_id: user.get(f"/servers/{s}").status_code == 404, 90, message="deleted")
        except AssertionError:
            raise AssertionError(f"server {server_id} not deleted: {user.server(server_id)}\n{cloud.logs()}") from None


def built(cloud, user: ApiUser, name: str, server_id: str) -> None:
    """Until the server is ACTIVE; its fault first, then the cloud's logs, when it went to ERROR."""
    wait_until(lambda: user.server(server_id)["status"] in ("ACTIVE", "ERROR"), 240, message=f"{name} built")
    server = user.server(server_id)
    assert server["status"] == "ACTIVE", f"{name}: {server.get('fault')}\n{cloud.logs()}"


def boot(user: ApiUser, image, name: str, host: str, networks: list, user_data: str) -> str:
    body = {"server": {"name": name, "imageRef": str(image.id), "flavorRef": "1", "networks": networks,
                       "host": host, "user_data": user_data}}  # fmt: skip
    response = user.post("/servers", body, headers=HOST_FIELD)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def test_guests_on_networks_across_hosts(cloud, live_server, tiny_flavor, demo_image):
    first, second = list(TWO_HOSTS)
    a = Networking(live_server.url, role=Role.ADMIN)  # an admin names hosts; its project's network is private
    b = Networking(live_server.url, role=Role.ADMIN)
    image = public_image(project=a.ctx.project, path=demo_image, name="demo")

    a_net = a.made("/networks", {"network": {"name": "a-net"}})
    a.made("/subnets", {"subnet": {"network_id": a_net["id"], "cidr": GUEST_CIDR, "ip_version": 4}})
    b_net = b.made("/networks", {"network": {"name": "b-net"}})
    b.made("/subnets", {"subnet": {"network_id": b_net["id"], "cidr": GUEST_CIDR, "ip_version": 4}})
    public = a.made(
        "/networks",
        {"network": {"name": "public", "shared": True, "provider:network_type": "flat",
                     "provider:physical_network": "public"}},
    )  # fmt: skip
    a.made(
        "/subnets",
        {"subnet": {"network_id": public["id"], "cidr": PUBLIC_CIDR, "ip_version": 4, "gateway_ip": OUTSIDE_ADDRESS,
                    "allocation_pools": [{"start": "10.252.100.10", "end": "10.252.100.50"}]}},
    )  # fmt: skip

    # The machines beyond public, and the first hypervisor itself, each serve a page.
    cloud.network.serve(OUTSIDE, OUTSIDE_ADDRESS, 80, "page-of-outside")
    cloud.network.serve(cloud.network.namespaces[first], HOST1_PUBLIC, 80, "page-of-the-hypervisor")
    in_ns(cloud.network.namespaces[first], "ip", "addr", "add", f"{HOST1_PUBLIC}/24", "dev", "brpub", check=True)

    servers = {
        "a1": (first, boot(a, image, "a1", first, [{"uuid": a_net["id"], "fixed_ip": "10.60.0.11"}],
                           probe(["10.60.0.12"], 40))),
        "a2": (second, boot(a, image, "a2", second, [{"uuid": a_net["id"], "fixed_ip": "10.60.0.12"}],
                            probe(["10.60.0.11"], 40))),
        "b1": (first, boot(b, image, "b1", first, [{"uuid": b_net["id"], "fixed_ip": "10.60.0.13"}],
                           probe(["10.60.0.11", "10.60.0.12"], 8))),
        "p1": (first, boot(a, image, "p1", first, [{"uuid": public["id"], "fixed_ip": "10.252.100.20"}],
                           probe([OUTSIDE_ADDRESS, HOST1_PUBLIC], 8))),
    }  # fmt: skip
    with deleted_afterwards(cloud, a, [server_id for _host, server_id in servers.values()]):
        for name, (_host, server_id) in servers.items():
            built(cloud, a, name, server_id)
        for name, (host, server_id) in servers.items():
            probed(cloud, name, host, server_id)
        out = {name: console(cloud, host, server_id) for name, (host, server_id) in servers.items()}

        # DHCP gave each guest its address, and the MTU the overlay leaves (the flat network: the whole 1500).
        for name, address, mtu in (("a1", "10.60.0.11", 1450), ("a2", "10.60.0.12", 1450),
                                   ("b1", "10.60.0.13", 1450), ("p1", "10.252.100.20", 1500)):  # fmt: skip
            assert f"NET-ADDR {address} mtu {mtu}" in out[name], out[name][-2000:]
        # Each guest reads its own metadata from 169.254.169.254, served through its host.
        for name, (_host, server_id) in servers.items():
            assert f"NET-META [{server_id}]" in out[name], out[name][-2000:]
        # A's guests reach each other across the hosts.
        assert "NET-PING 10.60.0.12 ok" in out["a1"] and "NET-FETCH 10.60.0.12 [page-of-a2]" in out["a1"]
        assert "NET-PING 10.60.0.11 ok" in out["a2"] and "NET-FETCH 10.60.0.11 [page-of-a1]" in out["a2"]
        # B's guest, on the same addresses in its own network, reaches neither.
        for peer in ("10.60.0.11", "10.60.0.12"):
            assert f"NET-PING {peer} fail" in out["b1"] and f"NET-FETCH {peer} []" in out["b1"]
        # The guest on public reaches the machines beyond, and nothing of its hypervisor.
        assert f"NET-FETCH {OUTSIDE_ADDRESS} [page-of-outside]" in out["p1"]
        assert f"NET-PING {HOST1_PUBLIC} fail" in out["p1"] and f"NET-FETCH {HOST1_PUBLIC} []" in out["p1"]

        # Its project's default group admits only the group's members: the machines beyond reach nothing of
        # it. A group "web" with ICMP and TCP 80 from anywhere opens exactly those.
        def from_outside() -> str:
            url = "http://10.252.100.20/"
            return in_ns(OUTSIDE, "timeout", "4", "busybox", "wget", "-q", "-O", "-", url).stdout.strip()

        assert from_outside() == ""
        assert in_ns(OUTSIDE, "ping", "-c", "1", "-W", "2", "10.252.100.20").returncode != 0
        web = a.made("/security-groups", {"security_group": {"name": "web"}})
        for extra in ({"protocol": "icmp"}, {"protocol": "tcp", "port_range_min": 80, "port_range_max": 80}):
            rule = {"security_group_id": web["id"], "direction": "ingress", "remote_ip_prefix": "0.0.0.0/0", **extra}
            a.made("/security-group-rules", {"security_group_rule": rule})
        p1_port = Port.objects.get(device_id=servers["p1"][1])
        default = [str(g.pk) for g in p1_port.security_groups.all()]
        updated = a.net("PUT", f"/ports/{p1_port.pk}", {"port": {"security_groups": [*default, web["id"]]}})
        assert updated.status_code == 200, updated.text
        wait_until(lambda: from_outside() == "page-of-p1", 30, message="web's rules enforced on p1's host")
        assert in_ns(OUTSIDE, "ping", "-c", "1", "-W", "2", "10.252.100.20").returncode == 0
        # ... and its hypervisor reaches it (the host's own traffic is not a guest's to filter).
        assert in_ns(cloud.network.namespaces[first], "ping", "-c", "1", "-W", "2", "10.252.100.20").returncode == 0

        # A live migration takes p1 to the other host: its port follows it, and the machines beyond reach it
        # there, its page still served by the same running guest. Its port is down meanwhile, so that QEMU's
        # own announcement at the switch-over finds no bridge; once the port is up, the guest announces
        # itself again, and the segment beyond, which knew it at the host it left, sends its frames there.
        p1_id = servers["p1"][1]
        p1_port = Port.objects.get(device_id=p1_id)
        assert cloud.network.public_leg_of(p1_port.mac_address) == "pub-h1"

        def set_up(up: bool) -> None:
            response = a.net("PUT", f"/ports/{p1_port.pk}", {"port": {"admin_state_up": up}})
            assert response.status_code == 200, response.text

        set_up(False)
        wait_until(lambda: Port.objects.get(pk=p1_port.pk).status == "DOWN", 30, message="p1's port down")
        moved = a.post(
            f"/servers/{p1_id}/action",
            {"os-migrateLive": {"host": second, "block_migration": "auto"}},
            headers={"OpenStack-API-Version": "compute 2.25"},
        )
        assert moved.status_code == 202, moved.text

        def arrived() -> bool:
            server = a.server(p1_id)
            assert server["status"] != "ERROR", server.get("fault")
            return server["status"] == "ACTIVE" and server.get("OS-EXT-STS:task_state") is None

        wait_until(arrived, 180, message="p1 live-migrated")
        assert Instance.objects.get(uuid=p1_id).host.name == second
        wait_until(lambda: Port.objects.filter(pk=p1_port.pk, host__name=second).exists(), 30, message="port moved")
        time.sleep(2)  # QEMU's announcement (1.25 s from the switch-over) is over
        assert cloud.network.public_leg_of(p1_port.mac_address) == "pub-h1"
        set_up(True)
        wait_until(lambda: Port.objects.get(pk=p1_port.pk).status == "ACTIVE", 30, message="p1's port plugged")
        assert in_ns(cloud.network.namespaces[second], "ip", "-o", "link", "show", p1_port.device_name).returncode == 0
        assert in_ns(cloud.network.namespaces[first], "ip", "-o", "link", "show", p1_port.device_name).returncode != 0
        wait_until(lambda: cloud.network.public_leg_of(p1_port.mac_address) == "pub-h2", 10,
                   message="p1 announced at its new host")  # fmt: skip
        fetched = in_ns(OUTSIDE, "timeout", "6", "busybox", "wget", "-q", "-O", "-", "http://10.252.100.20/")
        assert fetched.stdout.strip() == "page-of-p1", fetched
        servers["p1"] = (second, p1_id)

        # Every port is ACTIVE: plugged by its host.
        for _name, (_host, server_id) in servers.items():
            for port in Port.objects.filter(device_id=server_id):
                assert port.status == "ACTIVE", port

        # os-interface: a second NIC on a running guest, hot-plugged and plugged into its bridge.
        a1_id = servers["a1"][1]
        attached = a.post(f"/servers/{a1_id}/os-interface", {"interfaceAttachment": {"net_id": b_net["id"]}})
        assert attached.status_code == 200, attached.text
        new_port = attached.json()["interfaceAttachment"]["port_id"]
        wait_until(lambda: Port.objects.get(pk=new_port).status == "ACTIVE", 30, message="the new NIC plugged")
        mac = Port.objects.get(pk=new_port).mac_address
        assert f"<mac address='{mac}'/>" in cloud.libvirt_hosts.domain_xml(first, a1_id)

        # A port deleted while its guest runs is unplugged from its bridge.
        a2_port = Port.objects.get(device_id=servers["a2"][1])
        deleted = a.net("DELETE", f"/ports/{a2_port.pk}")
        assert deleted.status_code == 204, deleted.text
        ns2 = cloud.network.namespaces[second]
        wait_until(lambda: "master" not in in_ns(ns2, "ip", "-o", "link", "show", a2_port.device_name).stdout,
                   30, message="the deleted port unplugged")  # fmt: skip

        # A bridge deleted behind the first host's back is rebuilt by the host itself, and reported.
        ns1 = cloud.network.namespaces[first]
        bridge = bridge_name(a_net["id"])
        assert in_ns(ns1, "ip", "link", "del", bridge).returncode == 0
        wait_until(lambda: in_ns(ns1, "ip", "link", "show", bridge).returncode == 0, 30, message="bridge back")
        wait_until(
            lambda: any(re.search(bridge, d) for d in HostNetworkState.objects.get(host__name=first).drift),
            30,
            message="the host's report of what it mended",
        )
        # ... and its guest is on it again.
        a1_port = Port.objects.filter(device_id=a1_id, network_id=a_net["id"]).get()
        wait_until(lambda: f"master {bridge}" in in_ns(ns1, "ip", "-o", "link", "show", a1_port.device_name).stdout,
                   30, message="the guest plugged again")  # fmt: skip
    # The ports the cloud made went with their servers; nothing is left plugged on the hosts.
    assert not Port.objects.filter(device_owner__startswith="compute:").exists()
    a_bridge = bridge_name(a_net["id"])
    wait_until(lambda: in_ns(cloud.network.namespaces[first], "ip", "link", "show", a_bridge).returncode != 0, 30,
               message="the network gone from the host")  # fmt: skip


# A routed guest's user data: wait for its lease, serve a page, ask the machine beyond who it sees, and
# try the guest behind the router's other subnet.
ROUTED_PROBE = """#!/bin/sh
for i in $(seq 1 60); do ip -4 addr show eth0 | grep -q 'inet ' && break; sleep 1; done
mkdir -p /www && echo "page-of-$(hostname)" > /www/index.html && httpd -p 80 -h /www
seen=
for i in $(seq 1 30); do seen=$(timeout 4 wget -q -O - "http://{outside}:8081/" 2>/dev/null) && break; sleep 1; done
echo "NET-SEEN-AS [$seen]"
page=
for i in $(seq 1 30); do page=$(timeout 4 wget -q -O - "http://{peer}/" 2>/dev/null) && break; sleep 1; done
echo "NET-FETCH {peer} [$page]"
echo "NET-DONE"
"""


def test_routers_and_floating_ips_across_hosts(cloud, live_server, tiny_flavor, demo_image):
    """Two subnets behind one router with its gateway on public: each guest reaches the other subnet and
    the machines beyond, translated to the router's address; a floating IP makes its guest reachable from
    beyond (once a group admits it) and its traffic leave as that address; re-associated, it leads to the
    other guest. The router runs on one host, the guests on both."""
    first, second = list(TWO_HOSTS)
    # The database was emptied after the test before: a router finds a host once the hosts have said
    # again where their tunnels end and which physical networks they carry.
    for name in TWO_HOSTS:
        wait_for_host(name)
    a = Networking(live_server.url, role=Role.ADMIN)
    image = public_image(project=a.ctx.project, path=demo_image, name="demo")
    public = a.made(
        "/networks",
        {"network": {"name": "public", "router:external": True, "provider:network_type": "flat",
                     "provider:physical_network": "public"}},
    )  # fmt: skip
    a.made(
        "/subnets",
        {"subnet": {"network_id": public["id"], "cidr": PUBLIC_CIDR, "ip_version": 4, "gateway_ip": OUTSIDE_ADDRESS,
                    "allocation_pools": [{"start": "10.252.100.60", "end": "10.252.100.90"}]}},
    )  # fmt: skip
    nets = {}
    for name, cidr in (("left", "10.61.0.0/24"), ("right", "10.62.0.0/24")):
        net = a.made("/networks", {"network": {"name": name}})
        sub = a.made("/subnets", {"subnet": {"network_id": net["id"], "cidr": cidr, "ip_version": 4}})
        nets[name] = (net, sub)
    router = a.made("/routers", {"router": {"name": "r1", "external_gateway_info": {"network_id": public["id"]}}})
    for _net, sub in nets.values():
        added = a.net("PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
        assert added.status_code == 200, added.text
    router = a.net("GET", f"/routers/{router['id']}").json()["router"]
    assert Router.objects.get(pk=router["id"]).host is not None
    gateway_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    cloud.network.serve(OUTSIDE, OUTSIDE_ADDRESS, 8081, "{client}")

    def routed(peer: str) -> str:
        return base64.b64encode(ROUTED_PROBE.format(outside=OUTSIDE_ADDRESS, peer=peer).encode()).decode()

    left_id = boot(a, image, "left1", second, [{"uuid": nets["left"][0]["id"], "fixed_ip": "10.61.0.11"}],
                   routed("10.62.0.12"))  # fmt: skip
    right_id = boot(a, image, "right1", first, [{"uuid": nets["right"][0]["id"], "fixed_ip": "10.62.0.12"}],
                    routed("10.61.0.11"))  # fmt: skip
    servers = {"left1": (second, left_id), "right1": (first, right_id)}
    left_port = a.net("GET", f"/ports?device_id={left_id}").json()["ports"][0]
    right_port = a.net("GET", f"/ports?device_id={right_id}").json()["ports"][0]
    # The floating IP is there before the guest boots: its first connection out leaves as that address.
    fip = a.made("/floatingips", {"floatingip": {"floating_network_id": public["id"], "port_id": left_port["id"]}})
    address = fip["floating_ip_address"]
    with deleted_afterwards(cloud, a, [left_id, right_id]):
        for name, (host, server_id) in servers.items():
            built(cloud, a, name, server_id)
            probed(cloud, name, host, server_id)
        left, right = console(cloud, second, left_id), console(cloud, first, right_id)
        # Out through the router: the guest with the floating IP as that address, the other as the router's.
        assert f"NET-SEEN-AS [{address}]" in left, left[-2000:]
        assert f"NET-SEEN-AS [{gateway_ip}]" in right, right[-2000:]
        # The two subnets reach each other through it.
        assert "NET-FETCH 10.62.0.12 [page-of-right1]" in left, left[-2000:]
        assert "NET-FETCH 10.61.0.11 [page-of-left1]" in right, right[-2000:]

        # The router's ports are plugged on the host running it; the server shows its floating address.
        def router_ports() -> list:
            return a.net("GET", f"/ports?device_id={router['id']}").json()["ports"]

        wait_until(lambda: {p["status"] for p in router_ports()} == {"ACTIVE"}, 30, message="router ports ACTIVE")
        assert len(router_ports()) == 3
        shown = a.server(left_id)["addresses"]["left"]
        assert {"addr": address, "version": 4, "OS-EXT-IPS:type": "floating",
                "OS-EXT-IPS-MAC:mac_addr": left_port["mac_address"]} in shown, shown  # fmt: skip

        def from_outside(url: str) -> str:
            return in_ns(OUTSIDE, "timeout", "4", "busybox", "wget", "-q", "-O", "-", url).stdout.strip()

        # The default group keeps the machines beyond out, floating IP or not; "web" lets port 80 in.
        assert from_outside(f"http://{address}/") == ""
        web = a.made("/security-groups", {"security_group": {"name": "web"}})
        rule = {"security_group_id": web["id"], "direction": "ingress", "protocol": "tcp", "port_range_min": 80,
                "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"}  # fmt: skip
        a.made("/security-group-rules", {"security_group_rule": rule})
        for server_id in (left_id, right_id):
            added = a.post(f"/servers/{server_id}/action", {"addSecurityGroup": {"name": "web"}})
            assert added.status_code == 202, added.text
        wait_until(lambda: from_outside(f"http://{address}/") == "page-of-left1", 30, message="the floating IP in")
        # A fixed address behind the router is not reachable from beyond.
        assert from_outside("http://10.62.0.12/") == ""
        # Re-associated, the address leads to the other guest, on the other host.
        moved = a.net("PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": right_port["id"]}})
        assert moved.status_code == 200, moved.text
        wait_until(lambda: from_outside(f"http://{address}/") == "page-of-right1", 30, message="re-associated")
        assert all(a["OS-EXT-IPS:type"] == "fixed" for a in a.server(left_id)["addresses"]["left"])
    # The floating IP stays the project's, associated to nothing; the router's namespace goes with it.
    assert a.net("GET", f"/floatingips/{fip['id']}").json()["floatingip"]["port_id"] is None
    assert a.net("DELETE", f"/floatingips/{fip['id']}").status_code == 204
    for _net, sub in nets.values():
        removed = a.net("PUT", f"/routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]})
        assert removed.status_code == 200, removed.text
    assert a.net("PUT", f"/routers/{router['id']}", {"router": {"external_gateway_info": {}}}).status_code == 200
    assert a.net("DELETE", f"/routers/{router['id']}").status_code == 204

    def router_namespaces() -> list[str]:
        return [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith("ntest-") and "-qrouter-" in n]

    wait_until(lambda: router_namespaces() == [], 30, message="the router gone from its host")
