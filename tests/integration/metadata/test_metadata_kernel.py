"""The metadata service end to end on real kernel networking: guests (namespaces on a data plane's
network) fetch http://169.254.169.254/… through their network's metadata proxy, the host's metadata
agent (signing as the host) and the live control plane, and each gets its own metadata only.

Namespaces ``mdt-…``, addresses inside 10.247.0.0/16 (unreachable in the root namespace meanwhile).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from compute_tasks import signing
from compute_tasks.dataplane.linux import LinuxDataplane
from compute_tasks.metadata_agent import MetadataAgent
from compute_tasks.rpc import HostNetworkPlan, NetworkPlan, SubnetPlan
from portal.models import IPAllocation, Network, Port, Subnet
from portal.services import host_trust
from tests.factories import InstanceFactory
from tests.integration.dataplane.lab import Guest, Host, in_ns, new_port, sh, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]

RANGE = "10.247.0.0/16"
HOST_NS = "mdt-h1"
CIDR = "10.247.10.0/24"
DHCP_IP = "10.247.10.2"
METADATA = "http://169.254.169.254"
DEMO_UDHCPC = Path(__file__).resolve().parents[3] / "scripts" / "demo-image" / "udhcpc.script"


def _cleanup() -> None:
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split(" ")[0]
        if name.startswith("mdt-"):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", name, check=False)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


@pytest.fixture
def lab(tmp_path):
    _cleanup()
    route = sh("ip", "route", "add", "unreachable", RANGE, check=False).returncode == 0
    sh("ip", "netns", "add", HOST_NS)
    sh("ip", "-n", HOST_NS, "link", "set", "lo", "up")
    sh("ip", "-n", HOST_NS, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1")  # no dummy module here
    sh("ip", "-n", HOST_NS, "addr", "add", "10.247.0.1/24", "dev", "ul0")
    sh("ip", "-n", HOST_NS, "link", "set", "ul0", "up")
    host = Host(name="mdt-host1", namespace=HOST_NS, tunnel_address="10.247.0.1")
    # dnsmasq, as nobody, reads its files under /run/compute-dataplane/<namespace> (the default run directory).
    plane = LinuxDataplane(host.name, tmp_path / "state", tunnel_address=host.tunnel_address, namespace=HOST_NS)
    guests: list[Guest] = []
    try:
        yield host, plane, guests, tmp_path
    finally:
        for network_id in list(plane.memory.get("namespaces", {}).values()):
            plane.metadata.stop(network_id)
            plane.dhcp.stop(network_id)
        _cleanup()
        shutil.rmtree(plane.dhcp.run_dir, ignore_errors=True)
        if route:
            sh("ip", "route", "del", "unreachable", RANGE, check=False)


def add_guest(host: Host, port, name: str, root) -> Guest:
    ns = f"mdt-g-{name}"
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", host.namespace, "link", "add", port.device, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "-n", ns, "link", "set", "eth0", "address", port.mac, "up")
    return Guest(namespace=ns, port=port, host=host, lease_file=root / f"{ns}.lease")


def routes_from(lease: dict[str, str]) -> list[tuple[str, str]]:
    words = lease.get("staticroutes", "").split()
    return list(zip(words[::2], words[1::2], strict=True))


def make_cloud(host_name: str, public_key: str | None = None):
    """The control plane's rows (a host's two guests on one network) and that host's plan for them."""
    if public_key is None:
        hv, key = host_trust.host_enroll(name=host_name)
    else:
        hv, key = host_trust.host_enroll_many(names=[host_name], public_keys={host_name: public_key})[host_name], None
    network = Network.objects.create(name="mdt-net", segmentation_id=1701)
    subnet = Subnet.objects.create(network=network, cidr=CIDR, gateway_ip="10.247.10.1")
    instances = {
        "a1": InstanceFactory(name="a1", host=hv, user_data=base64.b64encode(b"#!/bin/sh\necho a1\n").decode()),
        "a2": InstanceFactory(name="a2", host=hv),
    }
    ports = {}
    for index, (name, address) in enumerate((("a1", "10.247.10.11"), ("a2", "10.247.10.12")), start=1):
        plan_port = new_port(index, address, hostname=name, instance=str(instances[name].uuid))
        row = Port.objects.create(
            id=plan_port.port_id, network=network, mac_address=plan_port.mac, device_id=str(instances[name].uuid),
            device_owner="compute:nova", host=hv,
        )  # fmt: skip
        IPAllocation.objects.create(port=row, subnet=subnet, ip_address=address)
        ports[name] = plan_port
    plan = HostNetworkPlan(
        host=host_name,
        generation=1,
        networks=[
            NetworkPlan(
                network_id=str(network.id),
                network_type="vxlan",
                mtu=1450,
                segmentation_id=1701,
                subnets=[SubnetPlan(subnet_id=str(subnet.id), cidr=CIDR, gateway_ip="10.247.10.1", dns_nameservers=[])],
                ports=list(ports.values()),
                dhcp_mac="fa:16:3e:dd:00:01",
                dhcp_ips=[DHCP_IP],
                leases=list(ports.values()),
            )
        ],
    )
    return key, instances, ports, plan


