"""Shelving: a server powered off and kept as an image, its host freed (offloaded) at once or after
``CLOUD['SHELVED_OFFLOAD_TIME']``; unshelving starts it again where it is, or places an offloaded one
like a boot and builds it from that image (which is then deleted)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import ComputeHost, Image, Instance
from portal.selectors.hosts import host_state_snapshots
from portal.states import TaskState, VmState

from . import lifecycle
from .actions import NotAllowed, host_action, host_of
from .host_requests import build_request, instance_ref
from .image_uploads import snapshot_upload_url
from .images import image_create, image_delete
from .instances import InvalidRequest
from .scheduling import LostRace, select_destination


def instance_shelve(*, ctx: RequestContext, instance: Instance) -> Image:
    """Power off and save the disk as an image (``<name>-shelved``); with ``SHELVED_OFFLOAD_TIME`` 0 the
    host lets go of the server at once."""
    host_of(instance, "shelve")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; shelving it is not supported.")
    base = instance.image
    requests: list[rpc.ShelveRequest] = []
    with transaction.atomic():
        image = image_create(
            ctx=None,
            name=f"{instance.name}-shelved",
            disk_format="qcow2",
            container_format="bare",
            visibility=Image.Visibility.PRIVATE,
            owner_id=str(instance.project_id),
            min_disk=max(instance.root_gb, base.min_disk if base else 0),
            min_ram=base.min_ram if base else 0,
            properties={
                "image_type": "snapshot",
                "instance_uuid": str(instance.uuid),
                "base_image_ref": str(instance.image_ref),
                "shelved": "true",
            },
        )
        host_action(
            ctx=ctx,
            instance=instance,
            action="shelve",
            send=lambda host: rpc.shelve_instance(host, requests[0]),
            shelved_image=image.id,
        )
        requests.append(
            rpc.ShelveRequest(
                instance_uuid=str(instance.uuid),
                domain_name=instance.domain_name,
                image_id=str(image.id),
                upload_url=snapshot_upload_url(image=image),
                request_id=ctx.request_id,
                offload=settings.CLOUD["SHELVED_OFFLOAD_TIME"] == 0,
            )
        )
    return image


def instance_shelve_offload(*, ctx: RequestContext, instance: Instance) -> None:
    ref = instance_ref(instance, ctx.request_id)
    host_action(
        ctx=ctx, instance=instance, action="shelve_offload", send=lambda host: rpc.shelve_offload_instance(host, ref)
    )


def _shelved(report: rpc.ActionResult) -> None:
    instance = Instance.objects.filter(uuid=report.instance_uuid).select_related("host").first()
    if instance is None or instance.host is None or instance.host.name != report.host:
        return
    image = Image.objects.filter(pk=report.image_id).first() if report.image_id else None
    error = report.error
    if not error and (image is None or image.status != Image.Status.ACTIVE or image.pk != instance.shelved_image):
        error = f"The shelved image {report.image_id} did not become active"
    if error:
        if (
            lifecycle.task_fail(
                instance=instance,
                expected_task_states=[TaskState.SHELVING],
                event="compute_shelve_instance",
                message=error,
                details=report.details,
                request_id=report.request_id,
                reported_by=report.host,
                power_state=report.power_state,
                shelved_image=None,
            )
            and image is not None
        ):
            image_delete(ctx=None, image=image)
        return
    fields: dict[str, Any] = {
        "vm_state": VmState.SHELVED,
        "power_state": report.power_state,
        "shelved_at": timezone.now(),
        "vnc_port": None,
    }
    if report.offloaded:
        fields.update(vm_state=VmState.SHELVED_OFFLOADED, host_id=None, vnc_host="", power_state=rpc.NOSTATE)
    lifecycle.task_finish(
        instance=instance,
        expected_task_state=TaskState.SHELVING,
        event="compute_shelve_instance",
        request_id=report.request_id,
        reported_by=report.host,
        **fields,
    )


def _offloaded(report: rpc.ActionResult) -> None:
    instance = Instance.objects.filter(uuid=report.instance_uuid).select_related("host").first()
    if instance is None or instance.host is None or instance.host.name != report.host:
        return
    if report.error:
        lifecycle.report_failed(
            report,
            instance=instance,
            expected_task_states=[TaskState.SHELVING_OFFLOADING],
            event="compute_shelve_offload_instance",
        )
        return
    lifecycle.task_finish(
        instance=instance,
        expected_task_state=TaskState.SHELVING_OFFLOADING,
        event="compute_shelve_offload_instance",
        request_id=report.request_id,
        reported_by=report.host,
        vm_state=VmState.SHELVED_OFFLOADED,
        host_id=None,
        power_state=rpc.NOSTATE,
        vnc_host="",
        vnc_port=None,
    )


def offload_shelved(*, limit: int = 100) -> int:
    """Offload the servers shelved longer than ``CLOUD['SHELVED_OFFLOAD_TIME']`` (> 0)."""
    after = settings.CLOUD["SHELVED_OFFLOAD_TIME"]
    if after <= 0:
        return 0
    due = timezone.now() - timedelta(seconds=after)
    rows = Instance.objects.filter(
        vm_state=VmState.SHELVED, task_state__isnull=True, shelved_at__lt=due
    ).select_related("user", "project", "host")
    offloaded = 0
    for instance in rows[:limit]:
        ctx = RequestContext(user=instance.user, project=instance.project, role="admin")
        try:
            instance_shelve_offload(ctx=ctx, instance=instance)
        except lifecycle.StateConflict:
            continue
        offloaded += 1
    return offloaded


_UNSET: Any = object()


def instance_unshelve(
    *, ctx: RequestContext, instance: Instance, availability_zone: str | None = _UNSET, host: str = ""
) -> None:
    """A shelved server still on its host is powered on there; an offloaded one is placed again by the
    scheduler and built from its image.

    As in Nova, an offloaded server is placed in its pinned zone; ``availability_zone`` (2.77) pins it to
    another, and ``None`` (2.91) unpins it so that any zone will do. ``host`` (2.91, admins) names the
    host: it must exist (``LookupError``) and lie in the zone the server will be pinned to
    (:class:`lifecycle.StateConflict`). A zone or a host for a server still on its host is a conflict too.
    """
    zone_given = availability_zone is not _UNSET
    if instance.vm_state == VmState.SHELVED and (zone_given or host):
        raise lifecycle.StateConflict(
            f"Specifying an availability zone or a host when unshelving server {instance.uuid} with status "
            "SHELVED is not supported. The server status must be SHELVED_OFFLOADED."
        )
    if host and not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os_compute_api:os-shelve:unshelve_to_host to be performed.")
    pinned = availability_zone if zone_given else instance.pinned_availability_zone
    if host:
        chosen = ComputeHost.objects.filter(name=host).first()
        if chosen is None:
            raise LookupError(f"Compute host {host} could not be found.")
        if pinned is not None and _zone_of(chosen) != pinned:
            raise lifecycle.StateConflict(f'Host "{host}" is not in the availability zone "{pinned}".')
    with transaction.atomic():
        fields: dict[str, Any] = {}
        if instance.vm_state == VmState.SHELVED_OFFLOADED:
            # The scheduler places it in its pinned zone, or anywhere; the chosen host's zone is recorded.
            fields = {"availability_zone": pinned or "", "pinned_availability_zone": pinned}
        record = lifecycle.action_begin(instance=instance, action="unshelve", ctx=ctx, **fields)
        if instance.vm_state == VmState.SHELVED:
            # As Nova: still on its host, it is simply started there.
            lifecycle.compare_and_swap(
                instance, expected_task_states=[TaskState.UNSHELVING], task_state=TaskState.POWERING_ON
            )
            ref = instance_ref(instance, ctx.request_id)
            on = instance.host.name
            transaction.on_commit(lambda: rpc.start_instance(on, ref))
            return
        request = rpc.UnshelveRequest(instance_uuid=str(instance.uuid), request_id=record.request_id, host=host)
        transaction.on_commit(lambda: rpc.unshelve_server(request))


def unshelve_server(*, instance_uuid: str, request_id: str = "", host: str = "") -> str | None:
    """The conductor places an offloaded server again and asks the chosen host to build it from its
    shelved image. Returns the host, None if it was not placed."""
    for _attempt in range(settings.SCHEDULER["CLAIM_RETRIES"] + 1):
        try:
            with transaction.atomic():
                return _place_unshelve(instance_uuid, request_id, host)
        except LostRace:
            continue
    return None


def _place_unshelve(instance_uuid: str, request_id: str, host: str) -> str | None:
    instance = Instance.objects.for_change().select_related("image").filter(uuid=instance_uuid).first()
    if instance is None or instance.task_state != TaskState.UNSHELVING or instance.host_id is not None:
        return None
    chosen, explanation = select_destination(instance, requested_host=host)
    if chosen is None:
        lifecycle.task_fail(
            instance=instance,
            expected_task_states=[TaskState.UNSHELVING],
            event="conductor_unshelve_instance",
            message=f"No valid host was found. {explanation.render() if explanation else ''}".strip(),
            request_id=request_id,
            code=400,
        )
        return None
    image = Image.objects.filter(pk=instance.shelved_image, status=Image.Status.ACTIVE).first()
    if image is None:
        lifecycle.task_fail(
            instance=instance,
            expected_task_states=[TaskState.UNSHELVING],
            event="conductor_unshelve_instance",
            message=f"The shelved image {instance.shelved_image} of the server is gone.",
            request_id=request_id,
            vm_state=VmState.ERROR,
        )
        return None
    if not lifecycle.compare_and_swap(
        instance,
        expected_task_states=[TaskState.UNSHELVING],
        task_state=TaskState.SPAWNING,
        host_id=chosen.pk,
        availability_zone=instance.availability_zone or _zone_of(chosen),
    ):
        raise LostRace
    lifecycle.record_current_event(instance, request_id, "conductor_unshelve_instance", host=chosen.name)
    build = build_request(instance, request_id, image=image)
    name = chosen.name
    transaction.on_commit(lambda: rpc.build_and_run_instance(name, build))
    return name


def _zone_of(host: ComputeHost) -> str:
    snapshot = host_state_snapshots(host_ids=[host.pk])
    return snapshot[0].availability_zone if snapshot else ""


# Reports of the shelving steps, by the action the host names.
REPORT_HANDLERS: dict[str, Callable[[rpc.ActionResult], None]] = {
    "shelve": _shelved,
    "shelve_offload": _offloaded,
}
