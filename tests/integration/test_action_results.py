"""What the conductor does with hosts' reports of pause/suspend/rebuild/snapshot, and with such tasks whose
lease ran out: the services against PostgreSQL, with the reports made by hand."""

from datetime import timedelta

import pytest
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.conductor import tasks
from portal.models import ComputeHost, ConsoleToken, Image, InstanceAction, InstanceFault
from portal.services import actions, lifecycle, reaper
from portal.states import TaskState, VmState
from tests.factories import ImageFactory, InstanceFactory, MembershipFactory
from tests.processes import signed_as_host

pytestmark = pytest.mark.integration


@pytest.fixture
def instance(db):
    membership = MembershipFactory()
    host = ComputeHost.objects.create(name="hv1", last_heartbeat=timezone.now())
    row = InstanceFactory(project=membership.project, user=membership.user, host=host, vnc_port=5901)
    row.ctx = RequestContext(user=membership.user, project=membership.project, role="member")
    return row


def begin(instance, verb):
    actions.instance_action(ctx=instance.ctx, instance=instance, action=verb)
    instance.refresh_from_db()


def report(instance, action, **fields):
    values = {
        "instance_uuid": str(instance.uuid),
        "host": "hv1",
        "request_id": instance.ctx.request_id,
        "action": action,
        "power_state": rpc.RUNNING,
    }
    values.update(fields)
    # Through the conductor's task, as a host's signed report arrives.
    message = rpc.ActionResult(**values).to_dict()
    name = rpc.ACTION_FAILED if values.get("error") else rpc.ACTION_DONE
    (tasks.action_failed if values.get("error") else tasks.action_done)(
        message, signed_as_host(values["host"], name, message)
    )
    instance.refresh_from_db()


@pytest.mark.parametrize(
    ("verb", "before", "after", "power", "vnc"),
    [
        ("pause", VmState.ACTIVE, VmState.PAUSED, rpc.PAUSED, 5901),
        ("unpause", VmState.PAUSED, VmState.ACTIVE, rpc.RUNNING, 5901),
        ("suspend", VmState.ACTIVE, VmState.SUSPENDED, rpc.SUSPENDED, None),
        ("resume", VmState.SUSPENDED, VmState.ACTIVE, rpc.RUNNING, 5907),
    ],
)
def test_a_report_finishes_the_transition(instance, verb, before, after, power, vnc):
    instance.vm_state = before
    instance.save()
    begin(instance, verb)
    report(instance, verb, power_state=power, vnc_host="127.0.0.1" if vnc else None, vnc_port=vnc)
    assert (instance.vm_state, instance.task_state, instance.power_state) == (after, None, power)
    assert instance.vnc_port == vnc
    events = InstanceAction.objects.get(instance=instance, action=verb).events.values_list("event", "result")
    assert list(events) == [(f"api_{verb}", "Success"), (f"compute_{verb}_instance", "Success")]
    # The same report again (a redelivery) changes nothing.
    report(instance, verb, power_state=rpc.CRASHED)
    assert instance.power_state == power


def test_a_suspended_servers_console_tokens_are_revoked(instance):
    ConsoleToken.objects.create(token_hash="h", instance=instance, user=instance.user, expires_at=timezone.now())
    begin(instance, "suspend")
    report(instance, "suspend", power_state=rpc.SUSPENDED)
    assert not ConsoleToken.objects.exists()


def test_a_failed_pause_idles_the_server_where_it_was(instance):
    begin(instance, "pause")
    report(instance, "pause", error="the guest is gone", details="Traceback", power_state=rpc.SHUTDOWN)
    assert (instance.vm_state, instance.task_state, instance.power_state) == (VmState.ACTIVE, None, rpc.SHUTDOWN)
    action = InstanceAction.objects.get(instance=instance, action="pause")
    assert action.message == "Error"
    assert InstanceFault.objects.get(instance=instance).message == "the guest is gone"


