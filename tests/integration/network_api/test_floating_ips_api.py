"""The networking API's floating IPs: shapes, what may be asked of them and by whom, association through a
router of the port's project, what depends on them (the router's interface and gateway), the port or
server going away, quotas (a race of creates on PostgreSQL included), and the server's ``addresses``."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from portal.models import FloatingIP, Instance, Port
from portal.services import floating_ips as services
from portal.services import instance_ports, lifecycle
from portal.services.network_errors import PortNotFound
from tests.conftest import basic_auth
from tests.factories import InstanceFactory

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

FLOATING_IP_SHOWN = {
    *("id", "floating_ip_address", "floating_network_id", "router_id", "port_id", "fixed_ip_address"),
    *("status", "port_details", "description", "tenant_id", "project_id", "tags"),
    *("created_at", "updated_at", "revision_number"),
}


@pytest.fixture
def public(admin):
    return external_network(admin)


@pytest.fixture
def routed(member, public):
    """The member's private network, routed to ``public`` by the member's router."""
    made = network(member, name="private")
    made["subnet"] = subnet(member, made["id"], "10.30.0.0/24")
    made["router"] = router(member, external_gateway_info={"network_id": public["id"]})
    ok(add_interface(member, made["router"]["id"], subnet_id=made["subnet"]["id"]))
    return made


def test_shapes_and_who_may_ask_what(member, stranger, admin, public):
    fip = floating_ip(member, public["id"], description="web")
    assert set(fip) == FLOATING_IP_SHOWN, set(fip) ^ FLOATING_IP_SHOWN
    assert fip["status"] == "DOWN" and fip["port_id"] is None and fip["router_id"] is None
    assert fip["floating_ip_address"].startswith("203.0.113.") and fip["project_id"] == member.project.pk
    held = Port.objects.get(device_id=fip["id"])
    assert (held.device_owner, held.project_id, held.host_id) == ("network:floatingip", None, None)
    # The member does not see the port holding the address as one of its own.
    assert str(held.pk) not in {p["id"] for p in ok(call(member, "GET", "/ports"))["ports"]}

    # Only an external network; the address is the admins' to choose; a subnet of the network anyone may.
    private = network(member, name="private")
    subnet(member, private["id"], "10.30.0.0/24")
    fault(call(member, "POST", "/floatingips", {"floatingip": {"floating_network_id": private["id"]}}), 400)
    fault(call(member, "POST", "/floatingips", {"floatingip": {"floating_network_id": "nope"}}), 404)
    chosen = {"floatingip": {"floating_network_id": public["id"], "floating_ip_address": "203.0.113.99"}}
    fault(call(member, "POST", "/floatingips", chosen), 403, "PolicyNotAuthorized")
    assert ok(call(admin, "POST", "/floatingips", chosen), 201)["floatingip"]["floating_ip_address"] == "203.0.113.99"
    fault(call(admin, "POST", "/floatingips", chosen), 409, "IpAddressAlreadyAllocated")
    on_subnet = floating_ip(member, public["id"], subnet_id=public["subnet"]["id"])
    assert on_subnet["floating_ip_address"].startswith("203.0.113.")
    fault(call(member, "POST", "/floatingips", {"floatingip": {"floating_network_id": public["id"], "x": 1}}), 400)

    # Another project sees none of it, and lists nothing of the member's.
    fault(call(stranger, "GET", f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    fault(call(stranger, "DELETE", f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    assert ok(call(stranger, "GET", "/floatingips"))["floatingips"] == []
    assert fip["id"] in {f["id"] for f in ok(call(admin, "GET", "/floatingips"))["floatingips"]}
    # Found by address, as the CLI looks one up.
    found = ok(call(member, "GET", "/floatingips", floating_ip_address=fip["floating_ip_address"]))["floatingips"]
    assert [f["id"] for f in found] == [fip["id"]]
    fault(call(member, "GET", f"/floatingips/{fip['floating_ip_address']}"), 404, "FloatingIPNotFound")

    updated = ok(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"description": "api"}}))
    assert updated["floatingip"]["description"] == "api"
    fault(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"floating_ip_address": "1.2.3.4"}}), 400)
    ok(call(member, "DELETE", f"/floatingips/{fip['id']}"), 204)
    assert not Port.objects.filter(pk=held.pk).exists()
    fault(call(member, "GET", f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")


def test_association_needs_a_router_of_the_ports_project(member, stranger, public):
    unrouted = network(member, name="unrouted")
    subnet(member, unrouted["id"], "10.40.0.0/24")
    lonely = port(member, unrouted["id"])
    fip = floating_ip(member, public["id"])
    path = f"/floatingips/{fip['id']}"
    fault(
        call(member, "PUT", path, {"floatingip": {"port_id": lonely["id"]}}),
        404,
        "ExternalGatewayForFloatingIPNotFound",
    )
    # A router on the subnet but without the gateway is not enough either.
    inner = router(member)
    ok(add_interface(member, inner["id"], subnet_id=lonely["fixed_ips"][0]["subnet_id"]))
    fault(
        call(member, "PUT", path, {"floatingip": {"port_id": lonely["id"]}}),
        404,
        "ExternalGatewayForFloatingIPNotFound",
    )
    # Another project's port is not there for the member.
    theirs_net = network(stranger, name="theirs")
    subnet(stranger, theirs_net["id"], "10.41.0.0/24")
    theirs = port(stranger, theirs_net["id"])
    fault(call(member, "PUT", path, {"floatingip": {"port_id": theirs["id"]}}), 404, "PortNotFound")
    fault(
        call(
            member,
            "POST",
            "/floatingips",
            {"floatingip": {"floating_network_id": public["id"], "port_id": theirs["id"]}},
        ),
        404,
    )


def test_associate_disassociate_and_what_depends_on_it(member, admin, public, routed):
    guest = port(member, routed["id"])
    fixed = guest["fixed_ips"][0]["ip_address"]
    fip = floating_ip(member, public["id"], port_id=guest["id"])
    assert (fip["status"], fip["port_id"], fip["fixed_ip_address"]) == ("ACTIVE", guest["id"], fixed)
    assert fip["router_id"] == routed["router"]["id"]
    assert fip["port_details"]["mac_address"] == guest["mac_address"]
    assert fip["port_details"]["network_id"] == routed["id"]
    # A fixed address has one floating IP; a wrong fixed address is 400; a router's own port cannot have one.
    second = floating_ip(member, public["id"])
    path = f"/floatingips/{second['id']}"
    fault(call(member, "PUT", path, {"floatingip": {"port_id": guest["id"]}}), 409, "FloatingIPPortAlreadyAssociated")
    fault(call(member, "PUT", path, {"floatingip": {"port_id": guest["id"], "fixed_ip_address": "10.30.0.250"}}), 400)
    leg = Port.objects.get(device_id=routed["router"]["id"], device_owner="network:router_interface")
    fault(call(admin, "PUT", path, {"floatingip": {"port_id": str(leg.pk)}}), 400)

    # What the floating IP goes through stays while it does.
    router_path = f"/routers/{routed['router']['id']}"
    fault(
        remove_interface(member, routed["router"]["id"], subnet_id=routed["subnet"]["id"]),
        409,
        "RouterInterfaceInUseByFloatingIP",
    )
    no_gateway = {"router": {"external_gateway_info": {}}}
    fault(call(member, "PUT", router_path, no_gateway), 409, "RouterExternalGatewayInUseByFloatingIp")

    # Disassociated: DOWN, and the router lets go.
    down = ok(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}}))["floatingip"]
    assert (down["status"], down["port_id"], down["fixed_ip_address"], down["router_id"]) == ("DOWN", None, None, None)
    ok(call(member, "PUT", router_path, no_gateway))

    # A port deleted takes its association with it.
    ok(call(member, "PUT", router_path, {"router": {"external_gateway_info": {"network_id": public["id"]}}}))
    ok(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": guest["id"]}}))
    ok(call(member, "DELETE", f"/ports/{guest['id']}"), 204)
    after = ok(call(member, "GET", f"/floatingips/{fip['id']}"))["floatingip"]
    assert (after["status"], after["port_id"], after["router_id"]) == ("DOWN", None, None)


def test_a_servers_floating_address_shows_in_its_addresses(member, flavor_less_server, public, routed):
    instance = flavor_less_server
    guest = port(member, routed["id"], device_id=str(instance.uuid), device_owner="compute:nova")
    instance_ports.addresses_refresh(instance)
    fip = floating_ip(member, public["id"])
    ok(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": guest["id"]}}))

    shown = member.client.get(
        f"/compute/v2.1/servers/{instance.uuid}", HTTP_OPENSTACK_API_VERSION="compute 2.47"
    ).json()["server"]
    assert shown["addresses"] == {
        "private": [
            {
                "version": 4,
                "addr": guest["fixed_ips"][0]["ip_address"],
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": guest["mac_address"],
            },
            {
                "version": 4,
                "addr": fip["floating_ip_address"],
                "OS-EXT-IPS:type": "floating",
                "OS-EXT-IPS-MAC:mac_addr": guest["mac_address"],
            },
        ]
    }
    ok(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}}))
    assert [a.get("type", "fixed") for a in Instance.objects.get(pk=instance.pk).addresses] == ["fixed"]
    ok(call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": {"port_id": guest["id"]}}))
    assert len(Instance.objects.get(pk=instance.pk).addresses) == 2
    ok(call(member, "DELETE", f"/floatingips/{fip['id']}"), 204)
    assert [a.get("type", "fixed") for a in Instance.objects.get(pk=instance.pk).addresses] == ["fixed"]

    # The server going away disassociates the floating IPs of its ports (even one it did not make).
    again = floating_ip(member, public["id"], port_id=guest["id"])
    lifecycle.mark_deleted(instance=instance, expected_task_states=[None], event="test")
    assert FloatingIP.objects.get(pk=again["id"]).port_id is None


@pytest.fixture
def flavor_less_server(member):
    return InstanceFactory(project=member.project, user=member.user, networks="ports", task_state=None)


def test_floating_ip_quota_and_the_compute_limits_before_2_36(member, admin, public):
    project = member.project.pk
    ok(call(admin, "PUT", f"/quotas/{project}", {"quota": {"floatingip": 1}}))
    floating_ip(member, public["id"])
    fault(call(member, "POST", "/floatingips", {"floatingip": {"floating_network_id": public["id"]}}), 409, "OverQuota")
    assert ok(call(member, "GET", f"/quotas/{project}/details"))["quota"]["floatingip"]["used"] == 1
    limits = member.client.get("/compute/v2.1/limits", HTTP_OPENSTACK_API_VERSION="compute 2.35").json()
    absolute = limits["limits"]["absolute"]
    assert (absolute["maxTotalFloatingIps"], absolute["totalFloatingIpsUsed"]) == (1, 1)
    later = member.client.get("/compute/v2.1/limits", HTTP_OPENSTACK_API_VERSION="compute 2.36").json()
    assert "maxTotalFloatingIps" not in later["limits"]["absolute"]


def test_listing_floating_ips_costs_the_same_for_many(member, public, routed):
    guest = port(member, routed["id"])
    floating_ip(member, public["id"], port_id=guest["id"])
    with CaptureQueriesContext(connection) as few:
        ok(call(member, "GET", "/floatingips"))
    for _ in range(4):
        other = port(member, routed["id"])
        floating_ip(member, public["id"], port_id=other["id"])
    with CaptureQueriesContext(connection) as many:
        assert len(ok(call(member, "GET", "/floatingips"))["floatingips"]) == 5
    assert len(many) == len(few)


def test_concurrent_floating_ip_creates_never_exceed_the_quota(transactional_db, member, admin):
    public = external_network(admin)
    ok(call(admin, "PUT", f"/quotas/{member.project.pk}", {"quota": {"floatingip": 3}}))
    barrier = threading.Barrier(12)
    statuses: list[int] = []

    def create(n: int):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username))
            barrier.wait(timeout=10)
            body = {"floatingip": {"floating_network_id": public["id"]}}
            statuses.append(client.post("/networking/v2.0/floatingips", body, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [201] * 3 + [409] * 9, statuses
    assert FloatingIP.objects.filter(project=member.project).count() == 3
    assert len(set(FloatingIP.objects.values_list("floating_ip_address", flat=True))) == 3


def test_the_compute_apis_floating_ip_actions_until_2_44(member, stranger, public, routed, flavor_less_server):
    instance = flavor_less_server
    guest = port(member, routed["id"], device_id=str(instance.uuid), device_owner="compute:nova")
    fip = floating_ip(member, public["id"])
    theirs = floating_ip(stranger, public["id"])

    def action(caller, body, version="2.43"):
        return caller.client.post(
            f"/compute/v2.1/servers/{instance.uuid}/action",
            body,
            format="json",
            HTTP_OPENSTACK_API_VERSION=f"compute {version}",
        )

    add = {"addFloatingIp": {"address": fip["floating_ip_address"]}}
    assert action(member, add, "2.44").status_code == 404
    assert action(member, {"addFloatingIp": {"address": theirs["floating_ip_address"]}}).status_code == 404
    wrong_fixed = {"addFloatingIp": {"address": fip["floating_ip_address"], "fixed_address": "10.30.0.250"}}
    assert action(member, wrong_fixed).status_code == 400
    assert action(member, add).status_code == 202, action(member, add).content
    assert FloatingIP.objects.get(pk=fip["id"]).port_id.hex == guest["id"].replace("-", "")
    assert "floating" in [a.get("type") for a in Instance.objects.get(pk=instance.pk).addresses]
    # A second floating IP for the same fixed address: the networking API's 409, the proxy's 400.
    other = floating_ip(member, public["id"])
    again = action(member, {"addFloatingIp": {"address": other["floating_ip_address"]}})
    assert again.status_code == 400, again.content
    assert FloatingIP.objects.get(pk=other["id"]).port_id is None

    remove = {"removeFloatingIp": {"address": fip["floating_ip_address"]}}
    assert action(member, {"removeFloatingIp": {"address": theirs["floating_ip_address"]}}).status_code == 404
    assert action(member, remove).status_code == 202
    assert FloatingIP.objects.get(pk=fip["id"]).port_id is None
    assert action(member, remove).status_code == 409  # no longer the server's


def test_the_compute_apis_floating_ip_proxy_until_2_35(member, stranger, admin, public):
    def compute(caller, method, path, body=None, version="2.35"):
        return getattr(caller.client, method)(
            f"/compute/v2.1{path}", body, format="json", HTTP_OPENSTACK_API_VERSION=f"compute {version}"
        )

    pools = compute(member, "get", "/os-floating-ip-pools").json()["floating_ip_pools"]
    assert pools == [{"name": "public"}]
    assert compute(member, "get", "/os-floating-ip-pools", version="2.36").status_code == 404
    made = compute(member, "post", "/os-floating-ips", {"pool": "public"})
    assert made.status_code == 200, made.content
    body = made.json()["floating_ip"]
    assert set(body) == {"id", "ip", "pool", "fixed_ip", "instance_id"}
    assert body["pool"] == "public" and body["ip"].startswith("203.0.113.") and body["instance_id"] is None
    assert compute(member, "post", "/os-floating-ips", {"pool": "nowhere"}).status_code == 404
    listed = compute(member, "get", "/os-floating-ips").json()["floating_ips"]
    assert [f["id"] for f in listed] == [body["id"]]
    assert compute(stranger, "get", "/os-floating-ips").json()["floating_ips"] == []
    assert compute(stranger, "get", f"/os-floating-ips/{body['id']}").status_code == 404
    assert compute(member, "get", f"/os-floating-ips/{body['id']}").json()["floating_ip"] == body
    ok(call(admin, "PUT", f"/quotas/{member.project.pk}", {"quota": {"floatingip": 1}}))
    assert compute(member, "post", "/os-floating-ips", {}).status_code == 403  # over quota, as Nova
    assert compute(member, "delete", f"/os-floating-ips/{body['id']}").status_code == 202
    assert not FloatingIP.objects.filter(pk=body["id"]).exists()


@pytest.mark.parametrize(
    "attrs",
    [
        {"floating_network_id": 5},
        {"description": 5},
        {"subnet_id": 5},
        {"port_id": ["x"]},
        {"port_id": "not-a-port"},
        {"fixed_ip_address": "nowhere"},
        {"floating_ip_address": "nowhere"},
        {"dns_name": "www"},
        {"colour": "red"},
    ],
)
def test_malformed_floating_ip_requests_are_4xx(member, admin, public, attrs):
    for caller in (member, admin):
        response = call(caller, "POST", "/floatingips", {"floatingip": {"floating_network_id": public["id"], **attrs}})
        assert response.status_code in (400, 403, 404), response.content
        fault(response, response.status_code)
    fip = floating_ip(member, public["id"])
    response = call(member, "PUT", f"/floatingips/{fip['id']}", {"floatingip": attrs})
    assert response.status_code in (400, 403, 404), response.content
    fault(response, response.status_code)


def test_the_service_refuses_another_projects_port(member, stranger, public, routed):
    """The portal calls the service with the port it was given: the service itself checks whose it is."""
    guest = Port.objects.get(pk=port(member, routed["id"])["id"])
    theirs = FloatingIP.objects.get(pk=floating_ip(stranger, public["id"])["id"])
    with pytest.raises(PortNotFound):
        services.floating_ip_associate(floating_ip=theirs, project=stranger.project, user_is_admin=False, port=guest)
    with pytest.raises(PortNotFound):
        services.floating_ip_update(
            floating_ip=theirs, project=stranger.project, user_is_admin=False, changes={"port_id": str(guest.pk)}
        )
    assert FloatingIP.objects.get(pk=theirs.pk).port_id is None


def test_concurrent_associations_to_one_fixed_address_let_exactly_one_in(transactional_db, member, admin):
    """Eight floating IPs associated with the same fixed address at once, each on its own connection:
    the router's row lock and the (port, fixed address) constraint let exactly one in; the others are
    409 FloatingIPPortAlreadyAssociated."""
    public = external_network(admin)
    private = network(member, name="private")
    private_subnet = subnet(member, private["id"], "10.30.0.0/24")
    edge = router(member, external_gateway_info={"network_id": public["id"]})
    ok(add_interface(member, edge["id"], subnet_id=private_subnet["id"]))
    guest = port(member, private["id"])
    fips = [floating_ip(member, public["id"]) for _ in range(8)]
    barrier = threading.Barrier(len(fips))
    answers: list[tuple[int, str]] = []

    def associate(fip_id: str):
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=basic_auth(member.user.username))
            barrier.wait(timeout=10)
            body = {"floatingip": {"port_id": guest["id"]}}
            response = client.put(f"/networking/v2.0/floatingips/{fip_id}", body, format="json")
            kind = response.json().get("NeutronError", {}).get("type", "") if response.status_code != 200 else ""
            answers.append((response.status_code, kind))
        finally:
            connection.close()

    threads = [threading.Thread(target=associate, args=(f["id"],)) for f in fips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [(200, "")] + [(409, "FloatingIPPortAlreadyAssociated")] * 7, answers
    assert FloatingIP.objects.filter(port_id=guest["id"]).count() == 1
