"""``/os-hypervisors`` and ``/os-services``: one of each per compute host, shaped per microversion."""

import time

import pytest
from django.conf import settings
from django.test import override_settings

from compute_tasks import rpc
from portal.models import ComputeHost
from portal.services.hosts import host_heartbeat
from tests.factories import FlavorFactory, InstanceFactory

from .admin_helpers import BASE, ComputeHostFactory, allow_version, stale, v

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def every_version_of_these_resources(monkeypatch):
    """The shapes of hypervisors and services are implemented up to 2.88, whatever the API advertises."""
    allow_version(monkeypatch, "2.88")


@pytest.fixture
def hosts(db):
    """Two hosts: node1 up with two servers (one of them busy), node2 down and disabled."""
    node1 = ComputeHostFactory(name="node1", host_ip="192.0.2.10")
    node2 = stale(ComputeHostFactory(name="node2", enabled=False, disabled_reason="bad disk", vcpus=4))
    flavor = FlavorFactory(vcpus=2, memory_mb=1024, root_gb=10)
    InstanceFactory(host=node1, flavor=flavor, name="a")
    InstanceFactory(host=node1, flavor=flavor, name="b", task_state="rebooting")
    InstanceFactory(host=node1, flavor=flavor, name="gone", vm_state="deleted")
    return node1, node2


def get(caller, path: str, version: str = "2.1"):
    return caller.client.get(f"{BASE}{path}", **v(version))


def test_list_before_2_53_uses_integer_ids(admin, hosts):
    node1, node2 = hosts
    listed = get(admin, "/os-hypervisors").json()["hypervisors"]
    assert listed == [
        {"id": node1.pk, "hypervisor_hostname": "node1", "state": "up", "status": "enabled"},
        {"id": node2.pk, "hypervisor_hostname": "node2", "state": "down", "status": "disabled"},
    ]


def test_detail_with_resources_before_2_88(admin, hosts):
    node1, _ = hosts
    with override_settings(SCHEDULER={**settings.SCHEDULER, "RESERVED_HOST_MEMORY_MB": 512}):
        detail = get(admin, f"/os-hypervisors/{node1.pk}", "2.27").json()["hypervisor"]
    assert detail == {
        "id": node1.pk,
        "hypervisor_hostname": "node1",
        "state": "up",
        "status": "enabled",
        "hypervisor_type": "QEMU",
        "hypervisor_version": 8002000,
        "host_ip": "192.0.2.10",
        "service": {"id": node1.pk, "host": "node1", "disabled_reason": None},
        "vcpus": 8,
        "memory_mb": 16384,
        "local_gb": 200,
        "vcpus_used": 4,
        "memory_mb_used": 2048 + 512,
        "local_gb_used": 20,
        "free_ram_mb": 16384 - 2048 - 512,
        "free_disk_gb": 180,
        "current_workload": 1,
        "running_vms": 2,
        "disk_available_least": 180,
        "cpu_info": '{"arch": "x86_64"}',
    }
    assert get(admin, f"/os-hypervisors/{node1.pk}", "2.28").json()["hypervisor"]["cpu_info"] == {"arch": "x86_64"}
    listed = get(admin, "/os-hypervisors/detail", "2.28").json()["hypervisors"]
    assert [h["service"]["disabled_reason"] for h in listed] == [None, "bad disk"]


