"""Security groups through the compute API: ``security_groups`` on create, what servers show, the
``addSecurityGroup``/``removeSecurityGroup`` actions, a server's ``os-security-groups``, and the
``/os-security-groups`` proxy until 2.35."""

from __future__ import annotations

import pytest

from portal.models import Instance, Port
from tests.integration.network_api.helpers import call, network, ok, subnet

from .helpers import BASE, boot, booted, v

pytestmark = pytest.mark.integration


@pytest.fixture
def net(member):
    made = network(member, name="private")
    subnet(member, made["id"], "10.21.0.0/24")
    return made


def group(caller, name: str) -> dict:
    return ok(call(caller, "POST", "/security-groups", {"security_group": {"name": name}}), 201)["security_group"]


def port_groups(instance: Instance) -> set[str]:
    return {g.name for p in Port.objects.filter(device_id=str(instance.uuid)) for g in p.security_groups.all()}


def show(caller, instance) -> dict:
    return caller.client.get(f"{BASE}/servers/{instance.uuid}", **v("2.47")).json()["server"]


def action(caller, instance, name, body, version="2.47"):
    return caller.client.post(f"{BASE}/servers/{instance.uuid}/action", {name: body}, format="json", **v(version))


def test_groups_on_create_and_in_the_views(member, stranger, flavor, image, net):
    group(member, "web")
    group(member, "db")
    plain = booted(member, flavor, image, networks=[{"uuid": net["id"]}])
    assert port_groups(plain) == {"default"}
    assert show(member, plain)["security_groups"] == [{"name": "default"}]

    response = boot(
        member, flavor, image, networks=[{"uuid": net["id"]}], security_groups=[{"name": "web"}, {"name": "db"}]
    )
    assert response.status_code == 202, response.content
    assert response.json()["server"]["security_groups"] == [{"name": "db"}, {"name": "web"}]
    grouped = Instance.objects.get(uuid=response.json()["server"]["id"])
    assert port_groups(grouped) == {"web", "db"}
    assert show(member, grouped)["security_groups"] == [{"name": "db"}, {"name": "web"}]
    detail = member.client.get(f"{BASE}/servers/detail", **v("2.47")).json()["servers"]
    assert {s["id"]: s["security_groups"] for s in detail}[str(grouped.uuid)] == [{"name": "db"}, {"name": "web"}]

    # An unknown group, or another project's, is 400, and no server is made.
    theirs = group(stranger, "theirs")
    before = Instance.objects.count()
    for name in ("nope", "theirs", theirs["id"]):
        refused = boot(member, flavor, image, networks=[{"uuid": net["id"]}], security_groups=[{"name": name}])
        assert refused.status_code == 400, refused.content
        assert "not found" in refused.json()["badRequest"]["message"]
    assert Instance.objects.count() == before
    assert boot(member, flavor, image, networks=[{"uuid": net["id"]}], security_groups=[{}]).status_code == 400

    # A server without networks shows none.
    bare = booted(member, flavor, image, networks="none")
    assert "security_groups" not in show(member, bare)


def test_add_and_remove_a_group(member, stranger, flavor, image, net):
    web = group(member, "web")
    instance = booted(member, flavor, image, networks=[{"uuid": net["id"]}, {"uuid": net["id"]}])
    assert action(member, instance, "addSecurityGroup", {"name": "web"}).status_code == 202
    ports = Port.objects.filter(device_id=str(instance.uuid))
    assert ports.count() == 2 and all({g.name for g in p.security_groups.all()} == {"default", "web"} for p in ports)
    assert action(member, instance, "addSecurityGroup", {"name": "web"}).status_code == 400  # already in it
    assert action(member, instance, "addSecurityGroup", {"name": "nope"}).status_code == 404
    assert action(member, instance, "addSecurityGroup", {"name": ""}).status_code == 400
    assert action(member, instance, "addSecurityGroup", None).status_code == 400
    # Another project's server is not found; a reader may not.
    assert action(stranger, instance, "addSecurityGroup", {"name": "web"}).status_code == 404

    listed = member.client.get(f"{BASE}/servers/{instance.uuid}/os-security-groups", **v("2.47")).json()
    assert sorted(g["name"] for g in listed["security_groups"]) == ["default", "web"]
    (default,) = [g for g in listed["security_groups"] if g["name"] == "default"]
    assert {r["group"].get("name") for r in default["rules"]} == {"default"}  # ingress from its members
    assert stranger.client.get(f"{BASE}/servers/{instance.uuid}/os-security-groups", **v("2.47")).status_code == 404

    # The group cannot go while the server's ports are in it.
    assert call(member, "DELETE", f"/security-groups/{web['id']}").status_code == 409
    assert action(member, instance, "removeSecurityGroup", {"name": "web"}).status_code == 202
    assert port_groups(instance) == {"default"}
    assert action(member, instance, "removeSecurityGroup", {"name": "web"}).status_code == 400  # not in it
    assert action(member, instance, "removeSecurityGroup", {"name": "nope"}).status_code == 404
    assert show(member, instance)["security_groups"] == [{"name": "default"}]


