"""The real ``openstack`` CLI with security groups: groups and rules made, listed and deleted, and a
server put in a group and taken out of it, as a person would type it."""

from __future__ import annotations

import pytest

from portal.models import Port

pytestmark = pytest.mark.integration

CLI_IDENTITIES = ("builtin",)


def test_security_groups_with_the_cli(cli, host_up, tiny_flavor, demo_image):
    member, other = cli.member, cli.other
    web = member.json("security", "group", "create", "--description", "the web tier", "web")
    assert web["name"] == "web" and web["description"] == "the web tier"
    rule = member.json(
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "80",
        "--remote-ip",
        "10.0.0.0/8",
        "web",
    )
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == ("tcp", 80, 80)
    assert rule["direction"] == "ingress" and rule["remote_ip_prefix"] == "10.0.0.0/8"
    listed = member.json("security", "group", "rule", "list", "web")
    assert rule["id"] in {r["ID"] for r in listed}
    dup = member.fails(
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "80",
        "--remote-ip",
        "10.0.0.0/8",
        "web",
    )
    assert "already exists" in dup, dup
    assert "web" in {g["Name"] for g in member.json("security", "group", "list")}
    assert "web" not in {g["Name"] for g in other.json("security", "group", "list")}

    member.json("network", "create", "teal")
    member.json("subnet", "create", "--network", "teal", "--subnet-range", "10.81.0.0/24", "teal-sub")
    server = member.json(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--network", "teal", "--wait", "guarded"
    )
    assert server["status"] == "ACTIVE", server
    (port,) = Port.objects.filter(device_id=server["id"])
    assert [g.name for g in port.security_groups.all()] == ["default"]

    member.ok("server", "add", "security", "group", "guarded", "web")
    assert {g.name for g in Port.objects.get(pk=port.pk).security_groups.all()} == {"default", "web"}
    assert "web" in str(member.json("server", "show", "guarded")["security_groups"])
    assert "in use" in member.fails("security", "group", "delete", "web").lower()
    member.ok("server", "remove", "security", "group", "guarded", "web")
    assert [g.name for g in Port.objects.get(pk=port.pk).security_groups.all()] == ["default"]

    member.ok("security", "group", "rule", "delete", rule["id"])
    assert rule["id"] not in {r["ID"] for r in member.json("security", "group", "rule", "list", "web")}
    member.ok("server", "delete", "--wait", "guarded")
    member.ok("security", "group", "delete", "web")
    assert "web" not in {g["Name"] for g in member.json("security", "group", "list")}
