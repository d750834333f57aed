"""Instances' Cinder volumes: attach, detach, boot from volume, and letting volumes go with their instance.

The control plane does every Cinder call (attachments API, microversion 3.44); compute hosts only plug
disks in and out from the ``connection_info`` they are sent, and report. A mapping's ``status`` is the
intention, so a lost message or a Cinder that was down is repaired by ``sweep_block_devices``:

- attach: the API reserves the volume (an attachment without a connector), then gives Cinder the host's
  connector for the ``connection_info``, then asks the host to plug the disk in. The host's report makes
  the conductor complete the attachment (the volume becomes ``in-use``). If the host cannot plug it in,
  the attachment is deleted; if Cinder cannot complete it, the host unplugs the disk again first.
- detach: the host unplugs the disk (a running guest must release it), then the attachment is deleted.
- boot from volume: the server's mappings are recorded with it; once the conductor has chosen a host,
  new volumes are made (from an image or blank), each volume is reserved and connected for that host,
  and the build carries the disks. The attachments are completed when the host reports the build.
- an instance that is deleted lets its volumes go: attachments deleted, and the volumes marked
  ``delete_on_termination`` deleted too.

No volume is ever attached to two instances (no multiattach).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import BlockDeviceMapping, ComputeHost, Image, Instance, InstanceAction
from portal.selectors.volumes import instance_volume, volume_users
from portal.states import BUILD_STEPS, TaskState, VmState

from . import lifecycle
from .cinder import BlockStorageError, CinderAPI, cinder_api
from .images import image_build_spec

log = logging.getLogger(__name__)

Status = BlockDeviceMapping.Status

ATTACHABLE_VM_STATES = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.STOPPED})
# A paused guest cannot acknowledge the unplug of a disk, so it must run (or be off) to let one go.
DETACHABLE_VM_STATES = frozenset({VmState.ACTIVE, VmState.STOPPED})
DEVICE_NAMES = [f"/dev/vd{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]
ROOT_DEVICE = "/dev/vda"
_DEVICE_RE = re.compile(r"^/dev/vd[a-z]$")
GIB = 1024**3


class VolumeRequestError(Exception):
    """The request cannot be done as asked; ``status`` is the compute API's answer (400)."""

    status = 400


class VolumeConflict(VolumeRequestError):
    status = 409


class MappingNotFound(VolumeRequestError):
    status = 404


@dataclass(frozen=True)
class BootVolume:
    """One ``block_device_mapping_v2`` entry with a volume as its destination, validated by the API."""

    source_type: str  # "volume" | "image" | "blank"
    boot_index: int | None
    volume_id: str = ""
    image: Image | None = None
    volume_size: int | None = None
    delete_on_termination: bool = False
    tag: str | None = None

    @property
    def is_new(self) -> bool:
        """A volume Cinder is to make for the server (from an image, or blank)."""
        return self.source_type != BlockDeviceMapping.Source.VOLUME


def _cinder(instance: Instance, user_token: str | None = None) -> CinderAPI:
    return cinder_api(project_id=instance.project_id, user_token=user_token)


def _event(instance: Instance, request_id: str, event: str, *, error: str = "", host: str = "", details: str = ""):
    action = lifecycle.current_action(instance, request_id)
    lifecycle.record_event(action, event, result="Error" if error else "Success", host=host, details=error or details)
    if error and action is not None and not action.message:
        InstanceAction.objects.filter(pk=action.pk).update(message="Error")


def _connection(mapping: BlockDeviceMapping, **extra: Any) -> rpc.VolumeConnection:
    return rpc.VolumeConnection(
        volume_id=mapping.volume_id,
        attachment_id=mapping.attachment_id,
        device=mapping.device,
        connection_info=dict(mapping.connection_info or {}),
        boot_index=mapping.boot_index,
        **extra,
    )