def test_the_proxy_until_2_35(member, stranger):
    made = member.client.post(
        f"{BASE}/os-security-groups",
        {"security_group": {"name": "web", "description": "w"}},
        format="json",
        **v("2.35"),
    )
    assert made.status_code == 200, made.content
    web = made.json()["security_group"]
    assert set(web) == {"id", "name", "description", "tenant_id", "rules"} and web["rules"] == []  # egress hidden
    rule = member.client.post(
        f"{BASE}/os-security-group-rules",
        {"security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 80, "to_port": 80,
                                 "cidr": "10.1.2.3/8"}},
        format="json", **v("2.35"),
    )  # fmt: skip
    assert rule.status_code == 200, rule.content
    body = rule.json()["security_group_rule"]
    assert (body["ip_protocol"], body["from_port"], body["to_port"], body["ip_range"]) == (
        "tcp",
        80,
        80,
        {"cidr": "10.1.2.3/8"},  # as given, as Nova shows it
    )
    icmp = member.client.post(
        f"{BASE}/os-security-group-rules",
        {"security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "icmp", "from_port": -1, "to_port": -1}},
        format="json", **v("2.35"),
    )  # fmt: skip
    assert icmp.status_code == 200 and icmp.json()["security_group_rule"]["from_port"] == -1
    names = [g["name"] for g in member.client.get(f"{BASE}/os-security-groups", **v("2.35")).json()["security_groups"]]
    assert sorted(names) == ["default", "web"]
    assert stranger.client.get(f"{BASE}/os-security-groups/{web['id']}", **v("2.35")).status_code == 404
    bad = member.client.post(
        f"{BASE}/os-security-group-rules",
        {"security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 90, "to_port": 80}},
        format="json", **v("2.35"),
    )  # fmt: skip
    assert bad.status_code == 400, bad.content
    # Nova's proxy answers the networking API's conflicts with 400, and a group id that is no UUID too.
    again = member.client.post(
        f"{BASE}/os-security-group-rules",
        {"security_group_rule": {"parent_group_id": web["id"], "ip_protocol": "tcp", "from_port": 80, "to_port": 80,
                                 "cidr": "10.1.2.3/8"}},
        format="json", **v("2.35"),
    )  # fmt: skip
    assert again.status_code == 400, again.content
    default = next(g for g in member.client.get(f"{BASE}/os-security-groups", **v("2.35")).json()["security_groups"]
                   if g["name"] == "default")  # fmt: skip
    assert member.client.delete(f"{BASE}/os-security-groups/{default['id']}", **v("2.35")).status_code == 400
    assert member.client.get(f"{BASE}/os-security-groups/not-a-uuid", **v("2.35")).status_code == 400
    assert member.client.delete(f"{BASE}/os-security-groups/", **v("2.35")).status_code == 404  # no group named
    # From 2.36 the proxy is gone.
    assert member.client.get(f"{BASE}/os-security-groups", **v("2.36")).status_code == 404
    assert member.client.delete(f"{BASE}/os-security-group-rules/{body['id']}", **v("2.35")).status_code == 202
    assert member.client.delete(f"{BASE}/os-security-groups/{web['id']}", **v("2.35")).status_code == 202
    assert member.client.get(f"{BASE}/os-security-groups/{web['id']}", **v("2.35")).status_code == 404
