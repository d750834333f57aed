"""The one home of server actions: how each begins, and how each ends from its host's report.

Every action has a row in ``portal.states.ALLOWED``. Beginning one (``host_action``) checks that table
and claims the task state by compare-and-swap (``lifecycle.action_begin``), then asks the server's host
once that is committed. A host answers with an ``ActionResult``; ``action_result`` finishes the
transition the table describes, with the action's own fields from ``_FINISHERS`` where it has some.
Moves (resize, migrate, shelve, rescue) begin and end in ``portal.services.moves``, through the same
two doors. lock/unlock and os-resetState need no host.

Adding an action means a row in the state table, a sender in ``compute_tasks.rpc``, a host method and,
when its report carries more than a power state, a finisher here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import Image, Instance, Keypair
from portal.selectors.instances import instance_by_uuid
from portal.states import ALLOWED, KEEP, REPORTED, TaskState, VmState

from . import lifecycle, quotas
from .host_requests import build_request, instance_ref
from .image_uploads import snapshot_upload_url
from .images import ImageError, image_build_spec, image_create, image_delete
from .instances import InvalidRequest, check_image_fits

log = logging.getLogger(__name__)

_UNSET: Any = object()


class NotAllowed(Exception):
    """Policy forbids this caller the action (the API answers 403)."""


def host_of(instance: Instance, action: str) -> str:
    """The name of the host the instance is on, or StateConflict when it is on none."""
    if instance.host_id is None:
        verb = ALLOWED[action].record_as or action
        raise lifecycle.StateConflict(
            f"Cannot '{verb}' instance {instance.uuid} while it is in vm_state {instance.vm_state}: it is on no host"
        )
    return instance.host.name


def host_action(
    *,
    ctx: RequestContext,
    instance: Instance,
    action: str,
    send: Callable[[str], None],
    **fields: Any,
) -> str:
    """Begin ``action``: claim its task state (writing ``fields`` with it), and once that is committed
    call ``send(host)`` to ask the instance's host. Returns the host's name."""
    host = host_of(instance, action)
    with transaction.atomic():
        lifecycle.action_begin(instance=instance, action=action, ctx=ctx, **fields)
        transaction.on_commit(lambda: send(host))
    return host


# The actions whose whole request is the instance's reference, and the ``rpc`` sender of each.
_REF_SENDERS: dict[str, str] = {
    "start": "start_instance",
    "stop": "stop_instance",
    "reboot": "reboot_instance",
    "reboot_hard": "reboot_instance",
    "pause": "pause_instance",
    "unpause": "unpause_instance",
    "suspend": "suspend_instance",
    "resume": "resume_instance",
}
SIMPLE_ACTIONS = frozenset(_REF_SENDERS)


def instance_action(*, ctx: RequestContext, instance: Instance, action: str) -> None:
    """start, stop, reboot, reboot_hard, pause, unpause, suspend or resume."""
    sender = getattr(rpc, _REF_SENDERS[action])
    ref = instance_ref(instance, ctx.request_id, reboot_type="HARD" if action == "reboot_hard" else "SOFT")
    host_action(ctx=ctx, instance=instance, action=action, send=lambda host: sender(host, ref))


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
    personality: Sequence[Mapping[str, str]] | None = None,
    hostname: str | None = None,
    access_ip_v4: str | None = None,
    access_ip_v6: str | None = None,
    reimage_volume: bool = False,
) -> Instance:
    """A new root disk from ``image`` (the same or another) on the same host, keeping the server's id,
    host, addresses and flavor. The new attributes are written with the task state, so they change only
    if the rebuild is accepted. A stopped server stays stopped; an ERROR one comes back ACTIVE.

    A server booted from a volume is rebuilt only with ``reimage_volume`` (compute API 2.93): its host
    writes ``image`` over the root volume (as it wrote the first image onto it) and boots it again; the
    server keeps showing no image of its own, as Nova's does.

    ``personality`` (before 2.57) replaces the server's personality files; None keeps them.
    """
    volume_backed = instance.image_ref is None
    if volume_backed and not reimage_volume:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; rebuilding it is not supported.")
    # A root volume has its own size: only the memory is the flavor's to check.
    check_image_fits(image, memory_mb=instance.memory_mb, root_gb=None if volume_backed else instance.root_gb)
    fields: dict[str, Any] = {} if volume_backed else {"image": image, "image_ref": image.id}
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
    if personality is not None:
        fields["personality"] = [{"path": f["path"], "contents": f["contents"]} for f in personality]
    if hostname is not None:
        fields["hostname"] = hostname
    if access_ip_v4 is not None:
        fields["access_ip_v4"] = access_ip_v4
    if access_ip_v6 is not None:
        fields["access_ip_v6"] = access_ip_v6
    power_on = instance.vm_state != VmState.STOPPED

    def send(host: str) -> None:
        rpc.rebuild_instance(host, request)

    with transaction.atomic():
        if metadata is not None:
            quotas.quota_check(project=instance.project, user=None, resource="metadata_items", delta=len(metadata))
        if personality:
            quotas.personality_quota_check(project=instance.project, user=ctx.user, files=personality)
        host_action(ctx=ctx, instance=instance, action="rebuild", send=send, **fields)
        try:
            build = build_request(instance, ctx.request_id)
            if volume_backed:
                build = _reimaged_root_volume(build, image)
            request = rpc.RebuildRequest(build=build, power_on=power_on)
        except ImageError as exc:
            raise InvalidRequest(str(exc)) from None
    return instance


def _reimaged_root_volume(build: rpc.BuildRequest, image: Image) -> rpc.BuildRequest:
    """The build of a volume-backed server whose root volume (boot index 0) gets ``image`` written over it."""
    spec = rpc.ImageSpec(**image_build_spec(image=image))
    devices = [dataclasses.replace(d, image=spec) if d.boot_index == 0 else d for d in build.block_devices]
    if not any(d.boot_index == 0 for d in devices):
        raise InvalidRequest("Unable to find root block device mapping for volume-backed instance.")
    return dataclasses.replace(build, block_devices=devices)


# --- snapshot -----------------------------------------------------------------------------------------


def instance_snapshot(
    *, ctx: RequestContext, instance: Instance, name: str, metadata: dict[str, str] | None = None
) -> Image:
    """createImage: a new private image (queued) and the host asked to fill it with the server's disk.

    The host gets a signed upload URL for that one image; the image API marks it ``saving`` while the
    data arrives and ``active`` once it is complete and hashed.
    """
    host_of(instance, "snapshot")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; snapshot its volume instead.")
    # As in Nova, the caller's metadata may say what kind of image this is.
    return snapshot_into_image(
        ctx=ctx, instance=instance, name=name, properties={"image_type": "snapshot", **(metadata or {})}
    )


def snapshot_into_image(
    *,
    ctx: RequestContext,
    instance: Instance,
    name: str,
    properties: dict[str, str],
    record_as: str | None = None,
    backup_rotation: int | None = None,
) -> Image:
    """The snapshot of createImage and createBackup: the image, with ``properties`` and the ones that say
    which server it came from and who made it (the cloud's to say), and the host asked to fill it."""
    host_of(instance, "snapshot")
    base = instance.image
    properties = {
        **properties,
        "instance_uuid": str(instance.uuid),
        "base_image_ref": str(instance.image_ref),
        "user_id": str(ctx.user.pk),
    }
    begin = {} if record_as is None else {"record_as": record_as}
    with transaction.atomic():
        host = host_action(
            ctx=ctx,
            instance=instance,
            action="snapshot",
            send=lambda host: rpc.snapshot_instance(host, request),
            **begin,
        )
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
        if backup_rotation is not None:
            Image.objects.filter(pk=image.pk).update(backup_rotation=backup_rotation)
            image.backup_rotation = backup_rotation
        request = rpc.SnapshotRequest(
            instance_uuid=str(instance.uuid),
            domain_name=instance.domain_name,
            image_id=str(image.id),
            upload_url=snapshot_upload_url(image=image),
            request_id=ctx.request_id,
        )
    log.debug("snapshot of %s on %s into image %s", instance.uuid, host, image.id)
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


# --- rescue -------------------------------------------------------------------------------------------


# The image properties that let Nova (2.87) try a volume-backed rescue on a host that can do one.
_BFV_RESCUE_PROPERTIES = ("hw_rescue_bus", "hw_rescue_device")


def instance_rescue(
    *, ctx: RequestContext, instance: Instance, rescue_image: Image | None = None, allow_volume_backed: bool = False
) -> None:
    """Boot the server from ``rescue_image`` (its own image by default) with its own disk second.

    A server booted from a volume cannot be rescued. From compute API 2.87 (``allow_volume_backed``) Nova
    rescues one when the rescue image asks for a stable rescue device and the host reports it can; no host
    here can, so such a request is refused with the reason Nova gives for that host."""
    if instance.image_ref is None:
        properties = rescue_image.properties or {} if rescue_image is not None else {}
        if allow_volume_backed and all(key in properties for key in _BFV_RESCUE_PROPERTIES):
            reason = "Host unable to rescue a volume-backed instance"
        else:
            reason = "Cannot rescue a volume-backed instance"
        raise InvalidRequest(f"Instance {instance.uuid} cannot be rescued: {reason}")
    image = rescue_image or instance.image
    if image is None:
        raise InvalidRequest(f"The image of instance {instance.uuid} is gone: name a rescue image.")
    if image.status != Image.Status.ACTIVE:
        raise InvalidRequest(f"Image {image.id} is not active.")
    spec = build_request(instance, ctx.request_id, image=image).image
    request = rpc.RescueRequest(
        instance_uuid=str(instance.uuid), domain_name=instance.domain_name, rescue_image=spec, request_id=ctx.request_id
    )
    host_action(ctx=ctx, instance=instance, action="rescue", send=lambda host: rpc.rescue_instance(host, request))


def instance_unrescue(*, ctx: RequestContext, instance: Instance) -> None:
    ref = instance_ref(instance, ctx.request_id)
    host_action(ctx=ctx, instance=instance, action="unrescue", send=lambda host: rpc.unrescue_instance(host, ref))


# --- reports from hosts -------------------------------------------------------------------------------


def action_result(*, report: rpc.ActionResult) -> None:
    """Finish (or fail) the task a host reports on. Stale or repeated reports change nothing: the
    compare-and-swap on the task state (and on the host the instance is placed on) lets only the first
    one through."""
    # The moves begin through this module, so their report handlers are looked up when a report comes.
    from .live_migrations import REPORT_HANDLERS as live_reports
    from .moves import REPORT_HANDLERS as move_reports
    from .shelving import REPORT_HANDLERS as shelve_reports

    handler = move_reports.get(report.action) or live_reports.get(report.action) or shelve_reports.get(report.action)
    if handler is None and report.action == "terminate":
        handler = _terminated
    if handler is not None:
        handler(report)
        return
    if report.action not in ALLOWED or ALLOWED[report.action].result is None:
        log.warning("Host %s reported an action this cloud does not know: %s", report.host, report.action[:40])
        return
    instance = Instance.objects.filter(uuid=report.instance_uuid).select_related("host").first()
    if instance is None or instance.host is None or instance.host.name != report.host:
        return  # a host speaks only about the instances placed on it
    rule = ALLOWED[report.action]
    expected = sorted(rule.reported_task_states())
    event = f"compute_{report.action}_instance"
    if report.error:
        fields: dict[str, Any] = {"power_state": report.power_state}
        if report.action == "rebuild":
            fields["vm_state"] = VmState.ERROR  # the old disk is gone and the new one did not come up
        failed = lifecycle.report_failed(
            report,
            instance=instance,
            expected_task_states=expected,
            event=event,
            **fields,
        )
        if report.action == "snapshot" and (report.image_id or failed):
            # Even when the report comes too late for the task (the server was deleted meanwhile), the
            # image it names got no data and must not stay behind queued.
            _abandon_snapshot_images(instance, report.image_id)
        return

    fields = {"power_state": report.power_state, "vnc_host": report.vnc_host or "", "vnc_port": report.vnc_port}
    if rule.result == REPORTED:
        fields["vm_state"] = VmState.ACTIVE if report.power_state == rpc.RUNNING else VmState.STOPPED
    elif rule.result != KEEP:
        fields["vm_state"] = rule.result
    finisher = _FINISHERS.get(report.action)
    if finisher is not None:
        fields = finisher(instance, report, fields)
        if fields is None:
            return
    with transaction.atomic():
        for task_state in expected:
            if lifecycle.task_finish(
                instance=instance,
                expected_task_state=task_state,
                event=event,
                request_id=report.request_id,
                reported_by=report.host,
                **fields,
            ):
                break


def _rebuilt(instance: Instance, report: rpc.ActionResult, fields: dict[str, Any]) -> dict[str, Any]:
    fields["launched_at"] = timezone.now()
    if report.addresses is not None and instance.networks != "ports":
        fields["addresses"] = report.addresses
    return fields


def _snapshotted(instance: Instance, report: rpc.ActionResult, fields: dict[str, Any]) -> dict[str, Any] | None:
    fields = {key: value for key, value in fields.items() if key not in ("vnc_host", "vnc_port")}
    image = Image.objects.filter(pk=report.image_id).first() if report.image_id else None
    if image is None or image.status != Image.Status.ACTIVE:
        lifecycle.task_fail(
            instance=instance,
            expected_task_states=[TaskState.IMAGE_SNAPSHOT],
            event="compute_snapshot_instance",
            message=f"The snapshot's image {report.image_id} did not become active",
            request_id=report.request_id,
            reported_by=report.host,
            **fields,
        )
        _abandon_snapshot_images(instance, report.image_id)
        return None
    if image.backup_rotation is not None:
        from .backups import backups_rotate  # the backups begin through this module

        backups_rotate(image=image)
    return fields


def _terminated(report: rpc.ActionResult) -> None:
    instance = instance_by_uuid(report.instance_uuid)
    if instance is None:
        return
    if report.error:
        lifecycle.record_current_event(
            instance,
            report.request_id,
            "compute_terminate_instance",
            result="Error",
            host=report.host,
            details=report.error,
        )
        return  # stays deleting; the reaper ends it when the lease runs out
    lifecycle.mark_deleted(
        instance=instance,
        expected_task_states=[TaskState.DELETING],
        event="compute_terminate_instance",
        reported_by=report.host,
    )


# What an action's success writes besides its vm_state, power state and console (None: it failed after all).
_FINISHERS: dict[str, Callable[[Instance, rpc.ActionResult, dict[str, Any]], dict[str, Any] | None]] = {
    "rebuild": _rebuilt,
    "snapshot": _snapshotted,
}


# --- tasks whose lease ran out -----------------------------------------------------------------------


def expired_task_fields(task_state: str) -> dict[str, Any]:
    """What the reaper writes besides idling the instance: a rebuild cut short leaves no usable disk."""
    if task_state == TaskState.REBUILDING:
        return {"vm_state": VmState.ERROR}
    return {}


def expired_task_cleanup(*, instance: Instance, task_state: str) -> None:
    if task_state == TaskState.IMAGE_SNAPSHOT:
        _abandon_snapshot_images(instance)