def _volume_request(instance: Instance, mapping: BlockDeviceMapping, request_id: str, *, rollback: bool = False):
    return rpc.VolumeRequest(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        volume=_connection(mapping),
        request_id=request_id,
        rollback=rollback,
    )


def nested_connection_info(info: dict[str, Any]) -> dict[str, Any]:
    """The attachments API answers ``connection_info`` flat; hosts get it as ``{driver_volume_type, data}``."""
    if isinstance(info.get("data"), dict):
        return {"driver_volume_type": info.get("driver_volume_type"), "data": dict(info["data"])}
    return {
        "driver_volume_type": info.get("driver_volume_type"),
        "data": {key: value for key, value in info.items() if key != "driver_volume_type"},
    }


def check_attachable(volume: dict[str, Any], *, instance: Instance | None = None) -> None:
    """VolumeRequestError (400) unless Cinder's ``volume`` can be given to one more instance."""
    volume_id = volume["id"]
    if volume.get("multiattach"):
        raise VolumeRequestError(f"Volume {volume_id} is a multiattach volume; this cloud does not attach those.")
    if volume.get("attachments") or volume.get("status") in ("in-use", "reserved", "attaching"):
        raise VolumeRequestError(f"Invalid volume: volume {volume_id} is already attached to a server.")
    if volume.get("status") != "available":
        raise VolumeRequestError(
            f"Invalid volume: volume {volume_id} status must be available, but is {volume.get('status')}."
        )
    if volume_users(volume_id, excluding=instance).exists():
        raise VolumeRequestError(f"Invalid volume: volume {volume_id} is already attached to a server.")


def _device_for(instance: Instance, requested: str | None) -> str:
    """The next free ``/dev/vdX`` of the instance, or ``requested`` when it is free (409 when it is not)."""
    used = set(
        BlockDeviceMapping.objects.filter(instance=instance)
        .exclude(status=Status.RELEASING)
        .values_list("device", flat=True)
    )
    if not BlockDeviceMapping.objects.filter(instance=instance, boot_index=0).exists():
        used.add(ROOT_DEVICE)  # the local root disk
    if requested:
        if not _DEVICE_RE.match(requested):
            raise VolumeRequestError(f"The supplied device path ({requested[:40]}) is invalid.")
        if requested in used:
            raise VolumeConflict(f"The supplied device path ({requested}) is in use.")
        return requested
    for name in DEVICE_NAMES:
        if name not in used:
            return name
    raise VolumeRequestError(f"Instance {instance.uuid} has no free disk names left.")


def _check_instance(instance: Instance, ctx: RequestContext, verb: str, vm_states: frozenset[str]) -> None:
    if instance.locked and not ctx.is_admin:
        raise lifecycle.InstanceLocked(f"Instance {instance.uuid} is locked")
    if instance.vm_state not in vm_states or instance.task_state is not None:
        state = f"task_state {instance.task_state}" if instance.task_state else f"vm_state {instance.vm_state}"
        raise lifecycle.StateConflict(f"Cannot '{verb}' instance {instance.uuid} while it is in {state}")
    if instance.host_id is None:
        raise lifecycle.StateConflict(f"Cannot '{verb}' instance {instance.uuid}: it is on no host")


def _locked_instance(instance: Instance) -> Instance:
    return Instance.objects.for_change().select_related("host").get(pk=instance.pk)


# A page that lists volumes waits this long for Cinder at most, then says it could not ask.
LISTING_TIMEOUT = 5.0


def project_volumes(
    *, ctx: RequestContext, status: str | None = None, user_token: str | None = None
) -> list[dict[str, Any]]:
    """The caller's project's volumes in Cinder, by name; BlockStorageError when Cinder cannot say."""
    cinder = cinder_api(project_id=ctx.project.pk, user_token=user_token, timeout=LISTING_TIMEOUT)
    return sorted(cinder.volumes(status=status), key=lambda v: ((v.get("name") or "").lower(), v.get("id") or ""))


