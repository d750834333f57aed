"""The networking API's routers: shapes, interfaces by subnet and by port, the external gateway and who may
set what of it, deletes, quotas (a race of creates on PostgreSQL included), who sees what, and the plan
of the host that runs a router."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from portal.models import ComputeHost, Port, Router
from portal.services import network_sync
from tests.conftest import basic_auth

from .helpers import (
    add_interface,
    call,
    external_network,
    fault,
    floating_ip,
    network,
    ok,
    port,
    remove_interface,
    router,
    subnet,
)

pytestmark = pytest.mark.integration

ROUTER_SHOWN = {
    *("id", "name", "admin_state_up", "status", "external_gateway_info", "routes", "description"),
    *("tenant_id", "project_id", "tags", "created_at", "updated_at", "revision_number"),
}
INTERFACE_SHOWN = {"id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id", "subnet_ids"}


@pytest.fixture
def private(member):
    made = network(member, name="private")
    made["subnet"] = subnet(member, made["id"], "10.30.0.0/24")
    return made


def test_router_shapes_and_interfaces_by_subnet(member, stranger, admin, reader, private):
    made = router(member, description="edge")
    assert set(made) == ROUTER_SHOWN, set(made) ^ ROUTER_SHOWN
    assert made["status"] == "ACTIVE" and made["admin_state_up"] is True
    assert made["external_gateway_info"] is None and made["project_id"] == member.project.pk

    added = ok(add_interface(member, made["id"], subnet_id=private["subnet"]["id"]))
    assert set(added) == INTERFACE_SHOWN
    assert added["id"] == made["id"] and added["subnet_ids"] == [private["subnet"]["id"]]
    assert added["network_id"] == private["id"] and added["project_id"] == member.project.pk
    leg = Port.objects.get(pk=added["port_id"])
    assert (leg.device_owner, leg.device_id) == ("network:router_interface", made["id"])
    assert [a.ip_address for a in leg.fixed_ips.all()] == ["10.30.0.1"]  # the subnet's gateway address
    # The member sees the router's leg among its ports (as `router show` lists them), but may not delete it.
    listed = ok(call(member, "GET", "/ports", device_id=made["id"]))["ports"]
    assert [p["id"] for p in listed] == [added["port_id"]]
    fault(call(member, "DELETE", f"/ports/{added['port_id']}"), 409, "ServicePortInUse")
    moved = {"port": {"device_id": "elsewhere"}}
    fault(call(member, "PUT", f"/ports/{added['port_id']}", moved), 400)
    assert ok(call(member, "PUT", f"/ports/{added['port_id']}", {"port": {"name": "leg"}}))["port"]["name"] == "leg"

    # One interface per subnet; none on an overlapping one; a subnet without gateway cannot take one.
    fault(add_interface(member, made["id"], subnet_id=private["subnet"]["id"]), 400, "HTTPBadRequest")
    other = network(member, name="other")
    overlapping = subnet(member, other["id"], "10.30.0.0/16")
    assert "overlaps" in fault(add_interface(member, made["id"], subnet_id=overlapping["id"]), 400)["message"]
    third = network(member, name="third")
    no_gateway = subnet(member, third["id"], "10.32.0.0/24", gateway_ip=None)
    assert "gateway" in fault(add_interface(member, made["id"], subnet_id=no_gateway["id"]), 400)["message"]
    fault(add_interface(member, made["id"]), 400)
    fault(add_interface(member, made["id"], subnet_id=no_gateway["id"], port_id=str(leg.pk)), 400)
    fault(add_interface(member, made["id"], subnet_id="nope"), 404, "SubnetNotFound")

    # Another project: neither sees the router nor adds its own subnets to it; nor adds ours to its own.
    fault(call(stranger, "GET", f"/routers/{made['id']}"), 404, "RouterNotFound")
    fault(call(stranger, "PUT", f"/routers/{made['id']}", {"router": {"name": "x"}}), 404, "RouterNotFound")
    fault(add_interface(stranger, made["id"], subnet_id=private["subnet"]["id"]), 404, "RouterNotFound")
    theirs = router(stranger, name="theirs")
    fault(add_interface(stranger, theirs["id"], subnet_id=private["subnet"]["id"]), 404, "SubnetNotFound")
    assert made["id"] not in {r["id"] for r in ok(call(stranger, "GET", "/routers"))["routers"]}
    assert {made["id"], theirs["id"]} <= {r["id"] for r in ok(call(admin, "GET", "/routers"))["routers"]}
    # Readers read, never write.
    assert ok(call(reader, "GET", f"/routers/{made['id']}"))["router"]["id"] == made["id"]
    fault(add_interface(reader, made["id"], subnet_id=no_gateway["id"]), 403, "PolicyNotAuthorized")
    fault(call(reader, "DELETE", f"/routers/{made['id']}"), 403, "PolicyNotAuthorized")

    # A router with an interface is in use; removing the interface deletes its port.
    fault(call(member, "DELETE", f"/routers/{made['id']}"), 409, "RouterInUse")
    fault(remove_interface(member, made["id"], subnet_id=no_gateway["id"]), 404, "RouterInterfaceNotFoundForSubnet")
    fault(remove_interface(member, made["id"], port_id=str(made["id"])), 404, "RouterInterfaceNotFound")
    removed = ok(remove_interface(member, made["id"], subnet_id=private["subnet"]["id"]))
    assert removed == added
    assert not Port.objects.filter(pk=leg.pk).exists()
    ok(call(member, "DELETE", f"/routers/{made['id']}"), 204)
    fault(call(member, "GET", f"/routers/{made['id']}"), 404, "RouterNotFound")
    aliases = {e["alias"] for e in ok(call(member, "GET", "/extensions"))["extensions"]}
    assert {"router", "ext-gw-mode", "fip-port-details"} <= aliases
    assert not {"dvr", "l3-ha", "l3_agent_scheduler", "extraroute"} & aliases  # what this cloud does not do


def test_interfaces_by_port(member, stranger, private):
    made = router(member)
    free = port(member, private["id"])
    added = ok(add_interface(member, made["id"], port_id=free["id"]))
    assert added["port_id"] == free["id"] and added["subnet_id"] == private["subnet"]["id"]
    shown = ok(call(member, "GET", f"/ports/{free['id']}"))["port"]
    assert (shown["device_owner"], shown["device_id"]) == ("network:router_interface", made["id"])
    # A port in use, one of another project, one with two addresses: refused.
    other = network(member, name="other")
    subnet(member, other["id"], "10.33.0.0/24")
    subnet(member, other["id"], "10.34.0.0/24")
    used = port(member, other["id"], device_id="something", device_owner="compute:nova")
    fault(add_interface(member, made["id"], port_id=used["id"]), 409, "PortInUse")
    two = port(member, other["id"], fixed_ips=[{"ip_address": "10.33.0.9"}, {"ip_address": "10.34.0.9"}])
    fault(add_interface(member, made["id"], port_id=two["id"]), 400)
    stranger_net = network(stranger, name="s")
    subnet(stranger, stranger_net["id"], "10.35.0.0/24")
    theirs = port(stranger, stranger_net["id"])
    fault(add_interface(member, made["id"], port_id=theirs["id"]), 404, "PortNotFound")
    # Removed by port id: the port goes, as Neutron does it.
    ok(remove_interface(member, made["id"], port_id=free["id"]))
    fault(call(member, "GET", f"/ports/{free['id']}"), 404, "PortNotFound")


def test_the_gateway_and_who_may_set_what(member, admin, private):
    public = external_network(admin)
    fault(call(member, "POST", "/routers", {"router": {"external_gateway_info": {"network_id": private["id"]}}}), 400)
    made = router(member, external_gateway_info={"network_id": public["id"]})
    info = made["external_gateway_info"]
    assert info["network_id"] == public["id"] and info["enable_snat"] is True
    (fixed,) = info["external_fixed_ips"]
    assert fixed["subnet_id"] == public["subnet"]["id"] and fixed["ip_address"].startswith("203.0.113.")
    gateway = Port.objects.get(device_id=made["id"], device_owner="network:router_gateway")
    assert gateway.project_id is None and gateway.network_id.hex == public["id"].replace("-", "")

    # Turning SNAT off and choosing the gateway's address are the admins'.
    path = f"/routers/{made['id']}"
    no_snat = {"router": {"external_gateway_info": {"network_id": public["id"], "enable_snat": False}}}
    fault(call(member, "PUT", path, no_snat), 403, "PolicyNotAuthorized")
    chosen = {"network_id": public["id"], "external_fixed_ips": [{"ip_address": "203.0.113.77"}]}
    fault(call(member, "PUT", path, {"router": {"external_gateway_info": chosen}}), 403, "PolicyNotAuthorized")
    fault(call(member, "PUT", path, {"router": {"distributed": True}}), 403, "PolicyNotAuthorized")
    assert ok(call(admin, "PUT", path, no_snat))["router"]["external_gateway_info"]["enable_snat"] is False
    moved = ok(call(admin, "PUT", path, {"router": {"external_gateway_info": chosen}}))["router"]
    assert [f["ip_address"] for f in moved["external_gateway_info"]["external_fixed_ips"]] == ["203.0.113.77"]
    assert Port.objects.filter(device_id=made["id"], device_owner="network:router_gateway").count() == 1

    # Cleared with {} (or null); a name, and the admin state, as any router attribute.
    cleared = ok(call(member, "PUT", path, {"router": {"external_gateway_info": {}, "name": "inner"}}))["router"]
    assert cleared["external_gateway_info"] is None and cleared["name"] == "inner"
    assert cleared["revision_number"] > made["revision_number"]
    assert not Port.objects.filter(device_id=made["id"]).exists()
    fault(call(member, "PUT", path, {"router": {"status": "DOWN"}}), 400)
    fault(call(member, "PUT", path, {"router": {"external_gateway_info": {"network_id": "nope"}}}), 404)
    fault(call(member, "PUT", path, {"router": {"external_gateway_info": "public"}}), 400, "InvalidInput")


def test_filters_sorting_pagination_and_fields(member):
    for name in ("c", "a", "b"):
        router(member, name=name)
    names = [r["name"] for r in ok(call(member, "GET", "/routers", sort_key="name", sort_dir="asc"))["routers"]]
    assert names == ["a", "b", "c"]
    page = ok(call(member, "GET", "/routers", sort_key="name", limit=2))
    assert [r["name"] for r in page["routers"]] == ["a", "b"] and page["routers_links"][0]["rel"] == "next"
    assert ok(call(member, "GET", "/routers", name="b", fields="name"))["routers"] == [{"name": "b"}]
    fault(call(member, "GET", "/routers", colour="red"), 400)


def test_listing_routers_costs_the_same_for_many(member, admin):
    public = external_network(admin)
    router(member, external_gateway_info={"network_id": public["id"]})
    with CaptureQueriesContext(connection) as few:
        ok(call(member, "GET", "/routers"))
    for index in range(5):
        router(member, name=f"r{index}", external_gateway_info={"network_id": public["id"]})
    with CaptureQueriesContext(connection) as many:
        body = ok(call(member, "GET", "/routers"))
    assert len(body["routers"]) == 6
    assert all(r["external_gateway_info"]["external_fixed_ips"] for r in body["routers"])
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_router_quota(member, admin):
    project = member.project.pk
    ok(call(admin, "PUT", f"/quotas/{project}", {"quota": {"router": 1}}))
    router(member)
    fault(call(member, "POST", "/routers", {"router": {"name": "second"}}), 409, "OverQuota")
    details = ok(call(member, "GET", f"/quotas/{project}/details"))["quota"]
    assert details["router"] == {"used": 1, "limit": 1, "reserved": 0}
    defaults = ok(call(member, "GET", f"/quotas/{project}/default"))["quota"]
    assert (defaults["router"], defaults["floatingip"]) == (10, 50)


def test_concurrent_router_creates_never_exceed_the_quota(transactional_db, member, admin):
    """Twelve creates at once, each on its own connection, against a limit of 3: the project row lock
    serialises the count, so exactly 3 get in."""
    ok(call(admin, "PUT", f"/quotas/{member.project.pk}", {"quota": {"router": 3}}))
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def create(n: int):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username))
            barrier.wait(timeout=10)
            response = client.post("/networking/v2.0/routers", {"router": {"name": f"r{n}"}}, format="json")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] * 3 + [409] * 9, statuses
    assert Router.objects.filter(project=member.project).count() == 3


def test_the_host_that_can_run_it_gets_the_router_in_its_plan(member, admin, private):
    # A host that is up, has a tunnel address (the private network is VXLAN) and carries the external
    # network's physical network; another that lacks the physical network cannot run it.
    able = ComputeHost.objects.create(
        name="l3-host",
        last_heartbeat=timezone.now(),
        tunnel_address="10.249.1.1",
        physical_networks=["extnet"],
        runs_routers=True,
    )
    ComputeHost.objects.create(
        name="l2-only", last_heartbeat=timezone.now(), tunnel_address="10.249.1.2", runs_routers=True
    )
    public = external_network(admin)
    made = router(member)
    leg = ok(add_interface(member, made["id"], subnet_id=private["subnet"]["id"]))
    ok(
        call(
            member, "PUT", f"/routers/{made['id']}", {"router": {"external_gateway_info": {"network_id": public["id"]}}}
        )
    )
    assert Router.objects.get(pk=made["id"]).host_id == able.pk
    assert set(Port.objects.filter(device_id=made["id"]).values_list("host_id", flat=True)) == {able.pk}

    (plan,) = network_sync.plan_for(able).routers
    assert plan.router_id == made["id"] and plan.snat is True and plan.floating == []
    (interface,) = plan.interfaces
    assert (interface.port_id, interface.network_id, interface.addresses) == (
        leg["port_id"],
        private["id"],
        ["10.30.0.1/24"],
    )
    assert plan.gateway.network_id == public["id"] and plan.gateway.addresses[0].startswith("203.0.113.")
    assert plan.gateway_nexthop == "203.0.113.1"
    assert {n.network_id for n in network_sync.plan_for(able).networks} == {private["id"], public["id"]}

    # A server's port on the private network, with a floating IP: the router translates it.
    guest = port(member, private["id"], device_id="server-1", device_owner="compute:nova")
    fip = floating_ip(member, public["id"], port_id=guest["id"])
    (plan,) = network_sync.plan_for(able).routers
    assert [(f.floating_ip, f.fixed_ip) for f in plan.floating] == [
        (fip["floating_ip_address"], guest["fixed_ips"][0]["ip_address"])
    ]
    # Down, the router is in no plan; the other host never had it.
    ok(call(member, "PUT", f"/routers/{made['id']}", {"router": {"admin_state_up": False}}))
    assert network_sync.plan_for(able).routers == []
    assert network_sync.plan_for(ComputeHost.objects.get(name="l2-only")).routers == []


@pytest.mark.parametrize(
    "body",
    [
        {"router": {"name": 5}},
        {"router": {"admin_state_up": "yes"}},
        {"router": {"external_gateway_info": ["x"]}},
        {"router": {"external_gateway_info": {"network_id": 5}}},
        {"router": {"external_gateway_info": {"network_id": "x", "colour": 1}}},
        {"router": {"routes": [{"destination": "0.0.0.0/0", "nexthop": "10.0.0.1"}]}},
        {"router": {"ha": True}},
        {"router": "edge"},
        {"routers": []},
        ["router"],
    ],
)
def test_malformed_router_requests_are_400s(member, body):
    response = call(member, "POST", "/routers", body)
    assert response.status_code in (400, 403, 404), response.content
    fault(response, response.status_code)


@pytest.mark.parametrize(
    "body",
    [
        {"subnet_id": 5},
        {"port_id": ["x"]},
        {"subnet_id": None, "port_id": None},
        {"subnet_id": "x", "colour": 1},
        ["subnet_id"],
        "x",
    ],
)
def test_malformed_interface_requests_are_4xx(member, body):
    made = router(member)
    for path in ("add_router_interface", "remove_router_interface"):
        response = call(member, "PUT", f"/routers/{made['id']}/{path}", body)
        assert response.status_code in (400, 404), response.content
        fault(response, response.status_code)