def test_uuids_with_servers_and_patterns_from_2_53(admin, hosts):
    node1, node2 = hosts
    listed = get(admin, "/os-hypervisors?with_servers=true", "2.53").json()["hypervisors"]
    assert [h["id"] for h in listed] == [str(node1.uuid), str(node2.uuid)]
    assert [s["name"] for s in listed[0]["servers"]] == ["a", "b"]
    assert "servers" not in listed[1]  # no servers: the key is left out before 2.75
    shown = get(admin, f"/os-hypervisors/{node1.uuid}?with_servers=1", "2.53").json()["hypervisor"]
    assert shown["service"]["id"] == str(node1.uuid)
    assert len(shown["servers"]) == 2
    assert get(admin, f"/os-hypervisors/{node1.pk}", "2.53").status_code == 400
    assert get(admin, f"/os-hypervisors/{node1.uuid}", "2.52").status_code == 404

    matched = get(admin, "/os-hypervisors?hypervisor_hostname_pattern=de2", "2.53").json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in matched] == ["node2"]
    none = get(admin, "/os-hypervisors?hypervisor_hostname_pattern=zzz", "2.53")
    assert none.status_code == 404
    assert none.json()["itemNotFound"]["message"] == "No hypervisor matching 'zzz' could be found."
    assert get(admin, "/os-hypervisors?hypervisor_hostname_pattern=n&limit=1", "2.53").status_code == 400
    assert get(admin, "/os-hypervisors?colour=red", "2.53").status_code == 400
    # The search and servers routes end at 2.52.
    assert get(admin, "/os-hypervisors/node/search", "2.53").status_code == 404
    assert get(admin, "/os-hypervisors/node/servers", "2.53").status_code == 404


def test_servers_list_always_present_from_2_75(admin, hosts):
    listed = get(admin, "/os-hypervisors?with_servers=true", "2.75").json()["hypervisors"]
    assert listed[1]["servers"] == []


def test_search_and_servers_routes_before_2_53(admin, hosts):
    node1, _ = hosts
    found = get(admin, "/os-hypervisors/node1/search").json()["hypervisors"]
    assert found == [{"id": node1.pk, "hypervisor_hostname": "node1", "state": "up", "status": "enabled"}]
    with_servers = get(admin, "/os-hypervisors/node/servers").json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in with_servers] == ["node1", "node2"]
    assert sorted(s["name"] for s in with_servers[0]["servers"]) == ["a", "b"]
    assert "servers" not in with_servers[1]
    assert get(admin, "/os-hypervisors/nothing/search").status_code == 404


def test_paging_from_2_33(admin, hosts):
    node1, node2 = hosts
    first = get(admin, "/os-hypervisors?limit=1", "2.33").json()
    assert [h["id"] for h in first["hypervisors"]] == [node1.pk]
    assert f"marker={node1.pk}" in first["hypervisors_links"][0]["href"]
    second = get(admin, f"/os-hypervisors/detail?limit=1&marker={node1.pk}", "2.33").json()
    assert [h["id"] for h in second["hypervisors"]] == [node2.pk]
    assert "hypervisors_links" not in second
    by_uuid = get(admin, f"/os-hypervisors?marker={node1.uuid}", "2.53").json()["hypervisors"]
    assert [h["id"] for h in by_uuid] == [str(node2.uuid)]
    assert get(admin, "/os-hypervisors?marker=nope", "2.33").status_code == 400


def test_uptime_before_2_88_and_in_the_detail_from_2_88(admin, hosts):
    node1, node2 = hosts
    uptime = get(admin, f"/os-hypervisors/{node1.pk}/uptime").json()["hypervisor"]
    assert uptime == {
        "id": node1.pk,
        "hypervisor_hostname": "node1",
        "state": "up",
        "status": "enabled",
        "uptime": node1.uptime,
    }
    down = get(admin, f"/os-hypervisors/{node2.pk}/uptime")
    assert down.status_code == 400
    assert down.json()["badRequest"]["message"] == "Compute service of node2 is unavailable at this time."
    ComputeHost.objects.filter(pk=node1.pk).update(uptime="")
    assert get(admin, f"/os-hypervisors/{node1.pk}/uptime").status_code == 501

    ComputeHost.objects.filter(pk=node1.pk).update(uptime=" 10:00:00 up 1 day,  1:00,  0 user,  load average: 0.00")
    detail = get(admin, f"/os-hypervisors/{node1.uuid}", "2.88").json()["hypervisor"]
    assert detail["uptime"].startswith(" 10:00:00 up 1 day")
    assert "vcpus" not in detail and "cpu_info" not in detail and "running_vms" not in detail
    assert get(admin, f"/os-hypervisors/{node1.uuid}/uptime", "2.88").status_code == 404
    assert get(admin, "/os-hypervisors/statistics", "2.88").status_code == 404