def project_volume(*, ctx: RequestContext, volume_id: str, user_token: str | None = None) -> dict[str, Any]:
    """One of the project's volumes; VolumeNotFound for another project's."""
    return cinder_api(project_id=ctx.project.pk, user_token=user_token).volume(volume_id)


def project_volume_create(
    *,
    ctx: RequestContext,
    name: str,
    size: int,
    description: str = "",
    metadata: dict[str, str] | None = None,
    user_token: str | None = None,
) -> dict[str, Any]:
    """A new empty volume in the caller's project (Cinder's own quotas apply)."""
    return cinder_api(project_id=ctx.project.pk, user_token=user_token).create_volume(
        size=size, name=name, description=description, metadata=metadata
    )


def project_volume_delete(*, ctx: RequestContext, volume_id: str, user_token: str | None = None) -> None:
    """Delete one of the project's volumes; one that a server holds is refused here, others by Cinder."""
    cinder = cinder_api(project_id=ctx.project.pk, user_token=user_token)
    volume = cinder.volume(volume_id)
    if volume.get("attachments") or volume_users(volume_id).exists():
        raise VolumeRequestError(f"Volume {volume_id} is attached to a server; detach it first.")
    cinder.delete_volume(volume_id)


def project_snapshots(*, ctx: RequestContext, user_token: str | None = None) -> list[dict[str, Any]]:
    cinder = cinder_api(project_id=ctx.project.pk, user_token=user_token, timeout=LISTING_TIMEOUT)
    return sorted(cinder.snapshots(), key=lambda s: (s.get("created_at") or "", s.get("id") or ""))


def project_snapshot(*, ctx: RequestContext, snapshot_id: str, user_token: str | None = None) -> dict[str, Any]:
    return cinder_api(project_id=ctx.project.pk, user_token=user_token).snapshot(snapshot_id)


def project_snapshot_create(
    *, ctx: RequestContext, volume_id: str, force: bool, name: str, description: str, user_token: str | None = None
) -> dict[str, Any]:
    """A snapshot of one of the project's volumes (``force`` takes one in use, as Cinder allows)."""
    cinder = cinder_api(project_id=ctx.project.pk, user_token=user_token)
    return cinder.create_snapshot(volume_id, force=force, name=name, description=description)


def project_snapshot_delete(*, ctx: RequestContext, snapshot_id: str, user_token: str | None = None) -> None:
    cinder_api(project_id=ctx.project.pk, user_token=user_token).delete_snapshot(snapshot_id)


# --- attach -------------------------------------------------------------------------------------------


