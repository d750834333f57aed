"""The whole loop: the control plane's plan for each host (``portal.services.network_sync``), two real
compute workers whose Linux data planes live in namespaces of their own, and the conductor turning their
reports into port status. Guests on the two hosts get their leases and reach each other; a deleted
port's guest is cut off and the host says so."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from django.db import transaction

from portal.models import ComputeHost, IPAllocation, Network, Port, Subnet
from portal.services import network_sync
from tests.integration.dataplane.lab import Lab, sh
from tests.processes import Cluster, purge_broker, wait_for_host, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nftables"),
]

HOSTS = ("dpt-cp-1", "dpt-cp-2")


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("control-plane-dataplane")
    lab = Lab(root)
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("cluster"))
    try:
        lab.start(2)
        cluster.start_conductor()
        for name, host in zip(HOSTS, lab.hosts, strict=True):
            host.name = name
            cluster.start_compute(
                name,
                COMPUTE_DATAPLANE="linux",
                COMPUTE_NETWORK_NAMESPACE=host.namespace,
                COMPUTE_TUNNEL_ADDRESS=host.tunnel_address,
                COMPUTE_NETWORK_CHECK_INTERVAL="1",
            )
        yield lab, cluster
    finally:
        with django_db_blocker.unblock():
            cluster.stop()
        for host in lab.hosts:
            for name in sh("ip", "netns", "list").stdout.split("\n"):
                name = name.split(" ")[0]
                if name.startswith(f"{host.namespace}-qdhcp-"):
                    for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
                        os.kill(int(pid), 15)
            shutil.rmtree(f"/run/compute-dataplane/{host.namespace}", ignore_errors=True)
        lab.stop()


def port(network, subnet, ip, *, host=None, owner="compute:nova", device_id=""):
    made = Port.objects.create(
        network=network,
        mac_address=f"fa:16:3e:51:{ip.split('.')[-2]:0>2}:{int(ip.split('.')[-1]):02x}"[:17],
        device_owner=owner,
        device_id=device_id or str(uuid.uuid4()),
        host=host,
        vif_type="tap" if host else "unbound",
        # In no security group: with port security such a port would take nothing (as in Neutron); this
        # test is about the plans connecting guests, so the ports are open.
        port_security_enabled=False,
    )
    IPAllocation.objects.create(port=made, subnet=subnet, ip_address=ip)
    return made


def test_plans_from_the_control_plane_connect_guests_on_two_hosts(world, transactional_db):
    lab, _cluster = world
    for name in HOSTS:
        wait_for_host(name)
    wait_until(
        lambda: ComputeHost.objects.filter(name__in=HOSTS).exclude(tunnel_address="").count() == 2,
        30,
        message="the hosts' tunnel addresses",
    )
    h1, h2 = (ComputeHost.objects.get(name=name) for name in HOSTS)
    network = Network.objects.create(name="net", network_type=Network.Type.VXLAN, segmentation_id=5001, mtu=1450)
    subnet = Subnet.objects.create(network=network, cidr="10.251.80.0/24", gateway_ip="10.251.80.1")
    with transaction.atomic():
        port(network, subnet, "10.251.80.2", owner=Port.OWNER_DHCP, device_id=f"dhcp-{network.pk}")
        p1 = port(network, subnet, "10.251.80.11", host=h1)
        p2 = port(network, subnet, "10.251.80.12", host=h2)
        network_sync.network_changed(network.pk)

    g1 = lab.add_guest(lab.hosts[0], network_sync._port_plan(p1), "cp1")
    g2 = lab.add_guest(lab.hosts[1], network_sync._port_plan(p2), "cp2")
    # The hosts plug the taps at their next check, and say so: the ports become ACTIVE.
    wait_until(
        lambda: Port.objects.filter(pk__in=[p1.pk, p2.pk], status=Port.Status.ACTIVE).count() == 2,
        30,
        message="both ports ACTIVE",
    )
    assert g1.dhcp()["ip"] == "10.251.80.11" and g2.dhcp()["ip"] == "10.251.80.12"
    assert g1.ping("10.251.80.12")

    # The port on host 2 is deleted while its guest runs: host 2 unplugs it, host 1 forgets its MAC.
    with transaction.atomic():
        p2.delete()
        network_sync.hosts_changed([h1.pk, h2.pk])
    wait_until(lambda: not g1.ping("10.251.80.12"), 30, message="the deleted port's guest cut off")
    wait_until(
        lambda: "master" not in sh("ip", "-n", lab.hosts[1].namespace, "-o", "link", "show", g2.port.device).stdout,
        10,
        message="the tap unplugged",
    )
    assert Port.objects.get(pk=p1.pk).status == Port.Status.ACTIVE