def test_statistics_sum_the_enabled_hosts(admin, hosts):
    stats = get(admin, "/os-hypervisors/statistics").json()["hypervisor_statistics"]
    assert stats["count"] == 1
    assert (stats["vcpus"], stats["vcpus_used"], stats["running_vms"]) == (8, 4, 2)
    assert stats["free_disk_gb"] == 180


def test_hypervisors_and_services_are_for_admins(member, hosts):
    node1, _ = hosts
    for path in (
        "/os-hypervisors",
        "/os-hypervisors/detail",
        f"/os-hypervisors/{node1.pk}",
        f"/os-hypervisors/{node1.pk}/uptime",
        "/os-hypervisors/statistics",
        "/os-services",
    ):
        assert get(member, path).status_code == 403, path
    response = member.client.put(
        f"{BASE}/os-services/disable", {"host": "node1", "binary": "nova-compute"}, format="json"
    )
    assert response.status_code == 403
    assert ComputeHost.objects.get(pk=node1.pk).enabled


# --- services ----------------------------------------------------------------------------------------


def test_service_list_per_version(admin, hosts):
    node1, node2 = hosts
    services = get(admin, "/os-services").json()["services"]
    assert services[0] == {
        "id": node1.pk,
        "binary": "nova-compute",
        "host": "node1",
        "zone": "nova",
        "status": "enabled",
        "state": "up",
        "updated_at": services[0]["updated_at"],
        "disabled_reason": None,
    }
    assert services[1]["state"] == "down" and services[1]["disabled_reason"] == "bad disk"
    assert get(admin, "/os-services", "2.11").json()["services"][0]["forced_down"] is False
    assert get(admin, "/os-services", "2.53").json()["services"][0]["id"] == str(node1.uuid)
    assert [s["host"] for s in get(admin, "/os-services?host=node2").json()["services"]] == ["node2"]
    assert get(admin, "/os-services?binary=nova-conductor").json()["services"] == []
    assert len(get(admin, "/os-services?binary=nova-compute").json()["services"]) == 2


def put(admin, path: str, body: dict, version: str = "2.1"):
    return admin.client.put(f"{BASE}/os-services/{path}", body, format="json", **v(version))


def test_legacy_updates_before_2_53(admin, hosts):
    node1, _ = hosts
    disabled = put(admin, "disable-log-reason", {"host": "node1", "binary": "nova-compute", "disabled_reason": "fan"})
    assert disabled.status_code == 200
    assert disabled.json() == {
        "service": {"host": "node1", "binary": "nova-compute", "status": "disabled", "disabled_reason": "fan"}
    }
    node1.refresh_from_db()
    assert (node1.enabled, node1.disabled_reason) == (False, "fan")
    enabled = put(admin, "enable", {"host": "node1", "binary": "nova-compute"})
    assert enabled.json() == {"service": {"host": "node1", "binary": "nova-compute", "status": "enabled"}}
    node1.refresh_from_db()
    assert (node1.enabled, node1.disabled_reason) == (True, "")
    assert put(admin, "disable", {"host": "node1", "binary": "nova-compute"}).json()["service"]["status"] == "disabled"

    # force-down exists from 2.11.
    assert put(admin, "force-down", {"host": "node1", "binary": "nova-compute", "forced_down": True}).status_code == 404
    forced = put(admin, "force-down", {"host": "node1", "binary": "nova-compute", "forced_down": True}, "2.11")
    assert forced.json() == {"service": {"host": "node1", "binary": "nova-compute", "forced_down": True}}
    assert get(admin, "/os-services?host=node1", "2.11").json()["services"][0]["state"] == "down"

    assert put(admin, "disable-log-reason", {"host": "node1", "binary": "nova-compute"}).status_code == 400
    conductor = put(admin, "disable", {"host": "node1", "binary": "nova-conductor"})
    assert conductor.status_code == 400
    assert "Only nova-compute services can be updated" in conductor.json()["badRequest"]["message"]
    assert put(admin, "disable", {"host": "nowhere", "binary": "nova-compute"}).status_code == 404
    assert put(admin, "reboot", {"host": "node1", "binary": "nova-compute"}).status_code == 404
    assert put(admin, "disable", {"host": "node1"}).status_code == 400