def volume_attach(
    *,
    ctx: RequestContext,
    instance: Instance,
    volume_id: str,
    device: str | None = None,
    tag: str | None = None,
    delete_on_termination: bool = False,
    user_token: str | None = None,
) -> BlockDeviceMapping:
    """Reserve ``volume_id`` for the instance, connect it for the instance's host, and ask the host to plug
    it in. Cinder's refusals come back as BlockStorageError (400/404/409); nothing reserved is left behind
    when anything fails before the host is asked."""
    _check_instance(instance, ctx, "attach_volume", ATTACHABLE_VM_STATES)
    connector = dict(instance.host.volume_connector or {})
    if not connector:
        raise VolumeConflict(f"Host {instance.host.name} has not reported how volumes can reach it yet; try again.")
    cinder = _cinder(instance, user_token)
    check_attachable(cinder.volume(volume_id), instance=instance)

    with transaction.atomic():
        locked = _locked_instance(instance)
        _check_instance(locked, ctx, "attach_volume", ATTACHABLE_VM_STATES)
        if BlockDeviceMapping.objects.filter(instance=locked, volume_id=volume_id).exists():
            raise VolumeRequestError(f"Invalid volume: volume {volume_id} is already attached to this server.")
        mapping = BlockDeviceMapping.objects.create(
            instance=locked,
            source_type=BlockDeviceMapping.Source.VOLUME,
            volume_id=volume_id,
            device=_device_for(locked, device),
            tag=tag,
            delete_on_termination=delete_on_termination,
            status=Status.RESERVING,
        )
        lifecycle.action_record(instance=locked, action="attach_volume", ctx=ctx)

    try:
        attachment = cinder.reserve(volume_id, str(instance.uuid))
    except BlockStorageError:
        mapping.delete()
        raise
    BlockDeviceMapping.objects.filter(pk=mapping.pk).update(attachment_id=attachment["id"])
    mapping.attachment_id = attachment["id"]
    try:
        info = cinder.connect(mapping.attachment_id, {**connector, "mountpoint": mapping.device})
    except BlockStorageError:
        _release(mapping, cinder=cinder)
        raise

    with transaction.atomic():
        locked = _locked_instance(instance)
        gone = locked.vm_state == VmState.DELETED or locked.task_state == TaskState.DELETING or not locked.host_id
        moved = not gone and BlockDeviceMapping.objects.filter(pk=mapping.pk, status=Status.RESERVING).update(
            status=Status.ATTACHING, connection_info=nested_connection_info(info), updated_at=timezone.now()
        )
        if moved:
            mapping.refresh_from_db()
            request = _volume_request(locked, mapping, ctx.request_id)
            host = locked.host.name
            transaction.on_commit(lambda: rpc.attach_volume(host, request))
    if not moved:
        _release(mapping, cinder=cinder)
        raise VolumeConflict(f"Instance {instance.uuid} is being deleted; volume {volume_id} was not attached.")
    return mapping


def volume_attached(*, report: rpc.VolumeResult) -> None:
    """The host plugged the disk in (or could not): complete the attachment, or undo it."""
    mapping = _reported_mapping(report)
    if mapping is None:
        if not report.error:
            _unplug_unknown(report)
        return
    instance = mapping.instance
    if instance.host is None or instance.host.name != report.host:
        return  # a host speaks only about the instances placed on it
    if mapping.status != Status.ATTACHING:
        return  # a repeated report
    if instance.vm_state == VmState.DELETED:
        _release(mapping)
        return
    if report.error:
        _event(instance, report.request_id, "compute_attach_volume", error=report.error, host=report.host)
        _release(mapping)
        return
    try:
        _cinder(instance).complete(mapping.attachment_id)
    except BlockStorageError as exc:
        # Cinder cannot confirm the attachment: the disk must not stay in the guest. Unplug it, then let go.
        _event(
            instance,
            report.request_id,
            "compute_attach_volume",
            error=f"Block storage could not complete the attachment of volume {mapping.volume_id}: {exc}",
            host=report.host,
        )
        moved = BlockDeviceMapping.objects.filter(pk=mapping.pk, status=Status.ATTACHING).update(
            status=Status.ROLLING_BACK, updated_at=timezone.now()
        )
        if moved:
            rpc.detach_volume(report.host, _volume_request(instance, mapping, report.request_id, rollback=True))
        return
    BlockDeviceMapping.objects.filter(pk=mapping.pk, status=Status.ATTACHING).update(
        status=Status.ATTACHED, updated_at=timezone.now()
    )
    _event(instance, report.request_id, "compute_attach_volume", host=report.host)


def _reported_mapping(report: rpc.VolumeResult) -> BlockDeviceMapping | None:
    return (
        BlockDeviceMapping.objects.select_related("instance", "instance__host")
        .filter(instance__uuid=report.instance_uuid, volume_id=report.volume_id, attachment_id=report.attachment_id)
        .first()
    )


def _unplug_unknown(report: rpc.VolumeResult) -> None:
    """A host plugged in a volume the instance no longer waits for (it let it go meanwhile): unplug it."""
    instance = Instance.objects.filter(uuid=report.instance_uuid).first()
    if instance is None or instance.vm_state == VmState.DELETED:
        return  # the domain goes with the instance
    log.warning(
        "Volume %s was plugged into instance %s after it was let go; unplugging", report.volume_id, instance.uuid
    )
    volume = rpc.VolumeConnection(volume_id=report.volume_id, attachment_id=report.attachment_id, device="")
    rpc.detach_volume(
        report.host,
        rpc.VolumeRequest(
            instance_uuid=str(instance.uuid),
            domain_name=instance.domain_name,
            volume=volume,
            request_id=report.request_id,
            rollback=True,
        ),
    )


