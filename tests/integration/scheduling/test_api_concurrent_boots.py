"""200 boots fired at once over HTTP at the API under gunicorn, placed by a real conductor (several
worker processes) through the broker, on PostgreSQL, at hosts with room for 100: exactly 100 get a
host (BUILD), 100 end in ERROR with the scheduler's explanation, and a watcher reading committed claims
throughout never sees a host over its limits. The same with a hard anti-affinity group."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from portal.models import Instance, InstanceFault, Membership, QuotaLimit, ServerGroup
from portal.states import TaskState, VmState
from tests.factories import FlavorFactory, ImageFactory, MembershipFactory
from tests.processes import Cluster, free_port, purge_broker, wait_until

from .conftest import UNLIMITED, make_host, usage_by_host
from .test_concurrent_claims import Watcher

pytestmark = pytest.mark.integration

BOOTS = 200
CLIENTS = 50


@pytest.fixture
def cloud(transactional_db, tmp_path):
    purge_broker()
    port = free_port()
    cluster = Cluster(f"http://127.0.0.1:{port}", tmp_path)
    cluster.start_api(port, workers=3, threads=4)
    cluster.start_conductor(concurrency=6)
    yield cluster
    cluster.stop()
    purge_broker()


def member_with_room() -> Membership:
    membership = MembershipFactory()
    for resource in UNLIMITED:
        QuotaLimit.objects.create(project=membership.project, resource=resource, hard_limit=-1)
    return membership


def fire(cloud, memberships, body_for):
    """``BOOTS`` POST /servers from ``CLIENTS`` client threads released together; returns server ids."""
    start = threading.Barrier(CLIENTS)
    local = threading.local()

    def post(index):
        membership = memberships[index % len(memberships)]
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["OpenStack-API-Version"] = "compute 2.47"
            start.wait()
        response = local.session.post(
            f"{cloud.api_url}/compute/v2.1/servers",
            json=body_for(index),
            auth=(membership.user.username, "secret"),
            timeout=120,
        )
        assert response.status_code == 202, response.text
        return response.json()["server"]["id"]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(post, range(BOOTS)))


def settled(ids):
    rows = Instance.objects.filter(uuid__in=ids)
    return not rows.filter(task_state=TaskState.SCHEDULING).exists() and rows.count() == len(ids)


def test_200_boots_over_http_at_room_for_100(cloud):
    flavor = FlavorFactory(flavorid="1", name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1)
    image = ImageFactory()
    limits = {make_host(f"h-{i:02d}", memory_mb=10 * flavor.memory_mb).name: 10 * flavor.memory_mb for i in range(10)}
    memberships = [member_with_room() for _ in range(4)]

    def body(index):
        return {"server": {"name": f"b-{index}", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}

    def over_limit(usage):
        return [f"{name}: {u['memory_mb']} MB" for name, u in usage.items() if u["memory_mb"] > limits[name]]

    with Watcher(over_limit) as watcher:
        ids = fire(cloud, memberships, body)
        wait_until(lambda: settled(ids), 300, message="every boot placed or refused")

    rows = Instance.objects.filter(uuid__in=ids)
    assert rows.filter(vm_state=VmState.BUILDING, task_state=TaskState.NETWORKING).count() == 100, cloud.logs()
    errored = rows.filter(vm_state=VmState.ERROR)
    assert errored.count() == 100
    assert watcher.samples > 10 and watcher.violations == []
    assert {name: u["count"] for name, u in usage_by_host().items()} == dict.fromkeys(limits, 10)
    assert set(InstanceFault.objects.filter(instance__in=errored).values_list("message", flat=True)) == {
        "No valid host was found. 10 hosts: RamFilter removed 10 (not enough RAM)"
    }


def test_200_boots_over_http_into_one_anti_affinity_group(cloud):
    FlavorFactory(flavorid="1", name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1)
    image = ImageFactory()
    for index in range(100):
        make_host(f"aa-{index:03d}")
    membership = member_with_room()
    group = ServerGroup.objects.create(
        name="spread", project=membership.project, user=membership.user, policy="anti-affinity"
    )

    def body(index):
        return {
            "server": {"name": f"s-{index}", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"},
            "os:scheduler_hints": {"group": str(group.uuid)},
        }

    def doubled(usage):
        return [name for name, u in usage.items() if u["groups"].get(group.pk, 0) > 1]

    with Watcher(doubled) as watcher:
        ids = fire(cloud, [membership], body)
        wait_until(lambda: settled(ids), 300, message="every boot placed or refused")

    rows = Instance.objects.filter(uuid__in=ids)
    placed = rows.filter(vm_state=VmState.BUILDING, task_state=TaskState.NETWORKING)
    assert placed.count() == 100, cloud.logs()
    assert len(set(placed.values_list("host_id", flat=True))) == 100
    assert rows.filter(vm_state=VmState.ERROR).count() == 100
    assert watcher.samples > 10 and watcher.violations == []
