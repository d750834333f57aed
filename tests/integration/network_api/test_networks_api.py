"""The networking API's networks: shapes, provider attributes and policy, VNIs, errors, discovery."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from portal.models import Network, Role
from tests.conftest import Caller

from .helpers import call, fault, network, ok, port, subnet

pytestmark = pytest.mark.integration

SHOWN = {
    *("id", "name", "tenant_id", "project_id", "admin_state_up", "status", "subnets", "shared"),
    *("router:external", "mtu", "port_security_enabled", "availability_zone_hints", "availability_zones"),
    *("ipv4_address_scope", "ipv6_address_scope", "l2_adjacency", "description", "tags"),
    *("created_at", "updated_at", "revision_number"),
}
PROVIDER = {"provider:network_type", "provider:physical_network", "provider:segmentation_id"}


@pytest.fixture
def vni_range(settings):
    settings.CLOUD = {**settings.CLOUD, "NETWORK": {**settings.CLOUD["NETWORK"], "VNI_MIN": 5000, "VNI_MAX": 5002}}


def test_discovery_and_extensions(member):
    versions = APIClient().get("/networking/")
    assert versions.status_code == 200
    (version,) = versions.json()["versions"]
    assert version["id"] == "v2.0" and version["status"] == "CURRENT"
    assert version["links"][0]["href"].endswith("/networking/v2.0/")
    assert APIClient().get("/networking").status_code == 200  # the catalog's URL, without the slash

    aliases = {e["alias"] for e in ok(call(member, "GET", "/extensions"))["extensions"]}
    assert {"provider", "external-net", "binding", "quotas", "port-security", "pagination", "sorting"} <= aliases
    assert ok(call(member, "GET", "/extensions/binding"))["extension"]["alias"] == "binding"
    fault(call(member, "GET", "/extensions/no-such-thing"), 404)
    collections = {r["collection"] for r in ok(call(member, "GET", "/"))["resources"]}
    assert {"networks", "subnets", "ports"} <= collections


def test_anonymous_and_malformed_requests_get_neutron_errors(member):
    fault(APIClient().get("/networking/v2.0/networks"), 401)
    bad_json = member.client.post("/networking/v2.0/networks", data="{nope", content_type="application/json")
    fault(bad_json, 400, "HTTPBadRequest")
    fault(call(member, "POST", "/networks", {"network": "x"}), 400, "HTTPBadRequest")
    fault(call(member, "POST", "/networks", {"network": {"name": "n", "colour": "red"}}), 400, "HTTPBadRequest")
    fault(call(member, "POST", "/networks", {"network": {"name": 7}}), 400, "InvalidInput")
    fault(call(member, "POST", "/networks", {"network": {"admin_state_up": "yes"}}), 400)
    fault(call(member, "POST", "/networks", {"network": {"mtu": 9000}}), 400)
    fault(call(member, "POST", "/networks", {"network": {"name": "nul\x00"}}), 400)
    fault(call(member, "GET", "/networks/not-a-uuid"), 404, "NetworkNotFound")
    fault(call(member, "DELETE", "/networks/6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2"), 404, "NetworkNotFound")
    fault(call(member, "GET", "/networks", foo="bar"), 400, "HTTPBadRequest")
    fault(call(member, "GET", "/networks", shared="maybe"), 400)
    fault(call(member, "GET", "/networks", sort_key="colour"), 400)
    fault(call(member, "GET", "/networks", limit="many"), 400)
    fault(call(member, "PATCH", "/networks"), 405)
    fault(call(member, "GET", "/vpn/vpnservices"), 404, "HTTPNotFound")  # not built: Neutron's envelope all the same


def test_member_network_shape_and_lifecycle(member, admin, vni_range):
    created = network(member, name="blue", description="mine")
    assert set(created) == SHOWN, set(created) ^ SHOWN
    assert created["tenant_id"] == created["project_id"] == member.project.pk
    assert created["mtu"] == 1450 and created["status"] == "ACTIVE" and created["subnets"] == []
    assert created["shared"] is False and created["router:external"] is False
    assert created["revision_number"] == 0 and created["tags"] == []
    assert created["created_at"].endswith("Z")

    as_admin = ok(call(admin, "GET", f"/networks/{created['id']}"))["network"]
    assert as_admin["provider:network_type"] == "vxlan"
    assert as_admin["provider:segmentation_id"] == 5000  # the lowest VNI of the range
    assert as_admin["provider:physical_network"] is None

    updated = ok(call(member, "PUT", f"/networks/{created['id']}", {"network": {"name": "azure", "mtu": 1400}}))
    assert updated["network"]["name"] == "azure" and updated["network"]["mtu"] == 1400
    assert updated["network"]["revision_number"] == 1
    fault(call(member, "PUT", f"/networks/{created['id']}", {"network": {"shared": True}}), 403, "PolicyNotAuthorized")
    fault(call(member, "PUT", f"/networks/{created['id']}", {"network": {"id": "x"}}), 400)
    fault(
        call(admin, "PUT", f"/networks/{created['id']}", {"network": {"provider:segmentation_id": 7}}),
        400,
    )

    # VNIs: the next two of the range, then none left (503 as Neutron), then a freed one is reused.
    second, third = network(member), network(member)
    vnis = set(Network.objects.filter(pk__in=[second["id"], third["id"]]).values_list("segmentation_id", flat=True))
    assert vnis == {5001, 5002}
    fault(call(member, "POST", "/networks", {"network": {}}), 503, "NoNetworkAvailable")
    ok(call(member, "DELETE", f"/networks/{second['id']}"), 204)
    assert Network.objects.get(pk=network(member)["id"]).segmentation_id == 5001

    ok(call(member, "DELETE", f"/networks/{created['id']}"), 204)
    fault(call(member, "GET", f"/networks/{created['id']}"), 404, "NetworkNotFound")


def test_provider_attributes_are_for_admins(member, admin):
    for attrs in (
        {"provider:network_type": "vxlan"},
        {"provider:segmentation_id": 1234},
        {"shared": True},
        {"router:external": True},
    ):
        fault(call(member, "POST", "/networks", {"network": attrs}), 403, "PolicyNotAuthorized")
    mine = network(member)
    assert not PROVIDER & set(mine)
    assert not PROVIDER & set(ok(call(member, "GET", "/networks"))["networks"][0])

    fault(call(admin, "POST", "/networks", {"network": {"provider:network_type": "flat"}}), 400, "InvalidInput")
    fault(call(admin, "POST", "/networks", {"network": {"provider:network_type": "vlan"}}), 400, "InvalidInput")
    flat = network(admin, **{"provider:network_type": "flat", "provider:physical_network": "public", "shared": True})
    assert flat["mtu"] == 1500 and flat["provider:segmentation_id"] is None and flat["shared"] is True
    again = {"provider:network_type": "flat", "provider:physical_network": "public"}
    fault(call(admin, "POST", "/networks", {"network": again}), 409, "FlatNetworkInUse")
    chosen = network(admin, **{"provider:segmentation_id": 77000})
    assert chosen["provider:segmentation_id"] == 77000 and chosen["mtu"] == 1450
    fault(call(admin, "POST", "/networks", {"network": {"provider:segmentation_id": 77000}}), 409, "TunnelIdInUse")
    fault(call(admin, "POST", "/networks", {"network": {"provider:segmentation_id": 2**24}}), 400, "InvalidInput")

    # An admin may make a network for another project; a member may not.
    for_member = network(admin, project_id=member.project.pk)
    assert for_member["project_id"] == member.project.pk
    fault(call(member, "POST", "/networks", {"network": {"tenant_id": admin.project.pk}}), 400)


def test_visibility_across_projects(member, stranger, admin, reader):
    private = network(member, name="private-a")
    shared = network(admin, name="shared", shared=True)
    external = network(admin, name="ext", **{"router:external": True})
    subnet(admin, shared["id"], "10.50.0.0/24")
    subnet(admin, external["id"], "10.51.0.0/24")

    names = {n["name"] for n in ok(call(stranger, "GET", "/networks"))["networks"]}
    assert names == {"shared", "ext"}
    fault(call(stranger, "GET", f"/networks/{private['id']}"), 404, "NetworkNotFound")
    fault(call(stranger, "PUT", f"/networks/{private['id']}", {"network": {"name": "x"}}), 404, "NetworkNotFound")
    fault(call(stranger, "DELETE", f"/networks/{private['id']}"), 404, "NetworkNotFound")
    fault(call(stranger, "POST", "/ports", {"port": {"network_id": private["id"]}}), 404, "NetworkNotFound")
    fault(call(stranger, "POST", "/subnets", {"subnet": {"network_id": private["id"], "cidr": "10.9.0.0/24"}}), 404)

    # A shared network is usable (ports) but not the stranger's to change.
    theirs = port(stranger, shared["id"])
    assert theirs["fixed_ips"][0]["ip_address"].startswith("10.50.0.")
    fault(call(stranger, "PUT", f"/networks/{shared['id']}", {"network": {"name": "x"}}), 403, "PolicyNotAuthorized")
    fault(call(stranger, "DELETE", f"/networks/{shared['id']}"), 403, "PolicyNotAuthorized")
    fault(call(stranger, "POST", "/subnets", {"subnet": {"network_id": shared["id"], "cidr": "10.9.0.0/24"}}), 403)
    fault(call(stranger, "POST", "/ports", {"port": {"network_id": external["id"]}}), 403, "PolicyNotAuthorized")
    with_ip = {"network_id": shared["id"], "fixed_ips": [{"ip_address": "10.50.0.99"}]}
    fault(call(stranger, "POST", "/ports", {"port": with_ip}), 403, "PolicyNotAuthorized")
    # Unsharing a network other projects have ports on is refused.
    fault(call(admin, "PUT", f"/networks/{shared['id']}", {"network": {"shared": False}}), 409, "InvalidSharedSetting")

    # Subnets of shared networks are visible; of external (unshared) ones, not.
    cidrs = {s["cidr"] for s in ok(call(stranger, "GET", "/subnets"))["subnets"]}
    assert cidrs == {"10.50.0.0/24"}
    # Ports: their own project's only. The admin's DHCP ports and the stranger's port are not A's.
    assert ok(call(member, "GET", "/ports"))["ports"] == []
    fault(call(member, "GET", f"/ports/{theirs['id']}"), 404, "PortNotFound")
    assert [p["id"] for p in ok(call(stranger, "GET", "/ports"))["ports"]] == [theirs["id"]]

    everything = {n["name"] for n in ok(call(admin, "GET", "/networks"))["networks"]}
    assert {"private-a", "shared", "ext"} <= everything
    assert ok(call(admin, "GET", f"/ports/{theirs['id']}"))["port"]["binding:host_id"] == ""

    # A reader reads but writes nothing.
    assert {n["name"] for n in ok(call(reader, "GET", "/networks"))["networks"]} >= {"private-a"}
    fault(call(reader, "POST", "/networks", {"network": {}}), 403)
    fault(call(reader, "DELETE", f"/networks/{private['id']}"), 403)


def test_list_queries(member, admin):
    made = [network(member, name=f"n{i}", description="odd" if i % 2 else "even") for i in range(5)]
    network(admin, name="n-shared", shared=True)

    def names(**query):
        return [n["name"] for n in ok(call(member, "GET", "/networks", **query))["networks"]]

    assert names(name=["n1", "n3"]) == ["n1", "n3"]
    assert names(description="even") == ["n0", "n2", "n4"]
    assert names(shared="true") == ["n-shared"]
    assert names(shared="False", name="n-shared") == []
    assert names(id=[made[2]["id"], "not-a-uuid"]) == ["n2"]
    assert names(tags="x") == []
    assert names(sort_key="name", sort_dir="desc") == ["n4", "n3", "n2", "n1", "n0", "n-shared"]
    assert names(sort_key=["description", "name"], sort_dir=["asc", "desc"]) == [
        "n-shared", "n4", "n2", "n0", "n3", "n1"
    ]  # fmt: skip
    fault(call(member, "GET", "/networks", sort_key=["name", "id"], sort_dir="asc"), 400)
    fault(call(member, "GET", "/networks", sort_key="provider:segmentation_id"), 400)
    assert len(names(**{"provider:segmentation_id": "1"})) == 6  # an admin-only filter means nothing to members

    only = ok(call(member, "GET", "/networks", fields=["id", "name"], name="n0"))["networks"]
    assert only == [{"id": made[0]["id"], "name": "n0"}]
    shown = ok(call(member, "GET", f"/networks/{made[0]['id']}", fields="mtu"))["network"]
    assert shown == {"mtu": 1450}

    # Pagination: pages of two by name, following next then previous links.
    page = ok(call(member, "GET", "/networks", limit=2, sort_key="name"))
    assert [n["name"] for n in page["networks"]] == ["n-shared", "n0"]
    (link,) = page["networks_links"]
    assert link["rel"] == "next"
    second = ok(member.client.get(link["href"].split("/networking", 1)[1].join(["/networking", ""])))
    assert [n["name"] for n in second["networks"]] == ["n1", "n2"]
    rels = {link["rel"]: link["href"] for link in second["networks_links"]}
    assert set(rels) == {"next", "previous"}
    back = ok(member.client.get("/networking" + rels["previous"].split("/networking", 1)[1]))
    assert [n["name"] for n in back["networks"]] == ["n-shared", "n0"]
    last = ok(call(member, "GET", "/networks", limit=2, sort_key="name", marker=made[3]["id"]))
    assert [n["name"] for n in last["networks"]] == ["n4"]
    assert [link["rel"] for link in last["networks_links"]] == ["previous"]
    fault(call(member, "GET", "/networks", limit=2, marker="6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2"), 400)


def test_network_list_query_count(member):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            ok(call(member, "GET", "/networks"))
        return len(queries)

    for i in range(2):
        subnet(member, network(member, name=f"a{i}")["id"], f"10.60.{i}.0/24")
    few = count()
    for i in range(2, 8):
        subnet(member, network(member, name=f"a{i}")["id"], f"10.60.{i}.0/24")
    assert count() == few


def test_network_delete_takes_the_dhcp_port_and_subnets_but_waits_for_other_ports(member):
    net = network(member)
    sub = subnet(member, net["id"], "10.70.0.0/24")
    p = port(member, net["id"])
    fault(call(member, "DELETE", f"/networks/{net['id']}"), 409, "NetworkInUse")
    ok(call(member, "DELETE", f"/ports/{p['id']}"), 204)
    ok(call(member, "DELETE", f"/networks/{net['id']}"), 204)
    fault(call(member, "GET", f"/subnets/{sub['id']}"), 404, "SubnetNotFound")
    assert not Network.objects.filter(pk=net["id"]).exists()


def test_reader_role_is_read_only_on_networks(db):
    owner = Caller(Role.MEMBER)
    reader = Caller(Role.READER, project=owner.project)
    net = network(owner)
    assert ok(call(reader, "GET", f"/networks/{net['id']}"))["network"]["id"] == net["id"]
    fault(call(reader, "PUT", f"/networks/{net['id']}", {"network": {"name": "x"}}), 403)