# --- detach -------------------------------------------------------------------------------------------


def volume_detach(*, ctx: RequestContext, instance: Instance, volume_id: str) -> BlockDeviceMapping:
    """Ask the host to unplug the volume; its attachment is deleted once the host reports it unplugged."""
    with transaction.atomic():
        locked = _locked_instance(instance)
        mapping = instance_volume(locked, volume_id)
        if mapping is None:
            raise MappingNotFound(f"Volume {str(volume_id)[:64]} is not attached to the instance.")
        if mapping.is_root:
            raise VolumeRequestError(f"Cannot detach a root device volume ({volume_id}).")
        _check_instance(locked, ctx, "detach_volume", DETACHABLE_VM_STATES)
        moved = BlockDeviceMapping.objects.filter(pk=mapping.pk, status=Status.ATTACHED).update(
            status=Status.DETACHING, updated_at=timezone.now()
        )
        if not moved:
            raise VolumeConflict(f"Volume {volume_id} is {mapping.status} and cannot be detached now; try again.")
        lifecycle.action_record(instance=locked, action="detach_volume", ctx=ctx)
        request = _volume_request(locked, mapping, ctx.request_id)
        host = locked.host.name
        transaction.on_commit(lambda: rpc.detach_volume(host, request))
    mapping.refresh_from_db()
    return mapping


def volume_detached(*, report: rpc.VolumeResult) -> None:
    """The host unplugged the disk (or could not): delete the attachment, or keep the volume attached."""
    mapping = _reported_mapping(report)
    if mapping is None or mapping.status not in (Status.DETACHING, Status.ROLLING_BACK):
        return
    instance = mapping.instance
    if instance.host is None or instance.host.name != report.host:
        return  # a host speaks only about the instances placed on it
    if report.error:
        _event(instance, report.request_id, "compute_detach_volume", error=report.error, host=report.host)
        if mapping.status == Status.DETACHING:
            # The guest kept it: it is still attached, as far as anyone can tell.
            BlockDeviceMapping.objects.filter(pk=mapping.pk, status=Status.DETACHING).update(
                status=Status.ATTACHED, updated_at=timezone.now()
            )
        return  # a rollback that failed stays as it is: the sweep asks the host again
    if mapping.status == Status.DETACHING:
        _event(instance, report.request_id, "compute_detach_volume", host=report.host)
    _release(mapping)


def volume_update(*, ctx: RequestContext, instance: Instance, volume_id: str, delete_on_termination: bool) -> None:
    """Change whether the volume goes with the server (compute API 2.85)."""
    with transaction.atomic():
        locked = _locked_instance(instance)
        mapping = instance_volume(locked, volume_id)
        if mapping is None:
            raise MappingNotFound(f"Volume {str(volume_id)[:64]} is not attached to the instance.")
        if locked.locked and not ctx.is_admin:
            raise lifecycle.InstanceLocked(f"Instance {instance.uuid} is locked")
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(
            delete_on_termination=delete_on_termination, updated_at=timezone.now()
        )


# --- letting go ---------------------------------------------------------------------------------------