def test_updates_by_uuid_from_2_53(admin, hosts):
    node1, node2 = hosts
    response = put(admin, str(node1.uuid), {"status": "disabled", "disabled_reason": "upgrade"}, "2.53")
    assert response.status_code == 200
    service = response.json()["service"]
    assert (service["id"], service["status"], service["disabled_reason"]) == (str(node1.uuid), "disabled", "upgrade")
    assert service["forced_down"] is False and service["zone"] == "nova"
    forced = put(admin, str(node1.uuid), {"forced_down": True}, "2.53").json()["service"]
    assert (forced["forced_down"], forced["state"]) == (True, "down")
    unforced = put(admin, str(node1.uuid), {"forced_down": False, "status": "enabled"}, "2.53").json()["service"]
    assert (unforced["forced_down"], unforced["state"], unforced["status"]) == (False, "up", "enabled")
    assert unforced["disabled_reason"] is None

    reason_when_enabling = put(admin, str(node2.uuid), {"status": "enabled", "disabled_reason": "x"}, "2.53")
    assert reason_when_enabling.status_code == 400
    nothing = put(admin, str(node2.uuid), {}, "2.53")
    assert nothing.status_code == 400
    assert "No updates were requested" in nothing.json()["badRequest"]["message"]
    assert put(admin, "not-a-uuid", {"status": "enabled"}, "2.53").status_code == 400
    assert put(admin, "11111111-2222-3333-4444-555555555555", {"status": "enabled"}, "2.53").status_code == 404
    assert put(admin, str(node2.uuid), {"status": "sleeping"}, "2.53").status_code == 400
    # The legacy action routes are gone at 2.53: "disable" is not a uuid.
    assert put(admin, "disable", {"host": "node2", "binary": "nova-compute"}, "2.53").status_code == 400


def test_a_disabled_host_is_shown_disabled_in_the_hypervisor_list(admin, hosts):
    node1, _ = hosts
    put(admin, str(node1.uuid), {"status": "disabled"}, "2.53")
    listed = get(admin, "/os-hypervisors", "2.53").json()["hypervisors"]
    assert listed[0]["status"] == "disabled"


def test_list_queries_do_not_grow_with_hosts(admin, hosts, django_assert_max_num_queries):
    counts = {}
    for path in ("/os-hypervisors/detail?with_servers=true", "/os-services"):
        with django_assert_max_num_queries(12) as few:
            get(admin, path, "2.53")
        counts[path] = len(few.captured_queries)
    for n in range(10):
        host = ComputeHostFactory(name=f"more{n}")
        InstanceFactory(host=host)
    for path, baseline in counts.items():
        with django_assert_max_num_queries(baseline):
            assert get(admin, path, "2.53").status_code == 200


def test_a_heartbeat_brings_the_hosts_uptime(admin):
    ComputeHostFactory(name="beating")
    beat = rpc.Heartbeat(
        host="beating",
        sent_at=time.time(),
        vcpus=2,
        memory_mb=2048,
        disk_gb=20,
        hypervisor_type="QEMU",
        hypervisor_version=1,
        cpu_arch="x86_64",
        uptime=" 12:00:00 up 4 min,  0 user,  load average: 0.01, 0.02, 0.03",
    )
    host_id = host_heartbeat(beat=rpc.Heartbeat.from_dict(beat.to_dict()), signed_at=time.time())
    shown = get(admin, f"/os-hypervisors/{host_id}/uptime").json()["hypervisor"]
    assert shown["uptime"] == " 12:00:00 up 4 min,  0 user,  load average: 0.01, 0.02, 0.03"
    assert shown["state"] == "up"
