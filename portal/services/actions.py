"""Server actions past start/stop/reboot, and what the conductor makes of the hosts' reports on them.

pause/unpause, suspend/resume, rebuild and snapshot (``createImage``) follow the shape of every action:
the state table is checked and the task state claimed by compare-and-swap (``lifecycle.action_begin``),
the host is asked once that is committed, and the host's ``ActionResult`` finishes the transition here.
lock/unlock and os-resetState need no host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Image, Instance, Keypair
from portal.states import ALLOWED, RESULT_VM_STATE, TaskState, VmState

from . import lifecycle, quotas
from .image_uploads import snapshot_upload_url
from .images import ImageError, image_create, image_delete
from .instances import InvalidRequest, check_image_fits
from .scheduling import _build_request

log = logging.getLogger(__name__)

_UNSET: Any = object()

# Actions whose reports this module finishes; the conductor hands it every ActionResult naming one.
HANDLED = frozenset({"pause", "unpause", "suspend", "resume", "rebuild", "snapshot"})


class NotAllowed(Exception):
    """Policy forbids this caller the action (the API answers 403)."""


def _host_name(instance: Instance, verb: str) -> str:
    if instance.host_id is None:
        raise lifecycle.StateConflict(
            f"Cannot '{verb}' instance {instance.uuid} while it is in vm_state {instance.vm_state}: it is on no host"
        )
    return instance.host.name


def _ref(instance: Instance, ctx: RequestContext) -> rpc.InstanceRef:
    return rpc.InstanceRef(
        instance_uuid=str(instance.uuid), domain_name=instance.domain_name, request_id=ctx.request_id
    )


def _host_action(ctx: RequestContext, instance: Instance, action: str, send: Callable[[str, rpc.InstanceRef], None]):
    host = _host_name(instance, action)
    with transaction.atomic():
        lifecycle.action_begin(instance=instance, action=action, ctx=ctx)
        ref = _ref(instance, ctx)
        transaction.on_commit(lambda: send(host, ref))


def instance_pause(*, ctx: RequestContext, instance: Instance) -> None:
    _host_action(ctx, instance, "pause", rpc.pause_instance)


def instance_unpause(*, ctx: RequestContext, instance: Instance) -> None:
    _host_action(ctx, instance, "unpause", rpc.unpause_instance)


def instance_suspend(*, ctx: RequestContext, instance: Instance) -> None:
    _host_action(ctx, instance, "suspend", rpc.suspend_instance)


def instance_resume(*, ctx: RequestContext, instance: Instance) -> None:
    _host_action(ctx, instance, "resume", rpc.resume_instance)


# --- lock, unlock, reset ------------------------------------------------------------------------------


def instance_lock(*, ctx: RequestContext, instance: Instance, reason: str | None = None) -> None:
    """Lock the server against actions of non-admins. Locked by its own project it is the owner's
    lock, else an admin's, which only an admin may lift."""
    locked_by = "owner" if instance.project_id == ctx.project.pk else "admin"
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(
            locked=True, locked_by=locked_by, locked_reason=reason, updated_at=timezone.now()
        )
        lifecycle.action_record(instance=instance, action="lock", ctx=ctx)
    instance.refresh_from_db()


def instance_unlock(*, ctx: RequestContext, instance: Instance) -> None:
    expected = "owner" if instance.project_id == ctx.project.pk else "admin"
    if instance.locked and instance.locked_by and instance.locked_by != expected and not ctx.is_admin:
        raise NotAllowed(f"Instance {instance.uuid} was locked by an administrator; only one can unlock it.")
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(
            locked=False, locked_by="", locked_reason=None, updated_at=timezone.now()
        )
        lifecycle.action_record(instance=instance, action="unlock", ctx=ctx)
    instance.refresh_from_db()


def instance_reset_state(*, ctx: RequestContext, instance: Instance, state: str) -> None:
    """An admin's os-resetState to ``active`` or ``error``: the instance is idled whatever it was doing.

    Only the record changes: nothing is asked of the host, exactly as the compute API defines it.
    """
    if not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os-resetState to be performed: admin only.")
    lifecycle.reset_state(instance=instance, vm_state=VmState.ACTIVE if state == "active" else VmState.ERROR, ctx=ctx)


# --- rebuild ------------------------------------------------------------------------------------------


def instance_rebuild(
    *,
    ctx: RequestContext,
    instance: Instance,
    image: Image,
    name: str | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = _UNSET,
    keypair: Keypair | None = _UNSET,
    user_data: str | None = _UNSET,
) -> Instance:
    """A new root disk from ``image`` (the same or another) on the same host, keeping the server's id,
    host, addresses and flavor. The new attributes are written with the task state, so they change only
    if the rebuild is accepted. A stopped server stays stopped; an ERROR one comes back ACTIVE.
    """
    host = _host_name(instance, "rebuild")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; rebuilding it is not supported.")
    check_image_fits(image, memory_mb=instance.memory_mb, root_gb=instance.root_gb)
    fields: dict[str, Any] = {"image": image, "image_ref": image.id}
    if name is not None:
        fields["name"] = name
    if metadata is not None:
        fields["metadata"] = metadata
    if description is not _UNSET:
        fields["description"] = description
    if keypair is not _UNSET:
        fields["key_name"] = keypair.name if keypair else None
        fields["key_data"] = keypair.public_key if keypair else None
    if user_data is not _UNSET:
        fields["user_data"] = user_data
    power_on = instance.vm_state != VmState.STOPPED
    with transaction.atomic():
        if metadata is not None:
            quotas.quota_check(project=instance.project, user=None, resource="metadata_items", delta=len(metadata))
        lifecycle.action_begin(instance=instance, action="rebuild", ctx=ctx, **fields)
        try:
            build = _build_request(instance, ctx.request_id, alternates=[])
        except ImageError as exc:
            raise InvalidRequest(str(exc)) from None
        request = rpc.RebuildRequest(build=build, power_on=power_on)
        transaction.on_commit(lambda: rpc.rebuild_instance(host, request))
    return instance


