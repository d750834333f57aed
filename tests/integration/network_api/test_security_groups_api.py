"""The networking API's security groups and rules: shapes, the default group, ports' groups, errors,
quotas, who sees what, and the rules each port's host is sent."""

from __future__ import annotations

import pytest

from portal.models import ComputeHost, Port, SecurityGroup
from portal.services import network_sync

from .helpers import call, fault, network, ok, port, subnet

pytestmark = pytest.mark.integration

GROUP_SHOWN = {
    *("id", "name", "description", "tenant_id", "project_id", "stateful", "shared", "security_group_rules"),
    *("tags", "created_at", "updated_at", "revision_number"),
}
RULE_SHOWN = {
    *("id", "security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max"),
    *("remote_ip_prefix", "normalized_cidr", "remote_group_id", "remote_address_group_id", "description"),
    *("tenant_id", "project_id", "tags", "created_at", "updated_at", "revision_number"),
}


def group(caller, **attrs) -> dict:
    body = {"security_group": {"name": "web", **attrs}}
    return ok(call(caller, "POST", "/security-groups", body), 201)["security_group"]


def rule(caller, group_id: str, status: int = 201, **attrs):
    body = {"security_group_rule": {"security_group_id": group_id, "direction": "ingress", **attrs}}
    response = call(caller, "POST", "/security-group-rules", body)
    if status != 201:
        return response
    return ok(response, 201)["security_group_rule"]


def test_default_group_and_group_shapes(member, stranger, admin):
    listed = ok(call(member, "GET", "/security-groups"))["security_groups"]
    (default,) = listed
    assert set(default) == GROUP_SHOWN, set(default) ^ GROUP_SHOWN
    assert default["name"] == "default" and default["stateful"] is True
    rules = {(r["direction"], r["ethertype"], r["remote_group_id"]) for r in default["security_group_rules"]}
    assert rules == {
        ("egress", "IPv4", None),
        ("egress", "IPv6", None),
        ("ingress", "IPv4", default["id"]),
        ("ingress", "IPv6", default["id"]),
    }
    assert set(default["security_group_rules"][0]) == RULE_SHOWN
    # Listing again makes no second default group.
    assert [g["id"] for g in ok(call(member, "GET", "/security-groups"))["security_groups"]] == [default["id"]]
    assert SecurityGroup.objects.filter(project_id=member.project.pk, is_default=True).count() == 1

    web = group(member, description="for the web")
    assert [(r["direction"], r["ethertype"]) for r in web["security_group_rules"]] == [
        ("egress", "IPv4"),
        ("egress", "IPv6"),
    ]
    # Another project sees neither, and cannot touch them.
    assert all(
        g["project_id"] != member.project.pk for g in ok(call(stranger, "GET", "/security-groups"))["security_groups"]
    )
    fault(call(stranger, "GET", f"/security-groups/{web['id']}"), 404, "SecurityGroupNotFound")
    fault(call(stranger, "DELETE", f"/security-groups/{web['id']}"), 404, "SecurityGroupNotFound")
    fault(rule(stranger, web["id"], status=404, protocol="tcp"), 404, "SecurityGroupNotFound")
    # ...nor use them as a remote group.
    theirs = group(stranger, name="theirs")
    fault(rule(stranger, theirs["id"], status=404, remote_group_id=web["id"]), 404, "SecurityGroupNotFound")
    # Admins see every project's.
    ids = {g["id"] for g in ok(call(admin, "GET", "/security-groups"))["security_groups"]}
    assert {web["id"], theirs["id"], default["id"]} <= ids

    # Filters, fields, update.
    found = ok(call(member, "GET", "/security-groups", name="web", fields=["id", "name"]))["security_groups"]
    assert found == [{"id": web["id"], "name": "web"}]
    renamed = ok(call(member, "PUT", f"/security-groups/{web['id']}", {"security_group": {"name": "www"}}))
    assert renamed["security_group"]["name"] == "www" and renamed["security_group"]["revision_number"] >= 1
    fault(
        call(member, "PUT", f"/security-groups/{default['id']}", {"security_group": {"name": "x"}}),
        409,
        "SecurityGroupCannotUpdateDefault",
    )
    fault(call(member, "POST", "/security-groups", {"security_group": {"name": "default"}}), 400)
    fault(call(member, "POST", "/security-groups", {"security_group": {"name": "x", "colour": 1}}), 400)

    # The default group is its project's to keep; admins may delete it.
    fault(call(member, "DELETE", f"/security-groups/{default['id']}"), 409, "SecurityGroupCannotRemoveDefault")
    ok(call(member, "DELETE", f"/security-groups/{web['id']}"), 204)
    fault(call(member, "GET", f"/security-groups/{web['id']}"), 404, "SecurityGroupNotFound")
    ok(call(admin, "DELETE", f"/security-groups/{default['id']}"), 204)

    ext = ok(call(member, "GET", "/extensions/security-group"))["extension"]
    assert ext["alias"] == "security-group"


