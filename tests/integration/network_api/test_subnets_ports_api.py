"""The networking API's subnets and ports: defaults, validation, the DHCP port, fixed IPs, MACs, bindings,
filters, and who may do what."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.models import ComputeHost, HostNetworkState, IPAllocation, Port

from .helpers import call, fault, network, ok, port, subnet

pytestmark = pytest.mark.integration

SUBNET_SHOWN = {
    *("id", "name", "tenant_id", "project_id", "network_id", "ip_version", "cidr", "gateway_ip"),
    *("allocation_pools", "dns_nameservers", "host_routes", "enable_dhcp", "subnetpool_id", "ipv6_ra_mode"),
    *("ipv6_address_mode", "service_types", "description", "tags", "created_at", "updated_at", "revision_number"),
}
PORT_SHOWN = {
    *("id", "name", "network_id", "tenant_id", "project_id", "mac_address", "admin_state_up", "status"),
    *("device_id", "device_owner", "fixed_ips", "allowed_address_pairs", "extra_dhcp_opts", "security_groups"),
    *("port_security_enabled", "binding:vnic_type", "description", "tags", "created_at", "updated_at"),
    "revision_number",
}
BINDING = {"binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details"}


def dhcp_ports(network_id):
    return Port.objects.filter(network_id=network_id, device_owner=Port.OWNER_DHCP)


def test_subnet_defaults_and_the_dhcp_port(member, admin):
    net = network(member)
    sub = subnet(member, net["id"], "10.1.0.0/24", name="s1", dns_nameservers=["10.1.0.53"])
    assert set(sub) == SUBNET_SHOWN, set(sub) ^ SUBNET_SHOWN
    assert sub["gateway_ip"] == "10.1.0.1"
    assert sub["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
    assert sub["enable_dhcp"] is True and sub["dns_nameservers"] == ["10.1.0.53"] and sub["host_routes"] == []
    assert ok(call(member, "GET", f"/networks/{net['id']}"))["network"]["subnets"] == [sub["id"]]

    # One DHCP port per network, with one address on each DHCP subnet; it is the cloud's, not the member's.
    (dhcp,) = dhcp_ports(net["id"])
    assert [a.ip_address for a in dhcp.fixed_ips.all()] == ["10.1.0.2"]
    assert dhcp.host is None and dhcp.device_id.startswith("dhcp")
    second = subnet(member, net["id"], "10.2.0.0/24", gateway_ip=None)
    assert second["gateway_ip"] is None
    assert second["allocation_pools"] == [{"start": "10.2.0.1", "end": "10.2.0.254"}]
    (dhcp,) = dhcp_ports(net["id"])
    assert sorted(a.ip_address for a in dhcp.fixed_ips.all()) == ["10.1.0.2", "10.2.0.1"]
    member_ports = ok(call(member, "GET", "/ports", network_id=net["id"]))["ports"]
    assert [p["device_owner"] for p in member_ports] == ["network:dhcp"]  # the network's project owns it
    fault(call(member, "DELETE", f"/ports/{dhcp.pk}"), 403, "PolicyNotAuthorized")

    no_dhcp = subnet(member, network(member)["id"], "10.3.0.8/24", enable_dhcp=False, gateway_ip="10.3.0.254")
    assert no_dhcp["cidr"] == "10.3.0.0/24"  # normalised
    assert no_dhcp["allocation_pools"] == [{"start": "10.3.0.1", "end": "10.3.0.253"}]
    assert not dhcp_ports(no_dhcp["network_id"]).exists()

    # DHCP switched on and off follows the subnet.
    ok(call(member, "PUT", f"/subnets/{no_dhcp['id']}", {"subnet": {"enable_dhcp": True}}))
    assert [a.ip_address for a in dhcp_ports(no_dhcp["network_id"]).get().fixed_ips.all()] == ["10.3.0.1"]
    ok(call(member, "PUT", f"/subnets/{no_dhcp['id']}", {"subnet": {"enable_dhcp": False}}))
    assert not dhcp_ports(no_dhcp["network_id"]).exists()

    # Deleting the subnets takes the DHCP port's addresses, then the port.
    ok(call(member, "DELETE", f"/subnets/{second['id']}"), 204)
    assert [a.ip_address for a in dhcp_ports(net["id"]).get().fixed_ips.all()] == ["10.1.0.2"]
    ok(call(member, "DELETE", f"/subnets/{sub['id']}"), 204)
    assert not dhcp_ports(net["id"]).exists()


def test_subnet_validation(member, stranger):
    net = network(member)
    nid = net["id"]

    def refused(status, type_=None, **attrs):
        body = {"subnet": {"network_id": nid, "ip_version": 4, "cidr": "10.5.0.0/24", **attrs}}
        return fault(call(member, "POST", "/subnets", body), status, type_)

    refused(400, "InvalidInput", cidr="10.5.0.0")
    refused(400, "InvalidInput", cidr="300.1.0.0/24")
    refused(400, cidr="fd00::/64")
    refused(400, ip_version=6)
    refused(400, cidr="10.0.0.0/31")
    refused(400, gateway_ip="10.6.0.1")
    refused(400, gateway_ip="10.5.0.255")
    refused(400, allocation_pools=[{"start": "10.5.0.10", "end": "10.5.1.10"}])
    refused(400, allocation_pools=[{"start": "10.5.0.20", "end": "10.5.0.10"}])
    refused(400, allocation_pools=[{"start": "10.5.0.10"}])
    refused(
        409,
        "OverlappingAllocationPools",
        allocation_pools=[{"start": "10.5.0.10", "end": "10.5.0.20"}, {"start": "10.5.0.15", "end": "10.5.0.30"}],
    )
    refused(409, "GatewayConflictWithAllocationPools", allocation_pools=[{"start": "10.5.0.1", "end": "10.5.0.9"}])
    refused(400, dns_nameservers=["not-an-ip"])
    refused(400, dns_nameservers=["10.0.0.1"] * 2)
    refused(400, host_routes=[{"destination": "10.9.0.0/16"}])
    refused(400, host_routes=[{"destination": "10.9.0.1/16", "nexthop": "10.5.0.1"}])
    refused(400, subnetpool_id="x")
    refused(400, colour="red")
    fault(call(member, "POST", "/subnets", {"subnet": {"network_id": nid}}), 400)
    fault(call(member, "POST", "/subnets", {"subnet": {"cidr": "10.5.0.0/24"}}), 400)

    made = subnet(
        member,
        nid,
        "10.5.0.0/24",
        allocation_pools=[{"start": "10.5.0.100", "end": "10.5.0.110"}, {"start": "10.5.0.10", "end": "10.5.0.20"}],
        host_routes=[{"destination": "10.9.0.0/16", "nexthop": "10.5.0.1"}],
    )
    assert made["allocation_pools"][0] == {"start": "10.5.0.10", "end": "10.5.0.20"}
    assert made["host_routes"] == [{"destination": "10.9.0.0/16", "nexthop": "10.5.0.1"}]
    refused(400, cidr="10.5.0.128/25")  # overlaps the subnet just made

    # Updates: what may change, and what may not.
    changed = ok(call(member, "PUT", f"/subnets/{made['id']}", {"subnet": {"name": "r", "dns_nameservers": []}}))
    assert changed["subnet"]["name"] == "r" and changed["subnet"]["revision_number"] == 1
    fault(call(member, "PUT", f"/subnets/{made['id']}", {"subnet": {"cidr": "10.7.0.0/24"}}), 400)
    bad_gw = {"subnet": {"gateway_ip": "10.5.0.15"}}  # inside a pool
    fault(call(member, "PUT", f"/subnets/{made['id']}", bad_gw), 409, "GatewayConflictWithAllocationPools")
    fault(call(stranger, "PUT", f"/subnets/{made['id']}", {"subnet": {"name": "x"}}), 404, "SubnetNotFound")
    fault(call(stranger, "DELETE", f"/subnets/{made['id']}"), 404, "SubnetNotFound")
    fault(call(member, "GET", "/subnets/nope"), 404, "SubnetNotFound")


def test_port_addresses(member):
    net = network(member)
    nid = net["id"]
    sub = subnet(member, nid, "10.8.0.0/28", allocation_pools=[{"start": "10.8.0.2", "end": "10.8.0.6"}])
    # .2 went to the DHCP port.
    first = port(member, nid, name="p1", device_id="vm-1", device_owner="compute:nova")
    assert set(first) == PORT_SHOWN, set(first) ^ PORT_SHOWN
    assert first["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.8.0.3"}]
    assert first["mac_address"].startswith("fa:16:3e:") and first["status"] == "DOWN"
    assert first["tenant_id"] == member.project.pk and first["port_security_enabled"] is True
    given = port(member, nid, fixed_ips=[{"ip_address": "10.8.0.12"}])  # outside the pool, inside the subnet
    assert given["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.8.0.12"}]
    by_subnet = port(member, nid, fixed_ips=[{"subnet_id": sub["id"]}])
    assert by_subnet["fixed_ips"][0]["ip_address"] == "10.8.0.4"

    def refused(status, type_, **attrs):
        return fault(call(member, "POST", "/ports", {"port": {"network_id": nid, **attrs}}), status, type_)

    refused(409, "IpAddressAlreadyAllocated", fixed_ips=[{"ip_address": "10.8.0.3"}])
    refused(409, "IpAddressAlreadyAllocated", fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.8.0.1"}])
    refused(400, "InvalidIpForSubnet", fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.8.0.15"}])
    refused(400, "InvalidIpForSubnet", fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.9.0.5"}])
    refused(400, "InvalidIpForNetwork", fixed_ips=[{"ip_address": "10.9.0.5"}])
    refused(400, "InvalidInput", fixed_ips=[{"subnet_id": "6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2"}])
    refused(400, "InvalidInput", fixed_ips=[{"ip_address": "banana"}])
    refused(400, "InvalidInput", fixed_ips=[{"port": 1}])
    refused(400, "InvalidInput", fixed_ips="10.8.0.9")
    refused(400, "InvalidInput", mac_address="01:00:5e:00:00:01")  # multicast
    refused(400, "InvalidInput", mac_address="fa:16:3e:00:00")
    refused(400, "InvalidInput", admin_state_up="no")
    refused(400, "HTTPBadRequest", security_groups=["default"])
    refused(409, "MacAddressInUse", mac_address=first["mac_address"])
    assert port(member, nid, mac_address="FA:16:3E:AA:BB:CC")["mac_address"] == "fa:16:3e:aa:bb:cc"
    # The pool (.2-.6) has .6 left (the port with the given MAC took .5), then none.
    port(member, nid)
    refused(409, "IpAddressGenerationFailure")
    refused(409, "IpAddressGenerationFailure", fixed_ips=[{"subnet_id": sub["id"]}])

    # Updating fixed_ips: keep the address named again, free the others, take new ones.
    moved = {"fixed_ips": [{"ip_address": "10.8.0.12"}, {"ip_address": "10.8.0.13"}]}
    changed = ok(call(member, "PUT", f"/ports/{given['id']}", {"port": moved}))["port"]
    assert sorted(a["ip_address"] for a in changed["fixed_ips"]) == ["10.8.0.12", "10.8.0.13"]
    moved = {"fixed_ips": [{"ip_address": "10.8.0.13"}]}
    changed = ok(call(member, "PUT", f"/ports/{given['id']}", {"port": moved}))["port"]
    assert [a["ip_address"] for a in changed["fixed_ips"]] == ["10.8.0.13"]
    assert changed["revision_number"] == 2
    taken = {"fixed_ips": [{"ip_address": "10.8.0.3"}]}
    fault(call(member, "PUT", f"/ports/{given['id']}", {"port": taken}), 409, "IpAddressAlreadyAllocated")
    assert IPAllocation.objects.filter(port_id=given["id"]).count() == 1  # the failed update changed nothing

    # Freed addresses come back, lowest first.
    ok(call(member, "DELETE", f"/ports/{first['id']}"), 204)
    assert port(member, nid)["fixed_ips"][0]["ip_address"] == "10.8.0.3"
    fault(call(member, "DELETE", f"/subnets/{sub['id']}"), 409, "SubnetInUse")
    fault(call(member, "DELETE", f"/ports/{first['id']}"), 404, "PortNotFound")

    # A port on a network without subnets has no address; a port's network must be given.
    bare = port(member, network(member)["id"])
    assert bare["fixed_ips"] == []
    fault(call(member, "POST", "/ports", {"port": {"name": "x"}}), 400)


def test_port_updates_filters_and_bindings(member, admin, stranger):
    host = ComputeHost.objects.create(name="net-host-1", last_heartbeat=timezone.now(), vcpus=4, memory_mb=4096)
    other = ComputeHost.objects.create(name="net-host-2", last_heartbeat=timezone.now(), vcpus=4, memory_mb=4096)
    nid = network(member)["id"]
    subnet(member, nid, "10.11.0.0/24")
    a = port(member, nid, name="a", device_id="vm-a")
    b = port(member, nid, name="b", device_id="vm-b")
    assert not BINDING & set(a)

    # Bindings are the admins': they set binding:host_id; members neither see nor set it.
    fault(call(member, "PUT", f"/ports/{a['id']}", {"port": {"binding:host_id": host.name}}), 403)
    fault(call(member, "POST", "/ports", {"port": {"network_id": nid, "binding:host_id": host.name}}), 403)
    bound = ok(call(admin, "PUT", f"/ports/{a['id']}", {"port": {"binding:host_id": host.name}}))["port"]
    assert bound["binding:host_id"] == host.name and bound["binding:vif_type"] == "bridge"
    assert HostNetworkState.objects.get(host=host).generation == 1
    assert not BINDING & set(ok(call(member, "GET", f"/ports/{a['id']}"))["port"])
    moved = ok(call(admin, "PUT", f"/ports/{a['id']}", {"port": {"binding:host_id": other.name}}))["port"]
    assert moved["binding:host_id"] == other.name
    # The old host and the new one both get a new plan.
    assert HostNetworkState.objects.get(host=host).generation == 2
    assert HostNetworkState.objects.get(host=other).generation == 1
    fault(call(admin, "PUT", f"/ports/{a['id']}", {"port": {"binding:host_id": "no-such-host"}}), 400)
    on_create = port(admin, nid, **{"binding:host_id": host.name})
    assert on_create["binding:host_id"] == host.name and on_create["project_id"] == admin.project.pk
    unbound = ok(call(admin, "PUT", f"/ports/{a['id']}", {"port": {"binding:host_id": ""}}))["port"]
    assert unbound["binding:host_id"] == "" and unbound["binding:vif_type"] == "unbound"
    fault(call(member, "PUT", f"/ports/{a['id']}", {"port": {"mac_address": "fa:16:3e:00:00:01"}}), 403)

    changes = {"name": "a2", "device_id": "vm-z", "device_owner": "compute:nova", "admin_state_up": False}
    changed = ok(
        call(
            member,
            "PUT",
            f"/ports/{a['id']}",
            {"port": {**changes, "port_security_enabled": False, "security_groups": []}},
        )
    )
    assert {k: changed["port"][k] for k in changes} == changes
    assert changed["port"]["port_security_enabled"] is False
    fault(call(member, "PUT", f"/ports/{a['id']}", {"port": {"network_id": nid}}), 400)
    fault(call(member, "PUT", f"/ports/{a['id']}", {"port": {"status": "ACTIVE"}}), 400)
    fault(call(stranger, "PUT", f"/ports/{a['id']}", {"port": {"name": "x"}}), 404, "PortNotFound")

    def ids(caller=member, **query):
        return sorted(p["id"] for p in ok(call(caller, "GET", "/ports", **query))["ports"])

    b_ip = b["fixed_ips"][0]["ip_address"]
    assert ids(device_id="vm-b") == [b["id"]]
    assert ids(device_id=["vm-b", "vm-z"]) == sorted([a["id"], b["id"]])
    assert ids(**{"fixed_ips": f"ip_address={b_ip}"}) == [b["id"]]
    assert ids(**{"fixed_ips": [f"ip_address={b_ip}", f"subnet_id={b['fixed_ips'][0]['subnet_id']}"]}) == [b["id"]]
    assert ids(device_owner="network:dhcp", network_id=nid) == [str(Port.objects.get(device_owner="network:dhcp").pk)]
    assert ids(mac_address=b["mac_address"]) == [b["id"]]
    assert ids(admin, **{"binding:host_id": host.name}) == [on_create["id"]]
    assert ids(stranger, device_id="vm-b") == []
    fault(call(member, "GET", "/ports", fixed_ips="banana"), 400)
    shown = ok(call(member, "GET", "/ports", fields=["id", "fixed_ips"], device_id="vm-b"))["ports"]
    assert shown == [{"id": b["id"], "fixed_ips": b["fixed_ips"]}]


def test_port_and_subnet_list_query_counts(member):
    nid = network(member)["id"]
    subnet(member, nid, "10.12.0.0/24")

    def count(path) -> int:
        with CaptureQueriesContext(connection) as queries:
            ok(call(member, "GET", path))
        return len(queries)

    port(member, nid)
    few_ports, few_subnets = count("/ports"), count("/subnets")
    for _ in range(6):
        port(member, nid)
    subnet(member, nid, "10.13.0.0/24")
    subnet(member, network(member)["id"], "10.14.0.0/24")
    assert count("/ports") == few_ports
    assert count("/subnets") == few_subnets


def test_bulk_create_is_all_or_nothing(member):
    nid = network(member)["id"]
    subnet(member, nid, "10.15.0.0/24")
    made = ok(call(member, "POST", "/ports", {"ports": [{"network_id": nid}, {"network_id": nid}]}), 201)["ports"]
    assert len(made) == 2
    before = Port.objects.count()
    bad = {"ports": [{"network_id": nid}, {"network_id": nid, "fixed_ips": [{"ip_address": "10.99.0.1"}]}]}
    fault(call(member, "POST", "/ports", bad), 400, "InvalidIpForNetwork")
    assert Port.objects.count() == before


def test_lowest_free_address_across_pools_and_gaps(member):
    nid = network(member)["id"]
    pools = [{"start": "10.16.0.20", "end": "10.16.0.21"}, {"start": "10.16.0.10", "end": "10.16.0.11"}]
    sub = subnet(member, nid, "10.16.0.0/24", allocation_pools=pools, enable_dhcp=False)
    # An address outside the pools, held by hand, is no gap to fill.
    port(member, nid, fixed_ips=[{"ip_address": "10.16.0.15"}])
    made = [port(member, nid) for _ in range(4)]
    assert [p["fixed_ips"][0]["ip_address"] for p in made] == ["10.16.0.10", "10.16.0.11", "10.16.0.20", "10.16.0.21"]
    fault(call(member, "POST", "/ports", {"port": {"network_id": nid}}), 409, "IpAddressGenerationFailure")
    ok(call(member, "DELETE", f"/ports/{made[2]['id']}"), 204)
    ok(call(member, "DELETE", f"/ports/{made[0]['id']}"), 204)
    assert port(member, nid)["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.16.0.10"}]
    assert port(member, nid)["fixed_ips"][0]["ip_address"] == "10.16.0.20"
