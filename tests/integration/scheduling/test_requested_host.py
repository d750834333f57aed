"""Boots that name their host, placed by the conductor on PostgreSQL: a requested host (2.74 ``host``) goes
through every filter on that host alone, a forced one (``zone:host``) through the filters a claim needs;
neither is rescheduled elsewhere, and concurrent forced boots never over-commit the host."""

from __future__ import annotations

import pytest

from compute_tasks import rpc
from portal.models import Aggregate, ComputeHost, Instance, InstanceActionEvent
from portal.services import scheduling
from portal.states import TaskState, VmState

from .conftest import fault, make_host, new_ctx, schedule, usage_by_host
from .test_concurrent_claims import Watcher, fire, outcome

pytestmark = pytest.mark.integration


def events(instance, name):
    return InstanceActionEvent.objects.filter(action__instance=instance, event=name)


def test_a_requested_host_is_honoured_over_the_host_that_weighs_best(clean_broker, ctx, boot):
    make_host("roomy", memory_mb=200_000)
    make_host("small", memory_mb=8192)
    assert schedule(boot(ctx, name="anywhere")) == "roomy"

    instance = boot(ctx, name="pinned", requested_host="small")

    assert schedule(instance) == "small"
    assert (instance.requested_host, instance.force_host, instance.availability_zone) == ("small", False, "nova")
    note = "Host small requested: the scheduler considers only this host and runs every filter."
    assert events(instance, "api_create").get().details == note
    scheduled = events(instance, "conductor_schedule_and_build").get()
    assert (scheduled.host, scheduled.details) == ("small", note)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"memory_mb": 256}, "RamFilter removed 1 (not enough RAM)"),
        ({"enabled": False, "disabled_reason": "maintenance"}, "ComputeFilter removed 1 (disabled)"),
        ({"forced_down": True}, "ComputeFilter removed 1 (down)"),
    ],
)
def test_a_requested_host_that_does_not_fit_is_no_valid_host_saying_so(clean_broker, ctx, boot, fields, why):
    make_host("roomy", memory_mb=200_000)
    make_host("pinned", **fields)
    instance = boot(ctx, name="x", requested_host="pinned")

    assert schedule(instance) is None

    assert (instance.vm_state, instance.host) == (VmState.ERROR, None)
    assert fault(instance).message == f"No valid host was found. The request named host pinned: {why}"
    assert '"requested_host": "pinned"' in fault(instance).details
    assert not Instance.objects.filter(host__name="roomy").exists()


def test_a_forced_host_bypasses_the_filters_a_claim_does_not_need(clean_broker, ctx, boot):
    reserved = make_host("reserved")
    make_host("open", memory_mb=200_000)
    Aggregate.objects.create(
        name="private", metadata={"filter_tenant_id": "another-project", "max_instances_per_host": "1"}
    ).hosts.add(reserved)
    schedule(boot(new_ctx(), name="first", requested_host="reserved", force_host=True))

    requested = boot(ctx, name="requested", requested_host="reserved")
    forced = boot(ctx, name="forced", requested_host="reserved", force_host=True)

    assert schedule(requested) is None
    assert fault(requested).message == (
        "No valid host was found. The request named host reserved: NumInstancesFilter removed 1 (too many instances)"
    )
    assert schedule(forced) == "reserved"
    assert events(forced, "conductor_schedule_and_build").get().details == (
        "Host reserved forced (zone:host): the scheduler considers only this host and runs only the filters a "
        "forced host does not bypass."
    )


def test_a_forced_host_still_needs_room(clean_broker, ctx, boot, flavor):
    make_host("tight", memory_mb=flavor.memory_mb)
    assert schedule(boot(ctx, name="fits", requested_host="tight", force_host=True)) == "tight"
    over = boot(ctx, name="over", requested_host="tight", force_host=True)

    assert schedule(over) is None
    assert fault(over).message == (
        "No valid host was found. The request forced host tight: RamFilter removed 1 (not enough RAM)"
    )
    assert usage_by_host()["tight"]["memory_mb"] == flavor.memory_mb