def test_rules_validation_and_duplicates(member, reader):
    web = group(member)
    tcp = rule(member, web["id"], protocol="tcp", port_range_min=80, port_range_max=80, remote_ip_prefix="0.0.0.0/0")
    assert set(tcp) == RULE_SHOWN
    assert (tcp["protocol"], tcp["port_range_min"], tcp["port_range_max"]) == ("tcp", 80, 80)
    assert tcp["remote_ip_prefix"] is None  # 0.0.0.0/0 is anywhere
    # The same rule again (a protocol by number is the same protocol): 409.
    dup = rule(member, web["id"], status=409, protocol="6", port_range_min=80, port_range_max=80)
    fault(dup, 409, "SecurityGroupRuleExists")
    icmp = rule(member, web["id"], protocol="icmp", port_range_min=8, port_range_max=0, remote_ip_prefix="10.9.8.7/16")
    # The prefix is kept as given; what it matches is its network.
    assert (icmp["remote_ip_prefix"], icmp["normalized_cidr"]) == ("10.9.8.7/16", "10.9.0.0/16")
    # Another address of that network is the same rule.
    again = rule(
        member,
        web["id"],
        status=409,
        protocol="icmp",
        port_range_min=8,
        port_range_max=0,
        remote_ip_prefix="10.9.0.1/16",
    )
    fault(again, 409, "SecurityGroupRuleExists")
    host = rule(member, web["id"], protocol="udp", port_range_min=53, port_range_max=53, remote_ip_prefix="10.9.8.7")
    assert (host["remote_ip_prefix"], host["normalized_cidr"]) == ("10.9.8.7/32", "10.9.8.7/32")
    bad = [
        dict(direction="sideways"),
        dict(ethertype="IPv5"),
        dict(protocol="bogus"),
        dict(protocol="300"),
        dict(protocol="tcp", port_range_min=90, port_range_max=80),
        dict(protocol="tcp", port_range_min=70000, port_range_max=70001),
        dict(protocol="gre", port_range_min=1, port_range_max=2),
        dict(protocol="icmp", port_range_min=300),
        dict(protocol="icmp", ethertype="IPv6"),
        dict(remote_ip_prefix="not-a-net"),
        dict(remote_ip_prefix="fd00::/64"),
        dict(remote_ip_prefix="10.0.0.0/8", remote_group_id=web["id"]),
        dict(colour="red"),
    ]
    for attrs in bad:
        fault(rule(member, web["id"], status=400, **attrs), 400)
    fault(rule(member, "nope", status=404), 404, "SecurityGroupNotFound")
    fault(rule(reader, web["id"], status=403, protocol="udp"), 403, "PolicyNotAuthorized")

    listed = ok(call(member, "GET", "/security-group-rules", security_group_id=web["id"], protocol="tcp"))
    assert [r["id"] for r in listed["security_group_rules"]] == [tcp["id"]]
    ok(call(member, "DELETE", f"/security-group-rules/{tcp['id']}"), 204)
    fault(call(member, "GET", f"/security-group-rules/{tcp['id']}"), 404, "SecurityGroupRuleNotFound")


def test_quotas_of_groups_and_rules(member, admin):
    project = member.project.pk
    ok(call(admin, "PUT", f"/quotas/{project}", {"quota": {"security_group": 2, "security_group_rule": 7}}))
    quota = ok(call(member, "GET", f"/quotas/{project}"))["quota"]
    assert (quota["security_group"], quota["security_group_rule"]) == (2, 7)
    defaults = ok(call(member, "GET", f"/quotas/{project}/default"))["quota"]
    assert (defaults["security_group"], defaults["security_group_rule"]) == (10, 100)
    first = group(member, name="one")  # the default group (4 rules) and this one (2 rules): 2 groups, 6 rules
    fault(call(member, "POST", "/security-groups", {"security_group": {"name": "two"}}), 409, "OverQuota")
    rule(member, first["id"], protocol="tcp", port_range_min=22, port_range_max=22)
    fault(rule(member, first["id"], status=409, protocol="udp"), 409, "OverQuota")
    details = ok(call(member, "GET", f"/quotas/{project}/details"))["quota"]
    assert details["security_group"]["used"] == 2 and details["security_group_rule"]["used"] == 7


