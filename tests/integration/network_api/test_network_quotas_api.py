"""Network quotas: ``/v2.0/quotas`` shapes and policy, and enforcement (409 OverQuota) on create."""

from __future__ import annotations

import pytest

from portal.models import QuotaClassLimit, QuotaLimit

from .helpers import call, fault, network, ok, port, subnet

pytestmark = pytest.mark.integration


def test_quota_show_update_details_and_reset(member, admin, stranger):
    pid = member.project.pk
    assert ok(call(member, "GET", f"/quotas/{pid}"))["quota"] == {
        "network": 100,
        "subnet": 100,
        "port": 500,
        "security_group": 10,
        "security_group_rule": 100,
        "router": 10,
        "floatingip": 50,
    }
    assert ok(call(member, "GET", f"/quotas/{pid}/default"))["quota"] == {
        "network": 100,
        "subnet": 100,
        "port": 500,
        "security_group": 10,
        "security_group_rule": 100,
        "router": 10,
        "floatingip": 50,
    }
    fault(call(stranger, "GET", f"/quotas/{pid}"), 403)
    fault(call(stranger, "GET", f"/quotas/{pid}/details"), 403)
    fault(call(member, "PUT", f"/quotas/{pid}", {"quota": {"network": 1000}}), 403)
    fault(call(member, "DELETE", f"/quotas/{pid}"), 403)
    fault(call(member, "GET", "/quotas"), 403)

    nid = network(member)["id"]
    subnet(member, nid, "10.20.0.0/24")
    port(member, nid)
    details = ok(call(member, "GET", f"/quotas/{pid}/details"))["quota"]
    # The cloud's DHCP port is not the project's to count.
    assert details == {
        "network": {"used": 1, "limit": 100, "reserved": 0},
        "subnet": {"used": 1, "limit": 100, "reserved": 0},
        "port": {"used": 1, "limit": 500, "reserved": 0},
        # The port made the project's default group, with its four rules.
        "security_group": {"used": 1, "limit": 10, "reserved": 0},
        "security_group_rule": {"used": 4, "limit": 100, "reserved": 0},
        "router": {"used": 0, "limit": 10, "reserved": 0},
        "floatingip": {"used": 0, "limit": 50, "reserved": 0},
    }

    put = ok(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"network": 2, "port": "3"}}))
    assert put["quota"] == {
        "network": 2,
        "subnet": 100,
        "port": 3,
        "security_group": 10,
        "security_group_rule": 100,
        "router": 10,
        "floatingip": 50,
    }
    assert ok(call(member, "GET", f"/quotas/{pid}"))["quota"]["network"] == 2
    listed = ok(call(admin, "GET", "/quotas"))["quotas"]
    assert {
        "network": 2,
        "subnet": 100,
        "port": 3,
        "security_group": 10,
        "security_group_rule": 100,
        "router": 10,
        "floatingip": 50,
        "project_id": pid,
        "tenant_id": pid,
    } in listed

    fault(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"network": 0, "check_limit": True}}), 400)
    fault(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"vpnservice": 5}}), 400)
    fault(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"network": -2}}), 400)
    fault(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"network": "many"}}), 400)
    fault(call(admin, "PUT", "/quotas/no-such-project", {"quota": {"network": 5}}), 400)
    # Without check_limit (force), a limit may go below the usage, as Neutron allows.
    assert ok(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"network": 0, "force": True}}))["quota"]["network"] == 0

    ok(call(admin, "DELETE", f"/quotas/{pid}"), 204)
    assert ok(call(member, "GET", f"/quotas/{pid}"))["quota"] == {
        "network": 100,
        "subnet": 100,
        "port": 500,
        "security_group": 10,
        "security_group_rule": 100,
        "router": 10,
        "floatingip": 50,
    }
    assert not QuotaLimit.objects.filter(project_id=pid).exists()


def test_over_quota_is_409(member, admin):
    pid = member.project.pk
    ok(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"network": 1, "subnet": 1, "port": 1}}))
    nid = network(member)["id"]
    error = fault(call(member, "POST", "/networks", {"network": {}}), 409, "OverQuota")
    assert "network" in error["message"]
    subnet(member, nid, "10.21.0.0/24")  # its DHCP port is not counted
    fault(call(member, "POST", "/subnets", {"subnet": {"network_id": nid, "cidr": "10.22.0.0/24"}}), 409, "OverQuota")
    port(member, nid)
    fault(call(member, "POST", "/ports", {"port": {"network_id": nid}}), 409, "OverQuota")
    # An unlimited project limit lifts it; the default class lowers everyone else's.
    ok(call(admin, "PUT", f"/quotas/{pid}", {"quota": {"port": -1}}))
    port(member, nid)
    QuotaClassLimit.objects.create(class_name="default", resource="network", hard_limit=0)
    fault(call(admin, "POST", "/networks", {"network": {}}), 409, "OverQuota")


def test_compute_quota_sets_do_not_show_network_limits(member):
    body = member.client.get(f"/compute/v2.1/os-quota-sets/{member.project.pk}").json()["quota_set"]
    assert not {"network", "subnet", "port"} & set(body)