def test_a_forced_host_takes_its_own_zone(clean_broker, ctx, boot):
    zoned = make_host("zoned")
    Aggregate.objects.create(name="rack", metadata={"availability_zone": "az1"}).hosts.add(zoned)
    instance = boot(ctx, name="z", requested_host="zoned", force_host=True)
    assert schedule(instance) == "zoned"
    assert instance.availability_zone == "az1"


def test_a_multi_create_request_on_a_requested_host_is_placed_there_whole_or_not_at_all(
    clean_broker, ctx, boot, flavor
):
    make_host("roomy", memory_mb=200_000)
    make_host("pinned", memory_mb=3 * flavor.memory_mb)
    three = [
        boot(ctx, name=f"a-{i}", reservation_id="r-three", launch_index=i, requested_host="pinned") for i in range(3)
    ]
    schedule(three[0])
    placed = Instance.objects.filter(reservation_id="r-three").values_list("host__name", flat=True)
    assert list(placed) == ["pinned"] * 3

    ComputeHost.objects.filter(name="pinned").update(memory_mb=5 * flavor.memory_mb)  # room for 2 more, not 3
    more = [
        boot(ctx, name=f"b-{i}", reservation_id="r-more", launch_index=i, requested_host="pinned") for i in range(3)
    ]
    assert schedule(more[0]) is None
    rows = Instance.objects.filter(reservation_id="r-more")
    assert {(i.vm_state, i.host_id) for i in rows} == {(VmState.ERROR, None)}
    assert fault(rows[0]).message == (
        "No valid host was found for instance 3 of 3 (2 placed before it). "
        "The request named host pinned: RamFilter removed 1 (not enough RAM)"
    )


@pytest.mark.parametrize("forced", [False, True])
def test_a_failed_build_on_a_requested_host_is_not_rescheduled(clean_broker, ctx, boot, settings, forced):
    settings.SCHEDULER = {**settings.SCHEDULER, "MAX_ATTEMPTS": 3}
    make_host("roomy", memory_mb=200_000)
    make_host("pinned")
    instance = boot(ctx, name="x", requested_host="pinned", force_host=forced)
    schedule(instance)

    scheduling.build_failed(
        report=rpc.BuildFailed(
            instance_uuid=str(instance.uuid), host="pinned", request_id="", message="disk exploded", reschedulable=True
        )
    )

    instance.refresh_from_db()
    assert (instance.vm_state, instance.task_state, instance.host) == (VmState.ERROR, None, None)
    assert instance.build_attempts == 1
    assert fault(instance).message == (
        f"Build of instance {instance.uuid} failed on host pinned: disk exploded "
        "Not rescheduled: the request named host pinned."
    )
    assert not Instance.objects.filter(host__name="roomy").exists()


def test_concurrent_boots_forced_onto_one_host_never_overcommit_it(clean_broker, boot, flavor):
    # Room for 10 on the forced host; the other host has room for all and must stay empty.
    host = make_host("forced", memory_mb=10 * flavor.memory_mb)
    make_host("elsewhere", memory_mb=200_000)
    contexts = [new_ctx() for _ in range(4)]

    def boot_one(index):
        instance = boot(contexts[index % len(contexts)], name=f"f-{index}", requested_host="forced", force_host=True)
        scheduling.schedule_and_build(instance_uuid=str(instance.uuid))
        return str(instance.uuid)

    def over_limit(usage):
        used = usage.get("forced", {}).get("memory_mb", 0)
        return [f"forced: {used} MB"] if used > host.memory_mb else []

    with Watcher(over_limit) as watcher:
        uuids = fire(boot_one, count=40)

    placed, errored = outcome(uuids)
    assert (placed.count(), errored.count()) == (10, 30)
    assert watcher.violations == []
    assert set(placed.values_list("host__name", flat=True)) == {"forced"}
    assert {i.task_state for i in Instance.objects.filter(uuid__in=uuids)} <= {TaskState.NETWORKING, None}