# --- snapshot -----------------------------------------------------------------------------------------


def instance_snapshot(
    *, ctx: RequestContext, instance: Instance, name: str, metadata: dict[str, str] | None = None
) -> Image:
    """createImage: a new private image (queued) and the host asked to fill it with the server's disk.

    The host gets a signed upload URL for that one image; the image API marks it ``saving`` while the
    data arrives and ``active`` once it is complete and hashed.
    """
    host = _host_name(instance, "createImage")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; snapshot its volume instead.")
    base = instance.image
    properties = {
        **(metadata or {}),
        "image_type": "snapshot",
        "instance_uuid": str(instance.uuid),
        "base_image_ref": str(instance.image_ref),
        "user_id": str(ctx.user.pk),
    }
    with transaction.atomic():
        lifecycle.action_begin(instance=instance, action="snapshot", ctx=ctx, record_as="createImage")
        image = image_create(
            ctx=ctx,
            name=name,
            disk_format="qcow2",
            container_format="bare",
            visibility=Image.Visibility.PRIVATE,
            min_disk=max(instance.root_gb, base.min_disk if base else 0),
            min_ram=base.min_ram if base else 0,
            properties=properties,
        )
        request = rpc.SnapshotRequest(
            instance_uuid=str(instance.uuid),
            domain_name=instance.domain_name,
            image_id=str(image.id),
            upload_url=snapshot_upload_url(image=image),
            request_id=ctx.request_id,
        )
        transaction.on_commit(lambda: rpc.snapshot_instance(host, request))
    return image


def _abandon_snapshot_images(instance: Instance, image_id: str = "") -> None:
    """The images a failed or expired snapshot of ``instance`` left without data are deleted."""
    images = Image.objects.filter(properties__instance_uuid=str(instance.uuid)).exclude(
        status__in=[Image.Status.ACTIVE, Image.Status.DELETED]
    )
    if image_id:
        images = images.filter(pk=image_id)
    for image in images:
        try:
            image_delete(ctx=None, image=image)
        except ImageError as exc:
            log.warning("Could not delete the image %s of a failed snapshot: %s", image.id, exc)


# --- reports from hosts -------------------------------------------------------------------------------


def action_result(*, report: rpc.ActionResult) -> None:
    """Finish (or fail) the task a host reports on. Stale or repeated reports change nothing: the
    compare-and-swap on the task state lets only the first one through."""
    instance = Instance.objects.filter(uuid=report.instance_uuid).select_related("host").first()
    if instance is None or instance.host is None or instance.host.name != report.host:
        return  # a host speaks only about the instances placed on it
    task_state = ALLOWED[report.action].task_state
    event = f"compute_{report.action}_instance"
    if report.error:
        fields: dict[str, Any] = {"power_state": report.power_state}
        if report.action == "rebuild":
            fields["vm_state"] = VmState.ERROR  # the old disk is gone and the new one did not come up
        failed = lifecycle.task_fail(
            instance=instance,
            expected_task_states=[task_state],
            event=event,
            message=report.error,
            details=report.details,
            request_id=report.request_id,
            reported_by=report.host,
            **fields,
        )
        if report.action == "snapshot" and (report.image_id or failed):
            # Even when the report comes too late for the task (the server was deleted meanwhile), the
            # image it names got no data and must not stay behind queued.
            _abandon_snapshot_images(instance, report.image_id)
        return

    fields = {"power_state": report.power_state, "vnc_host": report.vnc_host or "", "vnc_port": report.vnc_port}
    vm_state = RESULT_VM_STATE[report.action]
    if report.action == "rebuild":
        vm_state = VmState.ACTIVE if report.power_state == rpc.RUNNING else VmState.STOPPED
        fields["launched_at"] = timezone.now()
        if report.addresses is not None:
            fields["addresses"] = report.addresses
    elif report.action == "snapshot":
        fields = {"power_state": report.power_state}  # the guest's console is where it was
        image = Image.objects.filter(pk=report.image_id).first() if report.image_id else None
        if image is None or image.status != Image.Status.ACTIVE:
            lifecycle.task_fail(
                instance=instance,
                expected_task_states=[task_state],
                event=event,
                message=f"The snapshot's image {report.image_id} did not become active",
                request_id=report.request_id,
                reported_by=report.host,
                **fields,
            )
            _abandon_snapshot_images(instance, report.image_id)
            return
    if vm_state is not None:
        fields["vm_state"] = vm_state
    lifecycle.task_finish(
        instance=instance,
        expected_task_state=task_state,
        event=event,
        request_id=report.request_id,
        reported_by=report.host,
        **fields,
    )


# --- tasks whose lease ran out -----------------------------------------------------------------------


def expired_task_fields(task_state: str) -> dict[str, Any]:
    """What the reaper writes besides idling the instance: a rebuild cut short leaves no usable disk."""
    if task_state == TaskState.REBUILDING:
        return {"vm_state": VmState.ERROR}
    return {}


def expired_task_cleanup(*, instance: Instance, task_state: str) -> None:
    if task_state == TaskState.IMAGE_SNAPSHOT:
        _abandon_snapshot_images(instance)
