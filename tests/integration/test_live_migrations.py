"""Live migration, evacuation and host drains as the control plane drives them: the services, the API and
the conductor's tasks against PostgreSQL, with the hosts' signed reports made by hand and what is sent
captured. Real hosts doing the same are in ``tests/system/test_live_migration.py``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute_tasks import rpc
from portal import states
from portal.auth.context import RequestContext
from portal.conductor import tasks
from portal.models import ComputeHost, HostDrain, Instance, Migration, ServerGroup
from portal.services import actions, drains, lifecycle, live_migrations, moves, reaper
from portal.services import instances as instance_services
from portal.states import TaskState, VmState
from tests.factories import FlavorFactory, InstanceFactory, MembershipFactory
from tests.integration.scheduling.conftest import make_host
from tests.integration.test_moves import report, run, usage
from tests.processes import signed_as_host

pytestmark = pytest.mark.integration


@pytest.fixture
def sent(monkeypatch):
    calls = []
    for name in (
        "prepare_live_migration",
        "live_migrate",
        "abort_live_migration",
        "force_complete_live_migration",
        "post_live_migration",
        "rollback_live_migration",
        "build_and_run_instance",
        "migrate_disk",
        "confirm_migration",
        "terminate_instance",
    ):
        monkeypatch.setattr(rpc, name, lambda host, message, _n=name, **_: calls.append((_n, host, message)))
    for name in ("live_migrate_server", "evacuate_server", "move_server"):
        monkeypatch.setattr(rpc, name, lambda message, _n=name: calls.append((_n, None, message)))
    return calls


@pytest.fixture
def cloud(db):
    membership = MembershipFactory()
    hosts = [make_host(name, vcpus=8, memory_mb=8192) for name in ("hv1", "hv2")]
    flavor = FlavorFactory(vcpus=1, memory_mb=512, root_gb=1)
    instance = InstanceFactory(
        project=membership.project, user=membership.user, flavor=flavor, host=hosts[0], vnc_port=5901
    )
    admin = RequestContext(user=membership.user, project=membership.project, role="admin")
    member = RequestContext(user=membership.user, project=membership.project, role="member")
    return type("Cloud", (), {"admin": admin, "member": member, "instance": instance, "flavor": flavor})


def progress(migration, host, remaining):
    message = rpc.MigrationProgress(
        migration_id=migration.pk,
        host=host,
        memory_total_bytes=100,
        memory_processed_bytes=100 - remaining,
        memory_remaining_bytes=remaining,
    ).to_dict()
    tasks.migration_progress(message, signed_as_host(host, rpc.MIGRATION_PROGRESS, message))


def start_live(cloud, sent, capture):
    instance = cloud.instance
    migration = run(capture, live_migrations.instance_live_migrate, ctx=cloud.admin, instance=instance)
    instance.refresh_from_db()
    assert (instance.task_state, migration.status, migration.block_migration) == ("migrating", "queued", True)
    assert sent.pop()[0] == "live_migrate_server"
    assert run(capture, live_migrations.live_migrate_server, migration_id=migration.pk) == "hv2"
    name, host, request = sent.pop()
    assert (name, host, request.block_migration) == ("prepare_live_migration", "hv2", True)
    assert usage("hv2") == (1, 512)  # the destination is claimed from now on
    report(
        capture,
        instance,
        "hv2",
        "prepare_live_migration",
        migration_id=migration.pk,
        power_state=rpc.NOSTATE,
        migrate_uri="qemu+tcp://127.0.0.22/system",
        vnc_host="127.0.0.1",
    )
    name, host, request = sent.pop()
    assert (name, host, request.dest_uri) == ("live_migrate", "hv1", "qemu+tcp://127.0.0.22/system")
    migration.refresh_from_db()
    assert migration.status == "running"
    return migration


def test_a_live_migration_moves_the_running_server_with_progress(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    migration = start_live(cloud, sent, capture)
    instance = cloud.instance
    progress(migration, "hv1", 40)
    progress(migration, "hv2", 0)  # the destination does not speak for the source's transfer
    migration.refresh_from_db()
    assert (migration.memory_processed_bytes, migration.memory_remaining_bytes) == (60, 40)
    instance.refresh_from_db()
    assert instance.vm_state == VmState.ACTIVE and instance.host.name == "hv1"
    # The server's progress is the transfer's (the compute API's ``progress`` while MIGRATING).
    assert (instance.step_progress, migration.transfer_percent) == (60, 60)
    assert states.server_progress(instance.vm_state, instance.task_state, instance.step_progress) == 60

    report(capture, instance, "hv1", "live_migrate", migration_id=migration.pk, power_state=rpc.NOSTATE)
    assert sent.pop()[:2] == ("post_live_migration", "hv2")
    report(
        capture, instance, "hv2", "post_live_migration", migration_id=migration.pk, vnc_host="127.0.0.1", vnc_port=5944
    )
    migration.refresh_from_db()
    assert (instance.vm_state, instance.task_state, instance.host.name, instance.vnc_port) == (
        VmState.ACTIVE,
        None,
        "hv2",
        5944,
    )
    assert migration.status == "completed"
    assert usage("hv1") == (0, 0) and usage("hv2") == (1, 512)


def test_the_destination_reports_the_final_figures_and_a_late_report_does_not_take_them_back(
    cloud, sent, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    migration = start_live(cloud, sent, capture)
    make_host("hv3", vcpus=8, memory_mb=8192)
    progress(migration, "hv1", 40)
    report(capture, cloud.instance, "hv1", "live_migrate", migration_id=migration.pk, power_state=rpc.NOSTATE)
    migration.refresh_from_db()
    assert migration.status == "post-migrating"

    progress(migration, "hv3", 0)  # a host that takes no part in it
    migration.refresh_from_db()
    assert migration.memory_remaining_bytes == 40
    progress(migration, "hv2", 0)  # the guest arrived: the destination kept the job's final figures
    migration.refresh_from_db()
    assert (migration.memory_processed_bytes, migration.memory_remaining_bytes, migration.transfer_percent) == (
        100,
        0,
        100,
    )
    progress(migration, "hv1", 40)  # the source's older figures, delivered late
    migration.refresh_from_db()
    assert (migration.memory_processed_bytes, migration.memory_remaining_bytes) == (100, 0)


def test_an_aborted_live_migration_leaves_the_server_on_its_source(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    migration = start_live(cloud, sent, capture)
    instance = cloud.instance
    run(capture, live_migrations.abort, ctx=cloud.admin, instance=instance, migration=migration)
    assert sent.pop()[:2] == ("abort_live_migration", "hv1")
    report(capture, instance, "hv1", "live_migrate", migration_id=migration.pk, error="cancelled")
    assert sent.pop()[:2] == ("rollback_live_migration", "hv2")
    migration.refresh_from_db()
    assert (instance.vm_state, instance.task_state, instance.host.name) == (VmState.ACTIVE, None, "hv1")
    assert migration.status == "cancelled"
    assert usage("hv2") == (0, 0)


def test_force_complete_only_while_running(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    queued = run(capture, live_migrations.instance_live_migrate, ctx=cloud.admin, instance=instance)
    with pytest.raises(lifecycle.StateConflict):
        live_migrations.force_complete(ctx=cloud.admin, instance=instance, migration=queued)
    run(capture, live_migrations.live_migrate_server, migration_id=queued.pk)
    report(
        capture,
        instance,
        "hv2",
        "prepare_live_migration",
        migration_id=queued.pk,
        power_state=rpc.NOSTATE,
        migrate_uri="qemu+tcp://x/system",
        vnc_host="127.0.0.1",
    )
    queued.refresh_from_db()
    sent.clear()
    run(capture, live_migrations.force_complete, ctx=cloud.admin, instance=instance, migration=queued)
    assert sent.pop()[:2] == ("force_complete_live_migration", "hv1")
    with pytest.raises(actions.NotAllowed):
        live_migrations.force_complete(ctx=cloud.member, instance=instance, migration=queued)


def test_live_migration_refusals(cloud, sent):
    with pytest.raises(actions.NotAllowed):
        live_migrations.instance_live_migrate(ctx=cloud.member, instance=cloud.instance)
    with pytest.raises(LookupError):
        live_migrations.instance_live_migrate(ctx=cloud.admin, instance=cloud.instance, host="nowhere")
    with pytest.raises(instance_services.InvalidRequest, match="current host"):
        live_migrations.instance_live_migrate(ctx=cloud.admin, instance=cloud.instance, host="hv1")
    with pytest.raises(instance_services.InvalidRequest, match="shared storage"):
        live_migrations.instance_live_migrate(ctx=cloud.admin, instance=cloud.instance, block_migration=False)
    Instance.objects.filter(pk=cloud.instance.pk).update(vm_state=VmState.STOPPED)
    cloud.instance.refresh_from_db()
    with pytest.raises(lifecycle.StateConflict):
        live_migrations.instance_live_migrate(ctx=cloud.admin, instance=cloud.instance)


def test_a_destination_that_cannot_prepare_ends_the_migration(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    migration = run(capture, live_migrations.instance_live_migrate, ctx=cloud.admin, instance=instance)
    run(capture, live_migrations.live_migrate_server, migration_id=migration.pk)
    sent.clear()
    report(capture, instance, "hv2", "prepare_live_migration", migration_id=migration.pk, error="no space")
    migration.refresh_from_db()
    assert (instance.task_state, instance.host.name, migration.status) == (None, "hv1", "failed")
    assert sent.pop()[:2] == ("rollback_live_migration", "hv2")


def test_a_live_migration_whose_lease_ends_is_failed_and_rolled_back(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    migration = start_live(cloud, sent, capture)
    Instance.objects.filter(pk=cloud.instance.pk).update(task_deadline=timezone.now() - timedelta(seconds=1))
    with capture(execute=True):
        reaper.reap_expired_tasks()
    cloud.instance.refresh_from_db()
    migration.refresh_from_db()
    assert (cloud.instance.task_state, cloud.instance.host.name, migration.status) == (None, "hv1", "error")
    assert ("rollback_live_migration", "hv2") in [(n, h) for n, h, _ in sent]
    assert usage("hv2") == (0, 0)


def test_evacuation_rebuilds_the_server_of_a_dead_host_elsewhere(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    with pytest.raises(lifecycle.StateConflict, match="still in use"):
        live_migrations.instance_evacuate(ctx=cloud.admin, instance=instance)
    ComputeHost.objects.filter(name="hv1").update(forced_down=True)
    run(capture, live_migrations.instance_evacuate, ctx=cloud.admin, instance=instance)
    instance.refresh_from_db()
    assert api_status(instance) == "REBUILD"
    migration = Migration.objects.get(instance=instance)
    assert (migration.migration_type, migration.status) == ("evacuation", "accepted")
    assert run(capture, live_migrations.evacuate_server, migration_id=migration.pk) == "hv2"
    name, host, build = sent.pop()
    assert (name, host, build.instance_uuid) == ("build_and_run_instance", "hv2", str(instance.uuid))
    assert usage("hv1") == (0, 0) and usage("hv2") == (1, 512)
    built = rpc.InstanceBuilt(
        instance_uuid=str(instance.uuid),
        host="hv2",
        request_id="r",
        power_state=rpc.RUNNING,
        vnc_host="",
        vnc_port=5900,
    ).to_dict()
    with capture(execute=True):
        tasks.instance_built(built, signed_as_host("hv2", rpc.INSTANCE_BUILT, built))
    instance.refresh_from_db()
    assert (instance.vm_state, instance.task_state, instance.host.name) == (VmState.ACTIVE, None, "hv2")
    assert Migration.objects.get(pk=migration.pk).status == "done"
    # The old host comes back and still has the domain: its heartbeat gets it removed.
    ComputeHost.objects.filter(name="hv1").update(forced_down=False)
    beat = rpc.Heartbeat(
        host="hv1",
        sent_at=timezone.now().timestamp() + 1,
        vcpus=8,
        memory_mb=8192,
        disk_gb=100,
        hypervisor_type="QEMU",
        hypervisor_version=1,
        cpu_arch="x86_64",
        domains=[rpc.DomainState(instance_uuid=str(instance.uuid), power_state=rpc.RUNNING)],
    ).to_dict()
    with capture(execute=True):
        tasks.heartbeat(beat, signed_as_host("hv1", rpc.HEARTBEAT, beat))
    assert ("terminate_instance", "hv1") in [(name, host) for name, host, _ in sent]


def api_status(instance) -> str:
    return states.api_status(instance.vm_state, instance.task_state)


def test_a_drain_moves_every_server_once_and_names_those_that_cannot_move(
    cloud, sent, settings, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    settings.CLOUD = {**settings.CLOUD, "DRAIN_PARALLEL": 2}
    make_host("hv3", vcpus=8, memory_mb=8192)
    hv1 = ComputeHost.objects.get(name="hv1")
    group = ServerGroup.objects.create(
        name="spread", project=cloud.instance.project, user=cloud.instance.user, policy="anti-affinity"
    )
    running = [cloud.instance]
    for _ in range(2):
        running.append(
            InstanceFactory(project=cloud.instance.project, user=cloud.instance.user, flavor=cloud.flavor, host=hv1)
        )
    Instance.objects.filter(pk__in=[i.pk for i in running]).update(server_group=group)
    InstanceFactory(  # stopped: cold-migrated
        project=cloud.instance.project, user=cloud.instance.user, flavor=cloud.flavor, host=hv1, vm_state="stopped"
    )
    suspended = InstanceFactory(
        project=cloud.instance.project, user=cloud.instance.user, flavor=cloud.flavor, host=hv1, vm_state="suspended"
    )
    drain = run(capture, drains.drain_start, user=cloud.admin.user, host=hv1)
    hv1.refresh_from_db()
    assert not hv1.enabled
    items = {item.instance_id: item for item in drain.items.all()}
    assert items[suspended.pk].status == "failed" and "resume" in items[suspended.pk].reason
    moving = [item for item in items.values() if item.status == "moving"]
    assert len(moving) == 2  # DRAIN_PARALLEL at a time

    # Advancing again (a second conductor, or the same one after a restart) starts nothing twice.
    run(capture, drains.advance, drain.pk)
    assert Migration.objects.count() == 2

    # Each started move gets placed by the scheduler; the anti-affinity group spreads the running ones.
    for migration in Migration.objects.all():
        if migration.migration_type == "live-migration":
            run(capture, live_migrations.live_migrate_server, migration_id=migration.pk)
        else:
            run(capture, moves.move_server, migration_id=migration.pk)
    # Two members of the anti-affinity group moving at once go to two different hosts.
    assert sorted(m.dest_host.name for m in Migration.objects.select_related("dest_host")) == ["hv2", "hv3"]

    run(capture, drains.drain_cancel, drain=drain)
    drain.refresh_from_db()
    assert drain.status == HostDrain.Status.CANCELLED
    statuses = sorted(item.status for item in drain.items.all())
    assert statuses.count("skipped") == 2 and statuses.count("moving") == 2 and statuses.count("failed") == 1
    with pytest.raises(drains.DrainConflict):
        drains.drain_cancel(drain=drain)


def test_a_drain_finishes_when_its_moves_end(cloud, sent, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    hv1 = ComputeHost.objects.get(name="hv1")
    drain = run(capture, drains.drain_start, user=cloud.admin.user, host=hv1)
    with pytest.raises(drains.DrainConflict):
        drains.drain_start(user=cloud.admin.user, host=hv1)
    (item,) = drain.items.all()
    migration = item.migration
    run(capture, live_migrations.live_migrate_server, migration_id=migration.pk)
    report(
        capture,
        cloud.instance,
        "hv2",
        "prepare_live_migration",
        migration_id=migration.pk,
        power_state=rpc.NOSTATE,
        migrate_uri="qemu+tcp://x/system",
        vnc_host="127.0.0.1",
    )
    report(capture, cloud.instance, "hv1", "live_migrate", migration_id=migration.pk, power_state=rpc.NOSTATE)
    report(
        capture,
        cloud.instance,
        "hv2",
        "post_live_migration",
        migration_id=migration.pk,
        vnc_host="127.0.0.1",
        vnc_port=5901,
    )
    run(capture, drains.advance_drains)
    drain.refresh_from_db()
    item.refresh_from_db()
    assert (drain.status, item.status) == ("done", "moved")
    assert Instance.objects.get(pk=cloud.instance.pk).task_state != TaskState.MIGRATING


def test_a_move_whose_placing_message_was_lost_is_sent_again(cloud, sent, settings, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    settings.CLOUD = {**settings.CLOUD, "SCHEDULING_RESEND_AFTER": 30}
    migration = run(capture, live_migrations.instance_live_migrate, ctx=cloud.admin, instance=cloud.instance)
    sent.clear()
    assert reaper.resend_lost_moves() == 0  # not waiting long enough yet
    Migration.objects.filter(pk=migration.pk).update(updated_at=timezone.now() - timedelta(seconds=60))
    with capture(execute=True):
        assert reaper.resend_lost_moves() == 1
    assert sent == [("live_migrate_server", None, rpc.MoveRequest(migration_id=migration.pk))]
    assert reaper.resend_lost_moves() == 0  # the resend counts as the last send
    # Once placed, nothing is sent again however old it is.
    run(capture, live_migrations.live_migrate_server, migration_id=migration.pk)
    Migration.objects.filter(pk=migration.pk).update(updated_at=timezone.now() - timedelta(seconds=60))
    assert reaper.resend_lost_moves() == 0


@pytest.mark.parametrize(("stopped", "power_on"), [(False, True), (True, False)])
def test_an_evacuation_from_2_95_leaves_the_server_stopped(
    cloud, sent, django_capture_on_commit_callbacks, stopped, power_on
):
    capture = django_capture_on_commit_callbacks
    instance = cloud.instance
    ComputeHost.objects.filter(name="hv1").update(forced_down=True)
    run(capture, live_migrations.instance_evacuate, ctx=cloud.admin, instance=instance, stopped=stopped)
    migration = Migration.objects.get(instance=instance)
    assert migration.power_on is power_on
    run(capture, live_migrations.evacuate_server, migration_id=migration.pk)
    name, host, build = sent.pop()
    assert (name, host, build.power_on) == ("build_and_run_instance", "hv2", power_on)
    built = rpc.InstanceBuilt(
        instance_uuid=str(instance.uuid),
        host="hv2",
        request_id="r",
        power_state=rpc.RUNNING if power_on else rpc.SHUTDOWN,
        vnc_host="",
        vnc_port=5900,
    ).to_dict()
    with capture(execute=True):
        tasks.instance_built(built, signed_as_host("hv2", rpc.INSTANCE_BUILT, built))
    instance.refresh_from_db()
    expected = VmState.ACTIVE if power_on else VmState.STOPPED
    assert (instance.vm_state, instance.task_state, instance.host.name) == (expected, None, "hv2")


def test_an_evacuated_server_that_was_stopped_stays_stopped(cloud, sent, django_capture_on_commit_callbacks):
    Instance.objects.filter(pk=cloud.instance.pk).update(vm_state=VmState.STOPPED, power_state=rpc.SHUTDOWN)
    cloud.instance.refresh_from_db()
    ComputeHost.objects.filter(name="hv1").update(forced_down=True)
    run(django_capture_on_commit_callbacks, live_migrations.instance_evacuate, ctx=cloud.admin, instance=cloud.instance)
    assert Migration.objects.get(instance=cloud.instance).power_on is False