def test_a_rebuild_report_sets_the_new_addresses_and_keeps_a_stopped_server_stopped(instance):
    actions.instance_rebuild(ctx=instance.ctx, instance=instance, image=instance.image)
    report(instance, "rebuild", addresses=[{"addr": "10.0.2.15", "version": 4, "mac": "m"}], vnc_port=5999)
    assert (instance.vm_state, instance.task_state, instance.vnc_port) == (VmState.ACTIVE, None, 5999)
    assert instance.addresses == [{"addr": "10.0.2.15", "version": 4, "mac": "m"}]

    instance.vm_state = VmState.STOPPED
    instance.save()
    actions.instance_rebuild(ctx=instance.ctx, instance=instance, image=instance.image)
    report(instance, "rebuild", power_state=rpc.SHUTDOWN)
    assert (instance.vm_state, instance.power_state) == (VmState.STOPPED, rpc.SHUTDOWN)


def test_a_failed_rebuild_leaves_the_server_in_error(instance):
    actions.instance_rebuild(ctx=instance.ctx, instance=instance, image=instance.image)
    report(instance, "rebuild", error="download failed", power_state=rpc.NOSTATE)
    assert (instance.vm_state, instance.task_state) == (VmState.ERROR, None)
    assert instance.faults.get().message == "download failed"


def snapshot(instance):
    image = actions.instance_snapshot(ctx=instance.ctx, instance=instance, name="snap")
    instance.refresh_from_db()
    return image


def test_a_snapshot_finishes_only_when_its_image_is_active(instance):
    image = snapshot(instance)
    assert instance.task_state == TaskState.IMAGE_SNAPSHOT
    report(instance, "snapshot", image_id=str(image.id))
    # The host said it uploaded, but the image has no data: that is a failure, and the image goes.
    assert (instance.vm_state, instance.task_state) == (VmState.ACTIVE, None)
    assert Image.objects.get(pk=image.pk).status == "deleted"

    image = snapshot(instance)
    Image.objects.filter(pk=image.pk).update(status="active")
    report(instance, "snapshot", image_id=str(image.id), power_state=rpc.PAUSED)
    assert (instance.task_state, instance.power_state) == (None, rpc.PAUSED)
    assert Image.objects.get(pk=image.pk).status == "active"
    log = InstanceAction.objects.filter(instance=instance, action="createImage").order_by("start_time", "id")
    assert list(log.values_list("message", flat=True)) == ["Error", None]


def test_a_failed_snapshot_deletes_its_image_even_when_the_report_is_late(instance):
    image = snapshot(instance)
    report(instance, "snapshot", image_id=str(image.id), error="qemu-img convert failed")
    assert instance.task_state is None
    assert Image.objects.get(pk=image.pk).status == "deleted"

    late = snapshot(instance)
    instance.task_state = None  # something else ended the task meanwhile
    instance.save()
    report(instance, "snapshot", image_id=str(late.id), error="upload failed")
    assert Image.objects.get(pk=late.pk).status == "deleted"


def expire(instance):
    type(instance).objects.filter(pk=instance.pk).update(task_deadline=timezone.now() - timedelta(seconds=1))


def test_the_reaper_ends_a_rebuild_in_error_and_a_snapshot_without_its_image(instance, db):
    other = InstanceFactory(project=instance.project, user=instance.user, host=instance.host)
    other.ctx = instance.ctx
    actions.instance_rebuild(ctx=instance.ctx, instance=instance, image=instance.image)
    image = snapshot(other)
    kept = ImageFactory(owner=instance.project, properties={"instance_uuid": str(other.uuid)})
    expire(instance)
    expire(other)

    assert reaper.reap_expired_tasks() == 2

    instance.refresh_from_db()
    other.refresh_from_db()
    assert (instance.vm_state, instance.task_state) == (VmState.ERROR, None)
    assert (other.vm_state, other.task_state) == (VmState.ACTIVE, None)
    assert Image.objects.get(pk=image.pk).status == "deleted"
    assert Image.objects.get(pk=kept.pk).status == "active"  # an earlier, finished snapshot stays


def test_reset_state_wins_over_a_running_task(instance):
    begin(instance, "pause")
    lifecycle.reset_state(instance=instance, vm_state=VmState.ACTIVE, ctx=instance.ctx)
    assert (instance.vm_state, instance.task_state) == (VmState.ACTIVE, None)
    # The host's report of the pause comes too late to change anything.
    report(instance, "pause", power_state=rpc.PAUSED)
    assert (instance.vm_state, instance.power_state) == (VmState.ACTIVE, rpc.RUNNING)