def test_guests_read_their_own_metadata_through_proxy_agent_and_control_plane(lab, live_server, transactional_db):
    host, plane, guests, root = lab
    key, instances, ports, plan = make_cloud(host.name)
    for name, port in ports.items():
        guests.append(add_guest(host, port, name, root))
    report = plane.apply(plan)
    assert report.error == "", report
    agent = MetadataAgent(
        plane.metadata_socket, live_server.url + "/internal/metadata", lambda: signing.Signer(host.name, key),
        group=plane.dhcp.group,
    )  # fmt: skip
    agent.start()
    try:
        a1, a2 = guests
        # a2's lease as the lab's client reports it: DHCP routes the metadata address through the network's
        # DHCP port (a guest with no router reaches it too), next to the default route.
        lease = a2.dhcp()
        assert lease.get("ip") == "10.247.10.12", lease
        routes = routes_from(lease)
        assert ("169.254.169.254/32", DHCP_IP) in routes and ("0.0.0.0/0", "10.247.10.1") in routes, lease
        a2.run("ip", "route", "add", "169.254.169.254/32", "via", DHCP_IP)
        # a1 runs the demo image's own DHCP client script, which applies them (its resolv.conf is the
        # namespace's own: ip netns exec mounts /etc/netns/<namespace>/resolv.conf over /etc/resolv.conf).
        etc = Path("/etc/netns") / a1.namespace
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("")
        script = root / "udhcpc.script"  # the image installs it executable
        shutil.copyfile(DEMO_UDHCPC, script)
        script.chmod(0o755)
        done = a1.run(
            "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "6", "-T", "1", "-O", "mtu",
            "-O", "staticroutes", "-s", str(script), timeout=20,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        table = a1.run("ip", "-4", "route").stdout
        assert "169.254.169.254 via 10.247.10.2" in table and "default via 10.247.10.1" in table, table
        assert (etc / "resolv.conf").read_text() == f"nameserver {DHCP_IP}\n"

        meta = json.loads(wait_for(lambda: a1.fetch(f"{METADATA}/openstack/latest/meta_data.json")))
        assert (meta["uuid"], meta["name"]) == (str(instances["a1"].uuid), "a1")
        assert a1.fetch(f"{METADATA}/openstack/latest/user_data") == "#!/bin/sh\necho a1\n"
        assert a1.fetch(f"{METADATA}/latest/meta-data/local-ipv4") == "10.247.10.11"
        meta2 = json.loads(a2.fetch(f"{METADATA}/openstack/latest/meta_data.json"))
        assert (meta2["uuid"], meta2["name"]) == (str(instances["a2"].uuid), "a2")
        assert a2.fetch(f"{METADATA}/latest/meta-data/instance-id") == str(instances["a2"].uuid)
        assert a2.fetch(f"{METADATA}/openstack/latest/user_data") == ""  # a2 has none: 404

        # a1 taking a2's address (and announcing it) gets nothing: the anti-spoofing rules drop what it
        # sends from it, its ARP too.
        a1.run("ip", "addr", "flush", "dev", "eth0")
        a1.run("ip", "addr", "add", "10.247.10.12/24", "dev", "eth0")
        a1.run("ip", "route", "add", "169.254.169.254/32", "via", DHCP_IP)
        a1.run("busybox", "arping", "-U", "-c", "2", "-I", "eth0", "10.247.10.12")
        assert a1.fetch(f"{METADATA}/openstack/latest/meta_data.json") == ""

        # A proxy that died is started again by the next check, and serves again.
        network_id = plan.networks[0].network_id
        pid = plane.metadata.pid(network_id)
        assert pid is not None and "169.254.169.254:80 " in in_ns(f"{HOST_NS}-qdhcp-{network_id}", "ss", "-ltn").stdout
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nUid:\t0\t" not in status  # it dropped root once it listened
        os.kill(pid, 9)
        drift = plane.check()
        assert drift is not None and any("metadata proxy" in line for line in drift.drift), drift
        assert a2.fetch(f"{METADATA}/latest/meta-data/instance-id") == str(instances["a2"].uuid)
    finally:
        agent.stop()
