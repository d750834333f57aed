"""The conductor's placement on PostgreSQL: multi-create batches, zones, aggregates, hints, the
explanation in the fault, and rescheduling a build that failed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute_tasks import rpc
from portal.models import Aggregate, ComputeHost, Instance, InstanceActionEvent, ServerGroup
from portal.selectors.hosts import host_state_snapshots
from portal.services import instances as instance_services
from portal.services import scheduling
from portal.states import TaskState, VmState

from .conftest import fault, make_host, schedule

pytestmark = pytest.mark.integration


def test_a_multi_create_request_is_placed_whole_with_a_claim_each(clean_broker, ctx, boot, flavor):
    make_host("a", memory_mb=3 * flavor.memory_mb)
    make_host("b", memory_mb=2 * flavor.memory_mb)
    batch = [boot(ctx, name=f"m-{i}", reservation_id="r-batch", launch_index=i) for i in range(5)]

    assert schedule(batch[2]) is not None

    placed = Instance.objects.filter(reservation_id="r-batch").order_by("launch_index")
    assert [i.task_state for i in placed] == [TaskState.NETWORKING] * 5
    assert sorted(i.host.name for i in placed) == ["a", "a", "a", "b", "b"]
    # One claim (and one scheduling event) per instance.
    assert (
        InstanceActionEvent.objects.filter(action__instance__in=placed, event="conductor_schedule_and_build").count()
        == 5
    )
    # The other instances' own messages arrive later and find nothing left to do.
    assert all(schedule(i) is None for i in batch)


def test_a_multi_create_request_that_does_not_fit_fails_whole_and_says_where_it_stopped(
    clean_broker, ctx, boot, flavor
):
    make_host("a", memory_mb=3 * flavor.memory_mb)
    make_host("b", memory_mb=3 * flavor.memory_mb)
    batch = [boot(ctx, name=f"m-{i}", reservation_id="r-big", launch_index=i) for i in range(7)]

    assert schedule(batch[0]) is None

    rows = Instance.objects.filter(reservation_id="r-big")
    assert {(i.vm_state, i.host_id) for i in rows} == {(VmState.ERROR, None)}
    assert fault(rows[0]).message == (
        "No valid host was found for instance 7 of 7 (6 placed before it). "
        "2 hosts: RamFilter removed 2 (not enough RAM)"
    )


def test_anti_affinity_holds_within_one_batch(clean_broker, ctx, boot):
    for name in ("a", "b", "c"):
        make_host(name)
    group = ServerGroup.objects.create(name="g", project=ctx.project, user=ctx.user, policy="anti-affinity")
    batch = [boot(ctx, name=f"g-{i}", reservation_id="r-g", launch_index=i, server_group=group) for i in range(3)]
    schedule(batch[0])
    assert sorted(Instance.objects.filter(reservation_id="r-g").values_list("host__name", flat=True)) == ["a", "b", "c"]


def test_the_fault_explains_filter_by_filter(clean_broker, ctx, boot, flavor):
    from datetime import timedelta

    from django.utils import timezone

    make_host("down-1", last_heartbeat=timezone.now() - timedelta(hours=1))
    make_host("down-2", last_heartbeat=None)
    make_host("off", enabled=False, disabled_reason="maintenance")
    for index in range(6):
        make_host(f"small-{index}", memory_mb=flavor.memory_mb - 1)
    make_host("taken")
    group = ServerGroup.objects.create(name="g", project=ctx.project, user=ctx.user, policy="anti-affinity")
    first = boot(ctx, name="first", server_group=group)
    assert schedule(first) == "taken"

    second = boot(ctx, name="second", server_group=group)
    assert schedule(second) is None

    assert second.vm_state == VmState.ERROR
    assert fault(second).message == (
        "No valid host was found. 10 hosts: ComputeFilter removed 3 (2 down, 1 disabled), "
        "RamFilter removed 6 (not enough RAM), "
        "ServerGroupAntiAffinityFilter removed 1 (holds a member of the anti-affinity group)"
    )
    assert '"name": "ServerGroupAntiAffinityFilter"' in fault(second).details


def test_a_zone_comes_from_aggregate_metadata_and_is_recorded_on_the_instance(clean_broker, ctx, boot):
    plain = make_host("plain", memory_mb=200_000)  # the roomiest, so chosen when no zone is asked for
    zoned = make_host("zoned")
    Aggregate.objects.create(name="rack-1", metadata={"availability_zone": "az1"}).hosts.add(zoned)

    anywhere = boot(ctx, name="anywhere")
    in_az1 = boot(ctx, name="in-az1", availability_zone="az1")
    in_default = boot(ctx, name="in-default", availability_zone="nova")
    assert (schedule(anywhere), schedule(in_az1), schedule(in_default)) == ("plain", "zoned", "plain")
    assert (anywhere.availability_zone, in_az1.availability_zone, in_default.availability_zone) == (
        "nova",
        "az1",
        "nova",
    )

    nowhere = boot(ctx, name="nowhere", availability_zone="az9")
    assert schedule(nowhere) is None
    assert fault(nowhere).message == (
        "No valid host was found. 2 hosts: AvailabilityZoneFilter removed 2 (in another availability zone)"
    )
    assert plain.pk


def test_aggregate_allocation_ratio_and_the_hosts_own_ratio(clean_broker, ctx, boot, flavor):
    host = make_host("over", memory_mb=2 * flavor.memory_mb)
    aggregate = Aggregate.objects.create(name="overcommit", metadata={"ram_allocation_ratio": "2.0"})
    aggregate.hosts.add(host)
    placed = [schedule(boot(ctx, name=f"o-{i}")) for i in range(5)]
    assert placed == ["over"] * 4 + [None]

    ComputeHost.objects.filter(pk=host.pk).update(ram_allocation_ratio=3.0)  # the host's own ratio wins
    assert [schedule(boot(ctx, name=f"p-{i}")) for i in range(3)] == ["over", "over", None]


def test_same_host_and_different_host_hints(clean_broker, ctx, boot):
    make_host("a")
    make_host("b")
    first = boot(ctx, name="first")
    first_host = schedule(first)
    other = "b" if first_host == "a" else "a"

    near = boot(ctx, name="near", scheduler_hints={"same_host": [str(first.uuid)]})
    away = boot(ctx, name="away", scheduler_hints={"different_host": str(first.uuid)})
    assert (schedule(near), schedule(away)) == (first_host, other)


def test_tenant_isolation_and_flavor_extra_specs_against_aggregates(clean_broker, ctx, boot, flavor):
    from tests.factories import FlavorFactory

    from .conftest import new_ctx

    reserved = make_host("reserved", memory_mb=200_000)
    ssd = make_host("ssd")
    make_host("plain")
    Aggregate.objects.create(name="private", metadata={"filter_tenant_id": ctx.project.pk}).hosts.add(reserved)
    Aggregate.objects.create(name="fast", metadata={"ssd": "true"}).hosts.add(ssd)
    fast = FlavorFactory(vcpus=1, memory_mb=512, root_gb=1, extra_specs={"aggregate_instance_extra_specs:ssd": "true"})

    assert schedule(boot(ctx, name="mine")) == "reserved"
    assert schedule(boot(new_ctx(), name="theirs")) != "reserved"
    assert schedule(boot(ctx, name="fast", flavor=fast)) == "ssd"


def test_snapshots_cost_the_same_queries_for_5_and_50_hosts(clean_broker, ctx, boot):
    def count_queries():
        with CaptureQueriesContext(connection) as queries:
            host_state_snapshots(instance_uuids=["6f1e0c3a-2b9d-4c55-9a57-0d6b0e2f8a11"])
        return len(queries)

    aggregate = Aggregate.objects.create(name="all", metadata={"availability_zone": "az1"})
    for index in range(5):
        aggregate.hosts.add(make_host(f"q-{index}"))
    few = count_queries()
    for index in range(5, 50):
        aggregate.hosts.add(make_host(f"q-{index}"))
    schedule(boot(ctx, name="somewhere"))
    # hosts, their instances, the claims of moves in progress, aggregates, the instances the hints name
    assert count_queries() == few == 6


# --- rescheduling ------------------------------------------------------------------------------------


def report_failure(instance, *, reschedulable=True, message="disk exploded"):
    instance.refresh_from_db()
    scheduling.build_failed(
        report=rpc.BuildFailed(
            instance_uuid=str(instance.uuid),
            host=instance.host.name,
            request_id="req-x",
            message=message,
            reschedulable=reschedulable,
        )
    )
    instance.refresh_from_db()


def test_a_failed_build_is_retried_on_another_host_and_the_host_is_marked(clean_broker, ctx, boot, settings):
    settings.SCHEDULER = {**settings.SCHEDULER, "MAX_ATTEMPTS": 3}
    for name in ("a", "b", "c", "d"):
        make_host(name)
    instance = boot(ctx, name="flaky")
    first = schedule(instance)

    report_failure(instance)

    assert instance.task_state == TaskState.NETWORKING
    assert instance.host.name != first
    assert instance.attempted_hosts == [first]
    assert instance.build_attempts == 2
    assert ComputeHost.objects.get(name=first).failed_builds == 1
    # The failed host's claim was released: nothing holds resources there any more.
    assert not Instance.objects.filter(host__name=first).exists()

    second = instance.host.name
    report_failure(instance)
    third = instance.host.name
    assert len({first, second, third}) == 3
    report_failure(instance)

    assert instance.vm_state == VmState.ERROR
    assert instance.host is None
    assert instance.attempted_hosts == [first, second, third]
    assert fault(instance).message.startswith(
        f"Build of instance {instance.uuid} failed on host {third}: disk exploded"
    )
    assert "Gave up after 3 builds" in fault(instance).message


def test_the_build_failure_weigher_keeps_new_builds_off_a_failing_host(clean_broker, ctx, boot):
    make_host("roomy", memory_mb=200_000, failed_builds=2)
    make_host("small", memory_mb=8192)
    assert schedule(boot(ctx, name="x")) == "small"


def test_a_success_clears_the_hosts_failure_count(clean_broker, ctx, boot):
    make_host("a", failed_builds=4)
    instance = boot(ctx, name="ok")
    schedule(instance)
    scheduling.instance_built(
        report=rpc.InstanceBuilt(
            instance_uuid=str(instance.uuid), host="a", request_id="", power_state=1, vnc_host=None, vnc_port=None
        )
    )
    instance.refresh_from_db()
    assert instance.vm_state == VmState.ACTIVE
    assert ComputeHost.objects.get(name="a").failed_builds == 0


def test_a_failure_that_would_happen_anywhere_is_not_retried(clean_broker, ctx, boot):
    make_host("a")
    make_host("b")
    instance = boot(ctx, name="hopeless")
    schedule(instance)
    report_failure(instance, reschedulable=False, message="image is corrupt")
    assert instance.vm_state == VmState.ERROR
    assert instance.build_attempts == 1
    assert "image is corrupt" in fault(instance).message


def test_a_reschedule_with_nowhere_to_go_keeps_the_build_failure_first(clean_broker, ctx, boot):
    make_host("only")
    instance = boot(ctx, name="alone")
    schedule(instance)
    report_failure(instance)
    assert instance.vm_state == VmState.ERROR
    assert fault(instance).message.startswith(f"Build of instance {instance.uuid} failed on host only: disk exploded")
    assert "ignore_hosts removed 1 (a build failed there)" in fault(instance).message


def test_a_stale_failure_report_changes_nothing(clean_broker, ctx, boot):
    make_host("a")
    instance = boot(ctx, name="done")
    schedule(instance)
    scheduling.build_failed(
        report=rpc.BuildFailed(instance_uuid=str(instance.uuid), host="elsewhere", request_id="", message="late")
    )
    instance.refresh_from_db()
    assert (instance.task_state, instance.host.name, instance.attempted_hosts) == (TaskState.NETWORKING, "a", [])


def test_create_stores_the_requested_zone_only(clean_broker, ctx, flavor, image):
    instance = instance_services.instance_create(
        ctx=ctx, spec=instance_services.ServerSpec(name="z", flavor=flavor, image=image, networks="none")
    )
    assert instance.availability_zone == ""