def _release(mapping: BlockDeviceMapping, *, cinder: CinderAPI | None = None) -> bool:
    """Delete the mapping's attachment (as a service), and its volume when it dies with its deleted
    instance; then the mapping. On a Cinder failure the mapping stays ``releasing`` for the sweep."""
    instance = Instance.objects.get(pk=mapping.instance_id)
    if mapping.status != Status.RELEASING:
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(status=Status.RELEASING, updated_at=timezone.now())
    delete_volume = instance.vm_state == VmState.DELETED and mapping.delete_on_termination and mapping.volume_id
    try:
        cinder = cinder or _cinder(instance)
        if mapping.attachment_id:
            cinder.delete_attachment(mapping.attachment_id)
            BlockDeviceMapping.objects.filter(pk=mapping.pk).update(attachment_id="")
        if delete_volume:
            cinder.delete_volume(mapping.volume_id)
    except BlockStorageError as exc:
        log.warning("Could not release volume %s of instance %s yet: %s", mapping.volume_id, instance.uuid, exc)
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(updated_at=timezone.now())
        return False
    if instance.vm_state != VmState.DELETED and instance.host_id is None:
        # A boot volume of a server whose build failed: free for another try, and kept for its delete.
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(status=Status.PENDING, connection_info={})
        return True
    BlockDeviceMapping.objects.filter(pk=mapping.pk).delete()
    log.info(
        "Volume %s let go by instance %s%s", mapping.volume_id, instance.uuid, " and deleted" if delete_volume else ""
    )
    return True


def instance_volumes_release(*, instance_uuid: str) -> int:
    """The instance is deleted: every volume lets go of it. Returns how many mappings are still held."""
    left = 0
    mappings = BlockDeviceMapping.objects.filter(instance__uuid=instance_uuid, instance__vm_state=VmState.DELETED)
    for mapping in mappings:
        if not _release(mapping):
            left += 1
    return left


# --- boot from volume ---------------------------------------------------------------------------------


def boot_volumes_check(*, project_id: str, volumes: Sequence[BootVolume], user_token: str | None = None) -> None:
    """Before a boot is accepted: every existing volume it names is there and free (400/404 otherwise)."""
    existing = [v for v in volumes if v.source_type == BlockDeviceMapping.Source.VOLUME]
    if not existing:
        return
    cinder = cinder_api(project_id=project_id, user_token=user_token)
    for volume in existing:
        check_attachable(cinder.volume(volume.volume_id))


def block_devices_create(*, instance: Instance, volumes: Sequence[BootVolume]) -> list[BlockDeviceMapping]:
    """The boot's mappings, inside the caller's transaction: root volume ``/dev/vda``, then the others."""
    rows = []
    used = set() if any(v.boot_index == 0 for v in volumes) else {ROOT_DEVICE}
    for volume in sorted(volumes, key=lambda v: v.boot_index != 0):
        device = ROOT_DEVICE if volume.boot_index == 0 else next(d for d in DEVICE_NAMES if d not in used)
        used.add(device)
        rows.append(
            BlockDeviceMapping(
                instance=instance,
                source_type=volume.source_type,
                image_id=volume.image.id if volume.image is not None else None,
                volume_size=volume.volume_size,
                volume_id=volume.volume_id,
                device=device,
                tag=volume.tag,
                delete_on_termination=volume.delete_on_termination,
                boot_index=volume.boot_index,
                status=Status.PENDING,
            )
        )
    return BlockDeviceMapping.objects.bulk_create(rows)


def build_with_volumes(*, host: str, build: rpc.BuildRequest, user_token: str = "") -> None:
    """Send the build, with its volumes made, reserved and connected for ``host`` first.

    New volumes are made with ``user_token`` (the Keystone token of the user who asked for the server)
    when there is one, so that they are in the user's project; else by the cloud's service user.

    Runs after the claim committed. A failure with Cinder ends the build as a failure on that host that
    no other host would change (the instance goes to ERROR with the reason as its fault), and lets go of
    what was reserved for it.
    """
    # Most servers boot from an image and have no volume: one query tells, and the build goes.
    mappings = list(
        BlockDeviceMapping.objects.select_related("instance__host").filter(instance__uuid=build.instance_uuid)
    )
    if not mappings:
        rpc.build_and_run_instance(host, build)
        return
    instance = mappings[0].instance
    try:
        devices = _prepare_boot_volumes(instance, host, mappings, user_token)
    except (BlockStorageError, VolumeRequestError) as exc:
        for mapping in BlockDeviceMapping.objects.filter(instance=instance).exclude(attachment_id=""):
            _release(mapping)
        rpc.build_failed(
            rpc.BuildFailed(
                instance_uuid=str(instance.uuid),
                host=host,
                request_id=build.request_id,
                message=f"Block storage failed: {exc}",
                reschedulable=False,
            )
        )
        return
    rpc.build_and_run_instance(host, dataclasses.replace(build, block_devices=devices))


