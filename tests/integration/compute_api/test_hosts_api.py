"""``/os-hosts`` (admins, until 2.42): the enabled compute hosts by zone, a host's resources per project,
scheduling switched on and off as ``/os-services`` does, and the libvirt driver's 501 for maintenance
mode and power actions."""

import pytest
from django.conf import settings
from django.test import override_settings

from portal.models import Aggregate, ComputeHost
from tests.factories import FlavorFactory, InstanceFactory, ProjectFactory

from .admin_helpers import BASE, ComputeHostFactory, stale, v

pytestmark = pytest.mark.integration


@pytest.fixture
def hosts(db):
    """node1 in zone az1, node2 in the default zone, node3 disabled."""
    node1 = ComputeHostFactory(name="node1")
    node2 = ComputeHostFactory(name="node2")
    node3 = ComputeHostFactory(name="node3", enabled=False)
    Aggregate.objects.create(name="agg", metadata={"availability_zone": "az1"}).hosts.add(node1)
    return node1, node2, node3


def test_list_enabled_hosts_with_their_zone(admin, hosts):
    response = admin.client.get(f"{BASE}/os-hosts")
    assert response.status_code == 200
    assert response.json()["hosts"] == [
        {"host_name": "node1", "service": "compute", "zone": "az1"},
        {"host_name": "node2", "service": "compute", "zone": settings.CLOUD["DEFAULT_AVAILABILITY_ZONE"]},
    ]


def test_zone_filter(admin, hosts):
    def names(zone):
        return [h["host_name"] for h in admin.client.get(f"{BASE}/os-hosts", {"zone": zone}).json()["hosts"]]

    assert names("az1") == ["node1"]
    assert names("") == ["node1", "node2"]
    assert names("nowhere") == []


def test_show_resources_per_project(admin, hosts):
    node1 = hosts[0]
    one, two = ProjectFactory(), ProjectFactory()
    small = FlavorFactory(vcpus=1, memory_mb=512, root_gb=5)
    big = FlavorFactory(vcpus=4, memory_mb=4096, root_gb=20)
    InstanceFactory(host=node1, flavor=small, project=one)
    InstanceFactory(host=node1, flavor=big, project=one, ephemeral_gb=3)
    InstanceFactory(host=node1, flavor=small, project=two)
    InstanceFactory(host=node1, flavor=big, project=two, vm_state="deleted")
    InstanceFactory(host=hosts[1], flavor=big, project=two)
    with override_settings(SCHEDULER={**settings.SCHEDULER, "RESERVED_HOST_MEMORY_MB": 256}):
        response = admin.client.get(f"{BASE}/os-hosts/node1", **v("2.42"))
    assert response.status_code == 200
    rows = [r["resource"] for r in response.json()["host"]]
    assert rows[:3] == [
        {"host": "node1", "project": "(total)", "cpu": 8, "memory_mb": 16384, "disk_gb": 200},
        {"host": "node1", "project": "(used_now)", "cpu": 6, "memory_mb": 5376, "disk_gb": 33},
        {"host": "node1", "project": "(used_max)", "cpu": 6, "memory_mb": 5120, "disk_gb": 33},
    ]
    assert sorted(rows[3:], key=lambda r: r["cpu"]) == [
        {"host": "node1", "project": two.pk, "cpu": 1, "memory_mb": 512, "disk_gb": 5},
        {"host": "node1", "project": one.pk, "cpu": 5, "memory_mb": 4608, "disk_gb": 28},
    ]


def test_unknown_host_is_404(admin, hosts):
    for method, path, body in [
        ("get", "/os-hosts/nosuch", None),
        ("put", "/os-hosts/nosuch", {"status": "enable"}),
        ("get", "/os-hosts/nosuch/reboot", None),
    ]:
        response = getattr(admin.client, method)(f"{BASE}{path}", body, format="json")
        assert response.status_code == 404, path
        assert response.json()["itemNotFound"]["message"] == "Compute host nosuch could not be found."


