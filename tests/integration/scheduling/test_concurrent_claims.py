"""Hundreds of boots placed at once on PostgreSQL never over-commit a host and never break a hard
server-group policy: exactly as many instances as there is room for get a host, every other one ends in
ERROR with the scheduler's explanation, and a watcher reading committed claims throughout never sees a
host over its limits.

Each boot is the create service followed by the conductor's ``schedule_and_build``, run by a pool of
threads, each with its own database connection (the pool is smaller than 200 only to stay inside the
PostgreSQL server's connection limit, which other test runs share).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from portal.models import Instance, InstanceFault, ServerGroup
from portal.services import scheduling
from portal.states import TaskState, VmState

from .conftest import in_thread, make_host, new_ctx, usage_by_host

pytestmark = pytest.mark.integration

BOOTS = 200
WORKERS = 30


class Watcher:
    """Samples committed claims as fast as the database answers, and keeps every violation it sees."""

    def __init__(self, check):
        self.check = check
        self.samples = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            while not self._stop.is_set():
                self.violations.extend(self.check(usage_by_host()))
                self.samples += 1
                time.sleep(0.01)
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def fire(boot_one, count=BOOTS):
    """``count`` boots at once; returns the instances' uuids."""
    start = threading.Barrier(WORKERS)

    @in_thread
    def worker(index):
        if index < WORKERS:
            start.wait()
        return boot_one(index)

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(worker, range(count)))


def outcome(uuids):
    rows = Instance.objects.filter(uuid__in=uuids)
    placed = rows.filter(vm_state=VmState.BUILDING, task_state=TaskState.NETWORKING, host__isnull=False)
    errored = rows.filter(vm_state=VmState.ERROR, host__isnull=True)
    return placed, errored


def test_200_concurrent_boots_fill_exactly_the_room_for_100(clean_broker, boot, flavor):
    # Ten hosts with RAM for ten 512 MB instances each (vCPUs and disk to spare): room for 100.
    limits = {}
    for index in range(10):
        host = make_host(f"ram-{index:02d}", memory_mb=10 * flavor.memory_mb)
        limits[host.name] = host.memory_mb
    contexts = [new_ctx() for _ in range(8)]

    def boot_one(index):
        instance = boot(contexts[index % len(contexts)], name=f"burst-{index}")
        scheduling.schedule_and_build(instance_uuid=str(instance.uuid))
        return str(instance.uuid)

    def over_limit(usage):
        return [f"{name}: {u['memory_mb']} MB" for name, u in usage.items() if u["memory_mb"] > limits[name]]

    with Watcher(over_limit) as watcher:
        uuids = fire(boot_one)

    placed, errored = outcome(uuids)
    assert placed.count() == 100
    assert errored.count() == 100
    assert watcher.samples > 10 and watcher.violations == []
    assert {name: u["count"] for name, u in usage_by_host().items()} == dict.fromkeys(limits, 10)
    faults = InstanceFault.objects.filter(instance__in=errored)
    assert faults.count() == 100
    assert all(
        fault.message == "No valid host was found. 10 hosts: RamFilter removed 10 (not enough RAM)" for fault in faults
    )


def test_200_concurrent_boots_into_one_anti_affinity_group_take_one_host_each(clean_broker, boot):
    # 100 hosts with room for many instances each, but the group allows one member per host.
    for index in range(100):
        make_host(f"aa-{index:03d}")
    ctx = new_ctx()
    group = ServerGroup.objects.create(name="spread", project=ctx.project, user=ctx.user, policy="anti-affinity")

    def boot_one(index):
        instance = boot(ctx, name=f"spread-{index}", server_group=group)
        scheduling.schedule_and_build(instance_uuid=str(instance.uuid))
        return str(instance.uuid)

    def doubled(usage):
        return [name for name, u in usage.items() if u["groups"].get(group.pk, 0) > 1]

    with Watcher(doubled) as watcher:
        uuids = fire(boot_one)

    placed, errored = outcome(uuids)
    assert placed.count() == 100
    assert errored.count() == 100
    assert watcher.samples > 10 and watcher.violations == []
    assert len(set(placed.values_list("host_id", flat=True))) == 100
    messages = set(InstanceFault.objects.filter(instance__in=errored).values_list("message", flat=True))
    assert messages == {
        "No valid host was found. 100 hosts: ServerGroupAntiAffinityFilter removed 100 "
        "(holds a member of the anti-affinity group)"
    }


def test_max_server_per_host_lets_each_host_take_that_many_members(clean_broker, boot):
    for index in range(10):
        make_host(f"two-{index}")
    ctx = new_ctx()
    group = ServerGroup.objects.create(
        name="pairs", project=ctx.project, user=ctx.user, policy="anti-affinity", rules={"max_server_per_host": 2}
    )

    def boot_one(index):
        instance = boot(ctx, name=f"pair-{index}", server_group=group)
        scheduling.schedule_and_build(instance_uuid=str(instance.uuid))
        return str(instance.uuid)

    uuids = fire(boot_one, count=30)

    placed, errored = outcome(uuids)
    assert (placed.count(), errored.count()) == (20, 10)
    assert sorted(u["groups"][group.pk] for u in usage_by_host().values()) == [2] * 10


def test_concurrent_boots_into_an_empty_affinity_group_all_land_on_one_host(clean_broker, boot):
    for index in range(8):
        make_host(f"aff-{index}")
    ctx = new_ctx()
    group = ServerGroup.objects.create(name="together", project=ctx.project, user=ctx.user, policy="affinity")

    def boot_one(index):
        instance = boot(ctx, name=f"together-{index}", server_group=group)
        scheduling.schedule_and_build(instance_uuid=str(instance.uuid))
        return str(instance.uuid)

    uuids = fire(boot_one, count=40)

    placed, errored = outcome(uuids)
    assert (placed.count(), errored.count()) == (40, 0)
    assert len(set(placed.values_list("host_id", flat=True))) == 1