def _prepare_boot_volumes(instance: Instance, host: str, mappings: list[BlockDeviceMapping], user_token: str = ""):
    connector = dict(ComputeHost.objects.get(name=host).volume_connector or {})
    if not connector:
        raise VolumeConflict(f"host {host} has not reported how volumes can reach it")
    cinder = _cinder(instance, user_token or None)
    devices = []
    for mapping in sorted(mappings, key=lambda m: m.boot_index != 0):
        if mapping.attachment_id:
            # Reserved for another host by an earlier attempt of this build.
            cinder.delete_attachment(mapping.attachment_id)
            BlockDeviceMapping.objects.filter(pk=mapping.pk).update(attachment_id="", connection_info={})
        image = None
        if not mapping.volume_id:
            volume = cinder.create_volume(
                size=mapping.volume_size or 1,
                name=f"{instance.name}-{mapping.device.rsplit('/', 1)[-1]}"[:255],
                description=f"made for server {instance.uuid}",
            )
            mapping.volume_id = volume["id"]
            BlockDeviceMapping.objects.filter(pk=mapping.pk).update(volume_id=volume["id"])
            cinder.wait_for_volume(volume["id"], "available", timeout=settings.CINDER["VOLUME_CREATE_TIMEOUT"])
            if mapping.image_id is not None:
                cinder.set_bootable(volume["id"])  # it gets the image, as one Cinder made from it would
        if mapping.image_id is not None:
            # Written by the host before the first boot (again after a failed attempt elsewhere).
            image = rpc.ImageSpec(**image_build_spec(image=Image.objects.get(pk=mapping.image_id)))
        attachment = cinder.reserve(mapping.volume_id, str(instance.uuid))
        mapping.attachment_id = attachment["id"]
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(attachment_id=attachment["id"])
        info = cinder.connect(mapping.attachment_id, {**connector, "mountpoint": mapping.device})
        mapping.connection_info = nested_connection_info(info)
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(
            status=Status.ATTACHING, connection_info=mapping.connection_info, updated_at=timezone.now()
        )
        devices.append(_connection(mapping, image=image))
    return devices


def attachments_move(*, instance: Instance, host: str) -> list[rpc.VolumeConnection]:
    """The server's attached volumes, attached again for ``host`` (a move's destination, or its source
    on a revert), as Nova's migrations do: a new attachment is reserved, the old one deleted (Cinder
    connects a volume that is not multi-attach through one attachment at a time), then the new one
    connected with ``host``'s connector and completed. Returns what the host plugs in. A Cinder failure
    before the old attachment is gone keeps it and its connection (which a host that reaches the same
    targets can still use); after, the mapping keeps the reserved attachment for the sweep."""
    mappings = list(BlockDeviceMapping.objects.filter(instance=instance, status=Status.ATTACHED).order_by("id"))
    connector = dict(ComputeHost.objects.get(name=host).volume_connector or {}) if mappings else {}
    if mappings and not connector:
        log.warning("Host %s has not reported a volume connector; the volumes of %s keep theirs", host, instance.uuid)
        return [_connection(mapping) for mapping in mappings]
    cinder = _cinder(instance) if mappings else None
    for mapping in mappings:
        try:
            attachment = cinder.reserve(mapping.volume_id, str(instance.uuid))
            if mapping.attachment_id:
                cinder.delete_attachment(mapping.attachment_id)
            BlockDeviceMapping.objects.filter(pk=mapping.pk).update(
                attachment_id=attachment["id"], connection_info={}, updated_at=timezone.now()
            )
            mapping.attachment_id, mapping.connection_info = attachment["id"], {}
            info = cinder.connect(attachment["id"], {**connector, "mountpoint": mapping.device})
            cinder.complete(attachment["id"])
        except BlockStorageError as exc:
            log.warning(
                "Volume %s of %s was not attached again for %s: %s", mapping.volume_id, instance.uuid, host, exc
            )
            continue
        mapping.connection_info = nested_connection_info(info)
        BlockDeviceMapping.objects.filter(pk=mapping.pk).update(
            connection_info=mapping.connection_info, updated_at=timezone.now()
        )
    return [_connection(mapping) for mapping in mappings]


