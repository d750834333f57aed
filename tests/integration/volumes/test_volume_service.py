"""The control plane's volume flows against a real Cinder (NFS driver, RabbitMQ), playing the host's part.

Each test reads Cinder's own view afterwards (volume status, its attachments) to see that nothing is left
reserved or attached that should not be.
"""

import pytest

from portal.models import BlockDeviceMapping, InstanceActionEvent
from portal.services import lifecycle, volumes
from portal.services.cinder import BlockStorageUnavailable, VolumeNotFound, cinder_api
from portal.states import TaskState, VmState

from .conftest import report

pytestmark = pytest.mark.integration

Status = BlockDeviceMapping.Status


def attach(owner, server, volume_id, sent, **kwargs):
    mapping = volumes.volume_attach(ctx=owner, instance=server, volume_id=volume_id, **kwargs)
    host, request = sent.attach[-1]
    assert host == "volhost"
    return mapping, request


def test_attach_reserves_connects_completes_and_detach_lets_go(cinder, cinder_settings, owner, server, sent):
    project = owner.project.pk
    volume = cinder.create_volume(project, size=1, name="data")

    mapping, request = attach(owner, server, volume["id"], sent, tag="db", delete_on_termination=False)

    assert mapping.status == Status.ATTACHING and mapping.device == "/dev/vdb"
    # Cinder has the host's connector, and the host gets the connection as Cinder gave it (nested).
    assert cinder.volume(project, volume["id"])["status"] == "attaching"
    info = request.volume.connection_info
    assert info["driver_volume_type"] == "nfs"
    assert info["data"]["name"] == f"volume-{volume['id']}"
    assert info["data"]["export"] == cinder.share
    assert request.volume.device == "/dev/vdb" and request.volume.attachment_id == mapping.attachment_id
    [attachment] = cinder.attachments(project, volume["id"])
    assert attachment["id"] == mapping.attachment_id

    volumes.volume_attached(report=report(server, request, "attach"))

    shown = cinder.volume(project, volume["id"])
    assert shown["status"] == "in-use"
    assert shown["attachments"][0]["server_id"] == str(server.uuid)
    assert shown["attachments"][0]["device"] == "/dev/vdb"
    assert BlockDeviceMapping.objects.get(pk=mapping.pk).status == Status.ATTACHED
    events = InstanceActionEvent.objects.filter(action__instance=server, action__action="attach_volume")
    assert [(e.event, e.result) for e in events] == [
        ("api_attach_volume", "Success"),
        ("compute_attach_volume", "Success"),
    ]

    volumes.volume_detach(ctx=owner, instance=server, volume_id=volume["id"])
    _, detach_request = sent.detach[-1]
    assert detach_request.volume.volume_id == volume["id"] and not detach_request.rollback
    assert cinder.volume(project, volume["id"])["status"] == "in-use"  # until the host unplugged it

    volumes.volume_detached(report=report(server, detach_request, "detach"))

    assert cinder.volume(project, volume["id"])["status"] == "available"
    assert cinder.attachments(project, volume["id"]) == []
    assert not BlockDeviceMapping.objects.filter(instance=server).exists()


def test_a_host_that_cannot_plug_the_disk_in_leaves_the_volume_free(cinder, cinder_settings, owner, server, sent):
    project = owner.project.pk
    volume = cinder.create_volume(project)
    _, request = attach(owner, server, volume["id"], sent)

    volumes.volume_attached(report=report(server, request, "attach", error="Bus 'pci.0' does not support hotplugging"))

    assert cinder.volume(project, volume["id"])["status"] == "available"
    assert cinder.attachments(project, volume["id"]) == []
    assert not BlockDeviceMapping.objects.filter(instance=server).exists()
    event = InstanceActionEvent.objects.get(event="compute_attach_volume")
    assert event.result == "Error" and "hotplugging" in event.details


def test_a_guest_that_keeps_the_disk_keeps_the_volume_attached(cinder, cinder_settings, owner, server, sent):
    project = owner.project.pk
    volume = cinder.create_volume(project)
    _, request = attach(owner, server, volume["id"], sent)
    volumes.volume_attached(report=report(server, request, "attach"))
    volumes.volume_detach(ctx=owner, instance=server, volume_id=volume["id"])
    _, detach_request = sent.detach[-1]

    volumes.volume_detached(report=report(server, detach_request, "detach", error="the guest did not release it"))

    assert BlockDeviceMapping.objects.get(instance=server).status == Status.ATTACHED
    assert cinder.volume(project, volume["id"])["status"] == "in-use"


def test_volumes_in_use_missing_or_twice_are_refused_and_nothing_is_reserved(
    cinder, cinder_settings, owner, server, sent
):
    from tests.factories import InstanceFactory

    project = owner.project.pk
    volume = cinder.create_volume(project)
    _, request = attach(owner, server, volume["id"], sent)

    with pytest.raises(volumes.VolumeRequestError, match="already attached") as twice:
        volumes.volume_attach(ctx=owner, instance=server, volume_id=volume["id"])
    assert twice.value.status == 400
    other = InstanceFactory(project=owner.project, user=owner.user, host=server.host)
    with pytest.raises(volumes.VolumeRequestError, match="already attached") as elsewhere:
        volumes.volume_attach(ctx=owner, instance=other, volume_id=volume["id"])
    assert elsewhere.value.status == 400
    with pytest.raises(VolumeNotFound) as missing:
        volumes.volume_attach(ctx=owner, instance=other, volume_id="0c7e3a8e-8d1b-4b2a-9d1e-2f6a4c1b9e00")
    assert missing.value.status == 404
    assert [a["id"] for a in cinder.attachments(project, volume["id"])] == [request.volume.attachment_id]
    assert not BlockDeviceMapping.objects.filter(instance=other).exists()


