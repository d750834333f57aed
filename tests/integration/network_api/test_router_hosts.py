"""Where routers run: a host that can carry all their networks, the least busy one; the plan that host
is sent; and the move to another host when it dies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from portal.models import ComputeHost, FloatingIP, Network, Port, Router
from portal.services import network_sync, router_hosts
from portal.services.compute_hosts import compute_host_delete, compute_host_update
from portal.services.ports import port_create

from .helpers import network, subnet

pytestmark = pytest.mark.integration


def _host(name: str, *, tunnel: str = "", physnets=(), up: bool = True, trusted: bool = True) -> ComputeHost:
    beat = timezone.now() if up else timezone.now() - timedelta(hours=1)
    return ComputeHost.objects.create(
        name=name,
        last_heartbeat=beat,
        tunnel_address=tunnel,
        physical_networks=list(physnets),
        runs_routers=trusted,
    )


@pytest.fixture
def topology(member, admin):
    """A tenant VXLAN network behind a router with a gateway on the flat external network ``public``."""
    public = network(
        admin,
        name="public",
        **{"router:external": True, "provider:network_type": "flat", "provider:physical_network": "physnet-x"},
    )
    ext_subnet = subnet(admin, public["id"], "10.250.200.0/24", gateway_ip="10.250.200.1")
    tenant = network(member, name="private")
    tenant_subnet = subnet(member, tenant["id"], "10.250.1.0/24")
    router = Router.objects.create(project=member.project, name="r1", external_network_id=public["id"])
    inside = port_create(
        project=member.project,
        user_is_admin=True,
        network=Network.objects.get(pk=tenant["id"]),
        fixed_ips=[{"subnet_id": tenant_subnet["id"], "ip_address": "10.250.1.254"}],
        device_id=str(router.pk),
        device_owner=Port.OWNER_ROUTER_INTERFACE,
        port_security_enabled=False,
    )
    outside = port_create(
        project=member.project,
        user_is_admin=True,
        network=Network.objects.get(pk=public["id"]),
        fixed_ips=[{"subnet_id": ext_subnet["id"]}],
        device_id=str(router.pk),
        device_owner=Port.OWNER_ROUTER_GATEWAY,
        port_security_enabled=False,
    )
    return {"public": public, "tenant": tenant, "router": router, "inside": inside, "outside": outside}


def test_a_router_runs_on_the_least_busy_host_that_carries_its_networks(topology):
    physnet = topology["public"]["provider:physical_network"]
    _host("no-tunnel", physnets=[physnet])
    _host("no-physnet", tunnel="10.250.9.1")
    _host("down", tunnel="10.250.9.2", physnets=[physnet], up=False)
    # A host that claims everything a router needs, but that no operator trusted with routers.
    _host("a-untrusted", tunnel="10.250.9.10", physnets=[physnet], trusted=False)  # first by name
    busy = _host("busy", tunnel="10.250.9.3", physnets=[physnet])
    Router.objects.create(project=topology["router"].project, host=busy)
    free = _host("free", tunnel="10.250.9.4", physnets=[physnet])
    router = topology["router"]
    assert router_hosts.place(router) == free
    assert set(router_hosts.router_ports(router).values_list("host_id", flat=True)) == {free.pk}

    (plan,) = network_sync.plan_for(free).routers
    assert plan.router_id == str(router.pk) and plan.snat
    (leg,) = plan.interfaces
    assert (leg.port_id, leg.addresses, leg.mtu) == (str(topology["inside"].pk), ["10.250.1.254/24"], 1450)
    assert plan.gateway.port_id == str(topology["outside"].pk)
    assert plan.gateway.addresses[0].endswith("/24") and plan.gateway_nexthop == "10.250.200.1"
    # The host carries both networks; the router's ports are never plugged as guests' taps.
    networks = {n.network_id: n for n in network_sync.plan_for(free).networks}
    assert set(networks) == {topology["public"]["id"], topology["tenant"]["id"]}
    assert all(
        p.port_id not in (str(topology["inside"].pk), str(topology["outside"].pk))
        for n in networks.values()
        for p in n.ports
    )
    assert network_sync.plan_for(busy).routers == []


def test_a_guest_host_pins_the_router_mac_to_the_router_host(member, topology):
    physnet = topology["public"]["provider:physical_network"]
    gateway_host = _host("gw", tunnel="10.250.9.5", physnets=[physnet])
    guest_host = _host("hv", tunnel="10.250.9.6")
    router_hosts.place(topology["router"])
    port_create(
        project=member.project,
        user_is_admin=True,
        network=topology["inside"].network,
        host=guest_host,
        device_id="a-guest",
        device_owner="compute:nova",
    )
    (tenant,) = network_sync.plan_for(guest_host).networks
    assert ("10.250.9.5", topology["inside"].mac_address) in {(n.remote, n.mac) for n in tenant.neighbours}
    assert tenant.remotes == ["10.250.9.5"]
    assert network_sync.plan_for(guest_host).routers == []
    gateway_tenant = next(n for n in network_sync.plan_for(gateway_host).networks if n.network_id == tenant.network_id)
    assert gateway_tenant.remotes == ["10.250.9.6"]


def test_floating_ips_go_to_the_router_host(member, topology):
    physnet = topology["public"]["provider:physical_network"]
    host = _host("gw", tunnel="10.250.9.7", physnets=[physnet])
    router = topology["router"]
    router_hosts.place(router)
    fip_port = port_create(
        project=member.project,
        user_is_admin=True,
        network=topology["outside"].network,
        device_owner=Port.OWNER_FLOATING_IP,
    )
    guest = port_create(project=member.project, user_is_admin=False, network=topology["inside"].network)
    fixed = guest.fixed_ips.get().ip_address
    address = fip_port.fixed_ips.get().ip_address
    FloatingIP.objects.create(
        project=member.project,
        floating_network=topology["outside"].network,
        floating_port=fip_port,
        floating_ip_address=address,
        port=guest,
        fixed_ip_address=fixed,
        router=router,
    )
    (plan,) = network_sync.plan_for(host).routers
    assert [(f.floating_ip, f.fixed_ip) for f in plan.floating] == [(address, fixed)]
    # A router without its gateway translates nothing.
    Port.objects.filter(pk=topology["outside"].pk).delete()
    assert network_sync.plan_for(host).routers[0].floating == []


def test_the_routers_of_a_dead_host_move_and_both_hosts_are_told(
    topology, monkeypatch, django_capture_on_commit_callbacks
):
    physnet = topology["public"]["provider:physical_network"]
    first = _host("first", tunnel="10.250.9.8", physnets=[physnet])
    router = topology["router"]
    assert router_hosts.place(router) == first
    assert router_hosts.rehome() == 0  # its host is up: it stays
    second = _host("second", tunnel="10.250.9.9", physnets=[physnet])
    ComputeHost.objects.filter(pk=first.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    sent = []
    monkeypatch.setattr("compute_tasks.rpc.apply_network_state", lambda host, plan: sent.append((host, plan)))
    with django_capture_on_commit_callbacks(execute=True):
        assert router_hosts.rehome() == 1
    router.refresh_from_db()
    assert router.host == second
    assert set(router_hosts.router_ports(router).values_list("host_id", flat=True)) == {second.pk}
    plans = dict(sent)
    assert [r.router_id for r in plans["second"].routers] == [str(router.pk)]
    assert plans["first"].routers == [] and plans["first"].networks == []
    # A disabled host gives its routers up too; with no other host, the router waits, hostless...
    ComputeHost.objects.filter(pk=second.pk).update(enabled=False)
    assert router_hosts.rehome() == 0
    router.refresh_from_db()
    assert router.host is None
    assert set(router_hosts.router_ports(router).values_list("host_id", flat=True)) == {None}
    # ... until one can run it.
    ComputeHost.objects.filter(pk=first.pk).update(last_heartbeat=timezone.now())
    assert router_hosts.rehome() == 1
    router.refresh_from_db()
    assert router.host == first


def test_a_host_no_longer_trusted_with_routers_gives_them_up(topology):
    physnet = topology["public"]["provider:physical_network"]
    first = _host("first", tunnel="10.250.9.11", physnets=[physnet])
    router = topology["router"]
    assert router_hosts.place(router) == first
    second = _host("second", tunnel="10.250.9.12", physnets=[physnet])
    compute_host_update(host=first, runs_routers=False)
    assert router_hosts.rehome() == 1
    router.refresh_from_db()
    assert router.host == second
    assert network_sync.plan_for(first).routers == []


def test_a_deleted_host_gives_its_routers_up_and_is_told_to_stop_them(
    topology, monkeypatch, django_capture_on_commit_callbacks
):
    physnet = topology["public"]["provider:physical_network"]
    first = _host("first", tunnel="10.250.9.13", physnets=[physnet])
    router = topology["router"]
    assert router_hosts.place(router) == first
    second = _host("second", tunnel="10.250.9.14", physnets=[physnet])
    sent = []
    monkeypatch.setattr("compute_tasks.rpc.apply_network_state", lambda host, plan: sent.append((host, plan)))
    with django_capture_on_commit_callbacks(execute=True):
        compute_host_delete(host=first)
    router.refresh_from_db()
    assert router.host == second
    plans = dict(sent)
    assert [r.router_id for r in plans["second"].routers] == [str(router.pk)]
    assert plans["first"].routers == [] and plans["first"].networks == []


def test_host_enroll_trusts_a_host_with_routers_only_when_told(db, tmp_path):
    call_command("host_enroll", "hv-a", "--output", str(tmp_path / "a.json"))
    assert ComputeHost.objects.get(name="hv-a").runs_routers is False
    call_command("host_enroll", "hv-a", "--output", str(tmp_path / "b.json"), "--routers")
    assert ComputeHost.objects.get(name="hv-a").runs_routers is True
    call_command("host_enroll", "hv-a", "--output", str(tmp_path / "c.json"))  # re-keyed: trust kept
    assert ComputeHost.objects.get(name="hv-a").runs_routers is True
    call_command("host_enroll", "hv-a", "--output", str(tmp_path / "d.json"), "--no-routers")
    assert ComputeHost.objects.get(name="hv-a").runs_routers is False