def boot_volumes_complete(*, instance_uuid: str, host: str = "", request_id: str = "") -> None:
    """The build was reported: the boot's attachments are completed (the sweep retries any that fail)."""
    attaching = BlockDeviceMapping.objects.select_related("instance").filter(
        instance__uuid=instance_uuid, status=Status.ATTACHING
    )
    for mapping in attaching:
        try:
            _cinder(mapping.instance).complete(mapping.attachment_id)
        except BlockStorageError as exc:
            log.warning("Could not complete the attachment of volume %s yet: %s", mapping.volume_id, exc)
            continue
        BlockDeviceMapping.objects.filter(pk=mapping.pk, status=Status.ATTACHING).update(
            status=Status.ATTACHED, updated_at=timezone.now()
        )


def root_volume(instance: Instance) -> BlockDeviceMapping | None:
    return BlockDeviceMapping.objects.filter(instance=instance, boot_index=0).first()


def attached_connections(instance: Instance) -> list[rpc.VolumeConnection]:
    """The volumes a new domain of the instance must have again (a rebuild): those attached now."""
    mappings = BlockDeviceMapping.objects.filter(instance=instance, status=Status.ATTACHED).order_by("id")
    return [_connection(mapping) for mapping in mappings]


# --- the sweep ----------------------------------------------------------------------------------------


def sweep_block_devices(*, limit: int = 200) -> int:
    """Repair what a lost message or an unreachable Cinder left: let go of volumes of deleted instances
    and of unplugged volumes, ask hosts again about attaches and detaches they never answered, and
    forget reservations an API process abandoned. Returns how many mappings it acted on."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CINDER["VOLUME_LEASE"])
    acted = 0
    rows = BlockDeviceMapping.objects.select_related("instance", "instance__host")
    for mapping in rows.filter(status=Status.RELEASING).order_by("updated_at")[:limit]:
        acted += 1
        _release(mapping)
    for mapping in rows.filter(instance__vm_state=VmState.DELETED).exclude(status=Status.RELEASING)[:limit]:
        acted += 1
        _release(mapping)
    for mapping in rows.filter(updated_at__lt=stale).exclude(instance__vm_state=VmState.DELETED)[:limit]:
        instance = mapping.instance
        if mapping.status == Status.RESERVING:
            acted += 1
            _release(mapping)
        elif mapping.status in (Status.ATTACHING, Status.DETACHING, Status.ROLLING_BACK):
            if instance.task_state in (TaskState.SCHEDULING, *BUILD_STEPS):
                continue  # the build is still on its way
            acted += 1
            if instance.host_id is None:
                _release(mapping)  # its build failed: nothing holds the volume
                continue
            BlockDeviceMapping.objects.filter(pk=mapping.pk).update(updated_at=now)
            send = rpc.attach_volume if mapping.status == Status.ATTACHING else rpc.detach_volume
            request = _volume_request(instance, mapping, "", rollback=mapping.status == Status.ROLLING_BACK)
            try:
                send(instance.host.name, request)
            except Exception:
                log.exception("Could not ask host %s again about volume %s", instance.host.name, mapping.volume_id)
    return acted