def test_servers_that_are_busy_or_off_their_host_cannot_attach(cinder, cinder_settings, owner, server, sent):
    volume = cinder.create_volume(owner.project.pk)
    server.task_state = TaskState.REBOOTING
    server.save()
    with pytest.raises(lifecycle.StateConflict, match="task_state rebooting"):
        volumes.volume_attach(ctx=owner, instance=server, volume_id=volume["id"])
    server.task_state, server.vm_state = None, VmState.SUSPENDED
    server.save()
    with pytest.raises(lifecycle.StateConflict, match="vm_state suspended"):
        volumes.volume_attach(ctx=owner, instance=server, volume_id=volume["id"])
    server.vm_state, server.locked = VmState.ACTIVE, True
    server.save()
    with pytest.raises(lifecycle.InstanceLocked):
        volumes.volume_attach(ctx=owner, instance=server, volume_id=volume["id"])
    assert cinder.volume(owner.project.pk, volume["id"])["status"] == "available"
    assert sent.attach == []


def test_cinder_down_before_the_reservation_is_a_clear_error_and_leaves_nothing(
    cinder, cinder_settings, owner, server, sent
):
    project = owner.project.pk
    volume = cinder.create_volume(project)
    cinder.stop_api()
    try:
        with pytest.raises(BlockStorageUnavailable, match="unreachable") as down:
            volumes.volume_attach(ctx=owner, instance=server, volume_id=volume["id"])
        assert down.value.status == 409
    finally:
        cinder.start_api()
    assert not BlockDeviceMapping.objects.filter(instance=server).exists()
    assert cinder.volume(project, volume["id"])["status"] == "available"
    assert sent.attach == []


def test_cinder_down_at_completion_unplugs_again_and_the_sweep_lets_go(cinder, cinder_settings, owner, server, sent):
    project = owner.project.pk
    volume = cinder.create_volume(project)
    mapping, request = attach(owner, server, volume["id"], sent)
    cinder.stop_api()
    try:
        volumes.volume_attached(report=report(server, request, "attach"))

        # Cinder could not complete: the host is asked to unplug the disk again.
        assert BlockDeviceMapping.objects.get(pk=mapping.pk).status == Status.ROLLING_BACK
        _, rollback = sent.detach[-1]
        assert rollback.rollback and rollback.volume.volume_id == volume["id"]
        volumes.volume_detached(report=report(server, rollback, "detach"))
        # Unplugged, but Cinder is still away: the mapping waits to be let go.
        assert BlockDeviceMapping.objects.get(pk=mapping.pk).status == Status.RELEASING
        assert volumes.sweep_block_devices() == 1
        assert BlockDeviceMapping.objects.get(pk=mapping.pk).status == Status.RELEASING
    finally:
        cinder.start_api()

    volumes.sweep_block_devices()

    assert not BlockDeviceMapping.objects.filter(pk=mapping.pk).exists()
    assert cinder.volume(project, volume["id"])["status"] == "available"
    assert cinder.attachments(project, volume["id"]) == []
    event = InstanceActionEvent.objects.get(event="compute_attach_volume")
    assert event.result == "Error" and "could not complete" in event.details


def test_a_deleted_server_lets_its_volumes_go_and_deletes_those_that_die_with_it(
    cinder, cinder_settings, owner, server, sent
):
    project = owner.project.pk
    keep = cinder.create_volume(project, name="keep")
    scratch = cinder.create_volume(project, name="scratch")
    for volume, dies in ((keep, False), (scratch, True)):
        _, request = attach(owner, server, volume["id"], sent, delete_on_termination=dies)
        volumes.volume_attached(report=report(server, request, "attach"))

    lifecycle.mark_deleted(instance=server, expected_task_states=[None], event="test_delete")
    assert volumes.instance_volumes_release(instance_uuid=str(server.uuid)) == 0

    assert cinder.volume(project, keep["id"])["status"] == "available"
    cinder.wait_for_status(project, scratch["id"], "deleted")
    assert not BlockDeviceMapping.objects.filter(instance=server).exists()


def test_the_client_points_at_the_project_in_the_url(cinder, cinder_settings, owner):
    api = cinder_api(project_id=owner.project.pk)
    volume = api.create_volume(size=1, name="made-by-the-cloud")
    assert api.wait_for_volume(volume["id"], "available", timeout=60)["size"] == 1
    assert cinder.volume(owner.project.pk, volume["id"])["name"] == "made-by-the-cloud"
    api.delete_volume(volume["id"])
    cinder.wait_for_status(owner.project.pk, volume["id"], "deleted")
    api.delete_volume(volume["id"])  # gone already: not an error