def test_disable_and_enable_scheduling(admin, hosts):
    node1 = hosts[0]
    response = admin.client.put(f"{BASE}/os-hosts/node1", {"status": "disable"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"host": "node1", "status": "disabled"}
    assert ComputeHost.objects.get(pk=node1.pk).enabled is False
    # The service shows it, and the host leaves the list of enabled hosts.
    (service,) = [s for s in admin.client.get(f"{BASE}/os-services").json()["services"] if s["host"] == "node1"]
    assert service["status"] == "disabled"
    assert "node1" not in [h["host_name"] for h in admin.client.get(f"{BASE}/os-hosts").json()["hosts"]]
    response = admin.client.put(f"{BASE}/os-hosts/node1", {"status": "ENABLE"}, format="json")
    assert response.json() == {"host": "node1", "status": "enabled"}
    assert ComputeHost.objects.get(pk=node1.pk).enabled is True


@pytest.mark.parametrize(
    "body",
    [{}, {"status": "invalid"}, {"maintenance_mode": "on"}, {"status": "enable", "param": "x"}, {"status": True}, []],
)
def test_bad_body_is_400(admin, hosts, body):
    response = admin.client.put(f"{BASE}/os-hosts/node1", body, format="json")
    assert response.status_code == 400, response.content
    assert ComputeHost.objects.get(name="node1").enabled is True


def test_maintenance_mode_is_not_implemented_and_changes_nothing(admin, hosts):
    body = {"status": "disable", "maintenance_mode": "enable"}
    response = admin.client.put(f"{BASE}/os-hosts/node1", body, format="json")
    assert response.status_code == 501
    assert response.json()["notImplemented"]["message"] == "The requested functionality is not supported."
    assert ComputeHost.objects.get(name="node1").enabled is True


@pytest.mark.parametrize("action", ["startup", "shutdown", "reboot"])
def test_power_actions_are_not_implemented(admin, hosts, action):
    response = admin.client.get(f"{BASE}/os-hosts/node1/{action}")
    assert response.status_code == 501
    assert response.json()["notImplemented"]["code"] == 501


def test_a_host_that_is_down_is_400_for_updates_and_actions(admin, hosts):
    stale(hosts[1])
    assert admin.client.put(f"{BASE}/os-hosts/node2", {"status": "disable"}, format="json").status_code == 400
    assert admin.client.get(f"{BASE}/os-hosts/node2/reboot").status_code == 400
    assert ComputeHost.objects.get(name="node2").enabled is True
    # Showing it is fine.
    assert admin.client.get(f"{BASE}/os-hosts/node2").status_code == 200


def test_gone_from_2_43(admin, hosts):
    for path in ("/os-hosts", "/os-hosts/node1", "/os-hosts/node1/reboot"):
        assert admin.client.get(f"{BASE}{path}", **v("2.43")).status_code == 404
    response = admin.client.put(f"{BASE}/os-hosts/node1", {"status": "disable"}, format="json", **v("2.43"))
    assert response.status_code == 404
    assert ComputeHost.objects.get(name="node1").enabled is True


def test_admins_only(member, reader, hosts):
    for caller in (member, reader):
        assert caller.client.get(f"{BASE}/os-hosts").status_code == 403
        assert caller.client.get(f"{BASE}/os-hosts/node1").status_code == 403
        assert caller.client.get(f"{BASE}/os-hosts/node1/reboot").status_code == 403
        response = caller.client.put(f"{BASE}/os-hosts/node1", {"status": "disable"}, format="json")
        assert response.status_code == 403
    assert ComputeHost.objects.get(name="node1").enabled is True


def test_list_query_count(admin, hosts, django_assert_max_num_queries):
    for n in range(5):
        ComputeHostFactory(name=f"more{n}")
    with django_assert_max_num_queries(12):
        assert len(admin.client.get(f"{BASE}/os-hosts").json()["hosts"]) == 7