def test_ports_groups_and_port_security(member, stranger):
    net = network(member)
    subnet(member, net["id"], "10.5.0.0/24")
    plain = port(member, net["id"])
    (default,) = [g for g in ok(call(member, "GET", "/security-groups"))["security_groups"] if g["name"] == "default"]
    assert plain["security_groups"] == [default["id"]]
    web = group(member)
    with_web = port(member, net["id"], security_groups=[web["id"]])
    assert with_web["security_groups"] == [web["id"]]
    open_port = port(member, net["id"], port_security_enabled=False)
    assert open_port["security_groups"] == []
    fault(call(member, "POST", "/ports", {"port": {"network_id": net["id"], "port_security_enabled": False,
                                                   "security_groups": [web["id"]]}}), 400,
          "PortSecurityAndIPRequiredForSecurityGroups")  # fmt: skip
    theirs = group(stranger, name="theirs")
    fault(call(member, "POST", "/ports", {"port": {"network_id": net["id"], "security_groups": [theirs["id"]]}}), 404)

    # A port in a group cannot turn security off; emptying its groups in the same change can.
    fault(call(member, "PUT", f"/ports/{plain['id']}", {"port": {"port_security_enabled": False}}), 409,
          "PortSecurityPortHasSecurityGroup")  # fmt: skip
    both = ok(call(member, "PUT", f"/ports/{plain['id']}", {"port": {"security_groups": [web["id"], default["id"]]}}))
    assert sorted(both["port"]["security_groups"]) == sorted([web["id"], default["id"]])
    off = {"port": {"security_groups": [], "port_security_enabled": False}}
    assert ok(call(member, "PUT", f"/ports/{plain['id']}", off))["port"]["security_groups"] == []
    # A group ports use cannot go.
    fault(call(member, "DELETE", f"/security-groups/{web['id']}"), 409, "SecurityGroupInUse")
    ok(call(member, "PUT", f"/ports/{with_web['id']}", {"port": {"security_groups": []}}))
    ok(call(member, "DELETE", f"/security-groups/{web['id']}"), 204)
    assert ok(call(member, "GET", f"/ports/{open_port['id']}"))["port"]["port_security_enabled"] is False


def test_plans_carry_compiled_rules_and_follow_membership(member, admin, django_capture_on_commit_callbacks):
    host = ComputeHost.objects.create(name="sg-host-1", tunnel_address="10.249.0.1")
    net = network(member)
    subnet(member, net["id"], "10.6.0.0/24")
    web = group(member)
    a = port(member, net["id"], security_groups=[web["id"]], fixed_ips=[{"ip_address": "10.6.0.10"}])
    Port.objects.filter(pk=a["id"]).update(host=host)
    rule(member, web["id"], protocol="tcp", port_range_min=80, port_range_max=81)
    rule(member, web["id"], protocol="icmp", remote_ip_prefix="192.0.2.7/24")
    rule(member, web["id"], protocol="udp", port_range_min=53, port_range_max=53, remote_group_id=web["id"])

    def rules_of(port_id):
        plan = network_sync.plan_for(host)
        (p,) = [p for n in plan.networks for p in n.ports if p.port_id == port_id]
        return p

    planned = rules_of(a["id"])
    assert planned.filtered is True
    compiled = {
        (r.direction, r.ethertype, r.protocol, r.port_min, r.port_max, tuple(r.remote or ())) for r in planned.rules
    }
    assert compiled == {
        ("egress", "IPv4", None, None, None, ()),
        ("egress", "IPv6", None, None, None, ()),
        ("ingress", "IPv4", 6, 80, 81, ()),
        ("ingress", "IPv4", 1, None, None, ("192.0.2.0/24",)),
        ("ingress", "IPv4", 17, 53, 53, ("10.6.0.10/32",)),
    }
    # A second member joins the group: the rule naming it follows, and the first port's host is replanned.
    before = host.network_state.generation
    with django_capture_on_commit_callbacks(execute=False):
        b = port(member, net["id"], security_groups=[web["id"]], fixed_ips=[{"ip_address": "10.6.0.11"}])
    host.network_state.refresh_from_db()
    assert host.network_state.generation > before
    (udp,) = [r for r in rules_of(a["id"]).rules if r.protocol == 17]
    assert udp.remote == ["10.6.0.10/32", "10.6.0.11/32"]
    ok(call(member, "DELETE", f"/ports/{b['id']}"), 204)
    (udp,) = [r for r in rules_of(a["id"]).rules if r.protocol == 17]
    assert udp.remote == ["10.6.0.10/32"]
    # A rule removed: gone from the plan, and the host replanned.
    before = host.network_state.generation
    tcp = ok(call(member, "GET", "/security-group-rules", protocol="tcp"))["security_group_rules"][0]
    with django_capture_on_commit_callbacks(execute=False):
        ok(call(member, "DELETE", f"/security-group-rules/{tcp['id']}"), 204)
    host.network_state.refresh_from_db()
    assert host.network_state.generation > before
    assert not [r for r in rules_of(a["id"]).rules if r.protocol == 6]
    # Without port security: unfiltered.
    ok(call(member, "PUT", f"/ports/{a['id']}", {"port": {"security_groups": [], "port_security_enabled": False}}))
    assert rules_of(a["id"]).filtered is False
