"""Moving servers: resize and cold migration, with confirm and revert.

Each move begins like every action (``actions.host_action`` claims its task state from the state table)
and ends from its hosts' reports (``REPORT_HANDLERS``, which ``actions.action_result`` dispatches to).

A resize or cold migration is a ``Migration`` row and these steps, each a compare-and-swap on the
instance's task state, so a repeated or late report changes nothing:

1. ``resize_prep``: the API records the migration; the conductor chooses a destination with the
   scheduler (group rules, zones, aggregates and a requested host honoured) and claims it: the
   migration row holds the new flavor on it from then on (``selectors.hosts.migration_claims``).
2. ``resize_migrating``: the source powers the guest off, keeps its domain and files aside
   (``<dir>_resize``), and uploads the disk into a hidden transfer image through a signed URL.
3. ``resize_finish``: the destination builds the guest from that image with the new flavor. When it
   reports, the instance is on the destination (``RESIZED``, shown ``VERIFY_RESIZE``), and the source
   keeps the old flavor claimed until the user decides.
4. confirm: the source drops what it kept; revert: the destination drops the new guest and the source
   brings the old one back. Either way the migration ends, which releases its claim exactly once.

A destination that fails to build reverts on its own. Hosts never trust each other: the disk travels
through the image API, and each host's report is believed only about its own part of the move.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import ComputeHost, Flavor, Image, Instance, Migration
from portal.selectors.rows import CompiledQuery
from portal.states import TaskState, VmState

from . import lifecycle, quotas, volumes
from .actions import NotAllowed, host_action, host_of
from .host_requests import build_request
from .image_uploads import snapshot_upload_url
from .images import ImageError, image_create, image_delete
from .instances import InvalidRequest, check_image_fits
from .scheduling import LostRace, select_destination

log = logging.getLogger(__name__)

MOVE_EVENT = "conductor_migrate_server"


def flavor_snapshot(source: Instance | Flavor) -> dict[str, Any]:
    """The sizes a migration keeps of a flavor, as the instance copies them."""
    if isinstance(source, Instance):
        return {
            "name": source.flavor_name,
            "flavor_id": source.flavor_id,
            "flavorid": source.flavor_ref,
            "vcpus": source.vcpus,
            "memory_mb": source.memory_mb,
            "root_gb": source.root_gb,
            "ephemeral_gb": source.ephemeral_gb,
            "swap": source.swap,
            "extra_specs": dict(source.flavor_extra_specs),
        }
    return {
        "name": source.name,
        "flavor_id": source.pk,
        "flavorid": source.flavorid,
        "vcpus": source.vcpus,
        "memory_mb": source.memory_mb,
        "root_gb": source.root_gb,
        "ephemeral_gb": source.ephemeral_gb,
        "swap": source.swap,
        "extra_specs": dict(source.extra_specs),
    }


def _instance_flavor_fields(flavor: dict[str, Any]) -> dict[str, Any]:
    return {
        "flavor_id": flavor["flavor_id"] if Flavor.objects.filter(pk=flavor["flavor_id"]).exists() else None,
        "flavor_name": flavor["name"],
        "flavor_ref": flavor.get("flavorid", ""),  # absent from the migrations of older releases
        "vcpus": flavor["vcpus"],
        "memory_mb": flavor["memory_mb"],
        "root_gb": flavor["root_gb"],
        "ephemeral_gb": flavor["ephemeral_gb"],
        "swap": flavor["swap"],
        "flavor_extra_specs": flavor["extra_specs"],
    }


def _flavor_spec(flavor: dict[str, Any]) -> rpc.FlavorSpec:
    return rpc.FlavorSpec(
        name=flavor["name"],
        vcpus=flavor["vcpus"],
        memory_mb=flavor["memory_mb"],
        root_gb=flavor["root_gb"],
        extra_specs=dict(flavor["extra_specs"]),
    )


def active_migration(instance: Instance) -> Migration | None:
    # Most servers never move: whether one is moving is asked first, by a query built once per process.
    if not _MOVING_QUERY.rows("moving", instance_id=instance.pk):
        return None
    return (
        Migration.objects.select_related("source_host", "dest_host")
        .filter(instance=instance, status__in=Migration.ACTIVE_STATUSES)
        .first()
    )


_MOVING_QUERY = CompiledQuery(
    lambda _shape, *, instance_id: Migration.objects.filter(
        instance_id=instance_id, status__in=Migration.ACTIVE_STATUSES
    ).values_list("pk")[:1]
)


# --- resize and cold migration: the API's side ------------------------------------------------------


def instance_resize(*, ctx: RequestContext, instance: Instance, flavor: Flavor) -> Migration:
    """Resize to ``flavor``: a move to a host the scheduler chooses (this one included), the disk
    grown to the new size. Quota for a larger flavor is checked now and held until confirm or revert."""
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; resizing it is not supported.")
    if flavor.disabled:
        raise InvalidRequest(f"Flavor {flavor.flavorid} is disabled and cannot be used.")
    if flavor.pk == instance.flavor_id:
        raise InvalidRequest("When resizing, instances must change flavor!")
    if flavor.root_gb < instance.root_gb:
        raise InvalidRequest(
            f"Resizing to a smaller disk is not possible: flavor {flavor.flavorid} has {flavor.root_gb} GB, "
            f"the server {instance.root_gb} GB."
        )
    if instance.image is not None:
        check_image_fits(instance.image, memory_mb=flavor.memory_mb, root_gb=flavor.root_gb)
    with transaction.atomic():
        quotas.instance_quota_check(
            project=instance.project,
            user=instance.user,
            instances=0,
            cores=max(0, flavor.vcpus - instance.vcpus),
            ram=max(0, flavor.memory_mb - instance.memory_mb),
        )
        return begin_migration(
            ctx=ctx,
            instance=instance,
            action="resize",
            kind=Migration.Type.RESIZE,
            place=rpc.move_server,
            new_flavor=flavor_snapshot(flavor),
        )


def instance_migrate(*, ctx: RequestContext, instance: Instance, host: str = "") -> Migration:
    """Cold-migrate to another host (an admin's action), to ``host`` when named (2.56)."""
    if not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os_compute_api:os-migrate-server:migrate to be performed.")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; migrating it is not supported.")
    if host:
        target = ComputeHost.objects.filter(name=host).first()
        if target is None:
            raise LookupError(f"Compute host {host[:64]} could not be found.")
        if instance.host_id == target.pk:
            raise InvalidRequest(f"Unable to migrate instance ({instance.uuid}) to current host ({host}).")
    with transaction.atomic():
        return begin_migration(
            ctx=ctx,
            instance=instance,
            action="migrate",
            kind=Migration.Type.MIGRATION,
            place=rpc.move_server,
            requested_host=host,
        )


def begin_migration(
    *,
    ctx: RequestContext,
    instance: Instance,
    action: str,
    kind: str,
    place: Callable[[rpc.MoveRequest], None],
    new_flavor: dict[str, Any] | None = None,
    requested_host: str = "",
    power_on: bool | None = None,
    **fields: Any,
) -> Migration:
    """Every move's first step (inside the caller's transaction): claim the action's task state, record the
    migration from the instance's host, and once committed ask the conductor to place it with ``place``
    (``rpc.move_server``, ``rpc.live_migrate_server``, ``rpc.evacuate_server``). ``power_on``: whether the
    guest runs after the move; by default, whether it runs now."""
    source = host_of(instance, action)
    migrations: list[Migration] = []

    def send(_host: str) -> None:
        place(rpc.MoveRequest(migration_id=migrations[0].pk, request_id=ctx.request_id))

    host_action(ctx=ctx, instance=instance, action=action, send=send)
    old_flavor = flavor_snapshot(instance)
    migration = Migration.objects.create(
        instance=instance,
        project=instance.project,
        user=ctx.user,
        migration_type=kind,
        source_host=ComputeHost.objects.get(name=source),
        old_flavor=old_flavor,
        new_flavor=new_flavor or old_flavor,
        power_on=instance.vm_state == VmState.ACTIVE if power_on is None else power_on,
        requested_host=requested_host,
        **fields,
    )
    migrations.append(migration)
    return migration


# --- resize and cold migration: the conductor's side --------------------------------------------------


def move_server(*, migration_id: int, request_id: str = "") -> str | None:
    """Choose and claim the destination of a migration that waits for one, then ask the source for the
    disk. Returns the destination's name, None when it was not placed (or no longer waits)."""
    for _attempt in range(settings.SCHEDULER["CLAIM_RETRIES"] + 1):
        try:
            with transaction.atomic():
                return _place_move(migration_id, request_id)
        except LostRace:
            continue
    with transaction.atomic():
        _move_not_placed(migration_id, request_id, "The hosts that fitted were claimed by concurrent requests.")
    return None


def locked_migration(migration_id: int) -> Migration | None:
    """A migration being placed, its row locked (not its source host's), with its source host."""
    rows = Migration.objects.select_for_update(of=("self",)).select_related("source_host")
    return rows.filter(pk=migration_id).first()


def _place_move(migration_id: int, request_id: str) -> str | None:
    migration = locked_migration(migration_id)
    if migration is None or migration.status != Migration.Status.PRE_MIGRATING:
        return None
    instance = Instance.objects.for_change().select_related("image").get(pk=migration.instance_id)
    if instance.task_state != TaskState.RESIZE_PREP:
        return None
    same_host = migration.migration_type == Migration.Type.RESIZE and settings.CLOUD["ALLOW_RESIZE_TO_SAME_HOST"]
    ignore = frozenset() if same_host else frozenset({migration.source_host.name})
    chosen, explanation = select_destination(
        instance, flavor=migration.new_flavor, ignore_hosts=ignore, requested_host=migration.requested_host
    )
    if chosen is None:
        _move_not_placed(migration_id, request_id, explanation.render() if explanation else "No valid host.")
        return None
    image = image_create(
        ctx=None,
        name=f"{instance.name}-migration-{migration.pk}",
        disk_format="qcow2",
        container_format="bare",
        visibility=Image.Visibility.PRIVATE,
        owner_id=None,
        properties={"image_type": "migration", "instance_uuid": str(instance.uuid)},
    )
    # The message expires with the step's lease (taken before the swap sets it, so never after it): once
    # the lease sent the server back, a late copy of it must not take the guest down again.
    expires = lifecycle.lease_deadline(TaskState.RESIZE_MIGRATING)
    if not lifecycle.compare_and_swap(
        instance, expected_task_states=[TaskState.RESIZE_PREP], task_state=TaskState.RESIZE_MIGRATING
    ):
        raise LostRace
    Migration.objects.filter(pk=migration.pk).update(
        dest_host=chosen, status=Migration.Status.MIGRATING, transfer_image=image.id, updated_at=timezone.now()
    )
    lifecycle.record_current_event(instance, request_id, MOVE_EVENT, host=chosen.name)
    request = rpc.MigrateDiskRequest(
        instance_uuid=str(instance.uuid),
        domain_name=instance.domain_name,
        migration_id=migration.pk,
        image_id=str(image.id),
        upload_url=snapshot_upload_url(image=image),
        request_id=request_id,
    )
    source = migration.source_host.name
    transaction.on_commit(lambda: rpc.migrate_disk(source, request, expires=expires))
    log.info("instance %s moves from %s to %s (migration %s)", instance.uuid, source, chosen.name, migration.pk)
    return chosen.name


def _move_not_placed(migration_id: int, request_id: str, message: str) -> None:
    migration = Migration.objects.filter(pk=migration_id, status=Migration.Status.PRE_MIGRATING).first()
    if migration is None:
        return
    instance = Instance.objects.get(pk=migration.instance_id)
    Migration.objects.filter(pk=migration.pk).update(status=Migration.Status.ERROR, updated_at=timezone.now())
    # The server stays where it was, as it was; the fault says why it could not move.
    lifecycle.task_fail(
        instance=instance,
        expected_task_states=[TaskState.RESIZE_PREP],
        event=MOVE_EVENT,
        message=f"No valid host was found. {message}",
        request_id=request_id,
        code=400,
    )


# --- resize and cold migration: the hosts' reports ----------------------------------------------------


def _migration_for(report: rpc.ActionResult, *, host_field: str, statuses) -> Migration | None:
    """The migration a report is about, only if the reporting host has that part in it."""
    if report.migration_id is None:
        return None
    return (
        Migration.objects.select_related("instance", "source_host", "dest_host")
        .filter(
            pk=report.migration_id,
            instance__uuid=report.instance_uuid,
            status__in=list(statuses),
            **{f"{host_field}__name": report.host},
        )
        .first()
    )


def _set_status(migration: Migration, status: str, **fields: Any) -> None:
    Migration.objects.filter(pk=migration.pk).update(status=status, updated_at=timezone.now(), **fields)


def _drop_transfer_image(migration: Migration) -> None:
    if migration.transfer_image is None:
        return
    image = Image.objects.filter(pk=migration.transfer_image).exclude(status=Image.Status.DELETED).first()
    if image is not None:
        try:
            image_delete(ctx=None, image=image)
        except ImageError as exc:
            log.warning("Could not delete the transfer image %s: %s", image.id, exc)


def _disk_migrated(report: rpc.ActionResult) -> None:
    """The source uploaded the disk: the destination builds the guest from it."""
    migration = _migration_for(report, host_field="source_host", statuses=[Migration.Status.MIGRATING])
    if migration is None:
        return
    instance = migration.instance
    with transaction.atomic():
        if report.error:
            _set_status(migration, Migration.Status.ERROR)
            lifecycle.report_failed(
                report,
                instance=instance,
                expected_task_states=[TaskState.RESIZE_MIGRATING],
                event="compute_migrate_disk",
                power_state=report.power_state,
            )
            transaction.on_commit(lambda: _drop_transfer_image(migration))
            return
        image = Image.objects.filter(pk=migration.transfer_image).first()
        if image is None or image.status != Image.Status.ACTIVE:
            return  # the upload is not complete: a later report (or the lease) decides
        expires = lifecycle.lease_deadline(TaskState.RESIZE_FINISH)
        if not lifecycle.compare_and_swap(
            instance,
            expected_task_states=[TaskState.RESIZE_MIGRATING],
            expected_host=report.host,
            task_state=TaskState.RESIZE_FINISH,
            power_state=report.power_state,
            vnc_port=None,
        ):
            return
        _set_status(migration, Migration.Status.POST_MIGRATING)
        lifecycle.record_current_event(instance, report.request_id, "compute_migrate_disk", host=report.host)
        request = rpc.FinishMigrationRequest(
            build=build_request(instance, report.request_id, image=image, flavor=_flavor_spec(migration.new_flavor)),
            migration_id=migration.pk,
            power_on=migration.power_on,
        )
        dest = migration.dest_host.name
        transaction.on_commit(lambda: _finish_with_volumes(dest, request, expires))


def _finish_with_volumes(dest: str, request: rpc.FinishMigrationRequest, expires: datetime | None) -> None:
    """Send the build to the destination with the server's volumes attached for it first (on the same
    host they stay as they are: Cinder refuses a second attachment with the same connector)."""
    instance = Instance.objects.select_related("host").get(uuid=request.build.instance_uuid)
    same_host = instance.host is not None and instance.host.name == dest
    devices = [] if same_host else volumes.attachments_move(instance=instance, host=dest)
    if devices:
        request = dataclasses.replace(request, build=dataclasses.replace(request.build, block_devices=devices))
    rpc.finish_migration(dest, request, expires=expires)


def _migration_finished(report: rpc.ActionResult) -> None:
    """The destination built the guest: the server is there now, waiting for the user's decision. A
    destination that could not build it gives the server back to the source."""
    migration = _migration_for(report, host_field="dest_host", statuses=[Migration.Status.POST_MIGRATING])
    if migration is None:
        return
    instance = migration.instance
    source = migration.source_host.name
    with transaction.atomic():
        if report.error:
            if lifecycle.compare_and_swap(
                instance,
                expected_task_states=[TaskState.RESIZE_FINISH],
                expected_host=source,
                task_state=TaskState.RESIZE_REVERTING,
            ):
                _set_status(migration, Migration.Status.REVERTING)
                lifecycle.record_current_event(
                    instance,
                    report.request_id,
                    "compute_finish_migration",
                    result="Error",
                    host=report.host,
                    details=f"{report.error}\nThe server goes back to {source}.",
                )
                transaction.on_commit(lambda: _send_finish_revert(migration, report.request_id))
            return
        if lifecycle.compare_and_swap(
            instance,
            expected_task_states=[TaskState.RESIZE_FINISH],
            expected_host=source,
            task_state=None,
            vm_state=VmState.RESIZED,
            host_id=migration.dest_host_id,
            power_state=report.power_state,
            vnc_host=report.vnc_host or "",
            vnc_port=report.vnc_port,
            **({"addresses": report.addresses} if report.addresses is not None else {}),
            **_instance_flavor_fields(migration.new_flavor),
        ):
            _set_status(migration, Migration.Status.FINISHED, finished_at=timezone.now())
            lifecycle.record_current_event(instance, report.request_id, "compute_finish_migration", host=report.host)


def _send_finish_revert(migration: Migration, request_id: str) -> None:
    """The source brings the old guest back, its volumes attached for it again."""
    instance = migration.instance
    if migration.dest_host_id != migration.source_host_id:
        volumes.attachments_move(instance=instance, host=migration.source_host.name)
    rpc.finish_revert_migration(
        migration.source_host.name,
        rpc.FinishRevertRequest(
            instance_uuid=str(instance.uuid),
            domain_name=instance.domain_name,
            migration_id=migration.pk,
            power_on=migration.power_on,
            request_id=request_id,
        ),
    )


def _migration_ref(migration: Migration, request_id: str) -> rpc.MigrationRef:
    return rpc.MigrationRef(
        instance_uuid=str(migration.instance.uuid),
        domain_name=migration.instance.domain_name,
        migration_id=migration.pk,
        request_id=request_id,
    )


def _end_vm_state(migration: Migration, power_state: int) -> str:
    return VmState.ACTIVE if power_state == rpc.RUNNING or migration.power_on else VmState.STOPPED


# --- confirm and revert -------------------------------------------------------------------------------


def instance_confirm_resize(*, ctx: RequestContext, instance: Instance) -> None:
    """Keep the moved server: the source lets go of what it kept (and of its claim)."""
    migration = active_migration(instance)
    if migration is None or migration.status != Migration.Status.FINISHED:
        raise lifecycle.StateConflict(f"Instance {instance.uuid} has no resize or migration waiting for confirmation.")
    with transaction.atomic():
        host_action(ctx=ctx, instance=instance, action="confirm_resize", send=lambda _h: None)
        _set_status(migration, Migration.Status.CONFIRMING)
        ref = _migration_ref(migration, ctx.request_id)
        source = migration.source_host.name
        transaction.on_commit(lambda: rpc.confirm_migration(source, ref))


def instance_revert_resize(*, ctx: RequestContext, instance: Instance) -> None:
    """Go back: the destination drops the new guest, then the source brings the old one back."""
    migration = active_migration(instance)
    if migration is None or migration.status != Migration.Status.FINISHED:
        raise lifecycle.StateConflict(f"Instance {instance.uuid} has no resize or migration waiting to be reverted.")
    with transaction.atomic():
        ref = _migration_ref(migration, ctx.request_id)
        host_action(
            ctx=ctx, instance=instance, action="revert_resize", send=lambda host: rpc.revert_migration(host, ref)
        )
        _set_status(migration, Migration.Status.REVERTING)


def _migration_confirmed(report: rpc.ActionResult) -> None:
    migration = _migration_for(report, host_field="source_host", statuses=[Migration.Status.CONFIRMING])
    if migration is None:
        return
    instance = migration.instance
    with transaction.atomic():
        fields: dict[str, Any] = {"vm_state": _end_vm_state(migration, instance.power_state)}
        if report.error:
            # The server runs on the destination; only the source's leftovers may remain, and the
            # action log says so.
            lifecycle.record_current_event(
                instance,
                report.request_id,
                "compute_confirm_migration",
                result="Error",
                host=report.host,
                details=report.error,
            )
        if lifecycle.compare_and_swap(
            instance,
            expected_task_states=[TaskState.RESIZE_CONFIRMING],
            expected_host=migration.dest_host.name,
            task_state=None,
            **fields,
        ):
            _set_status(migration, Migration.Status.ERROR if report.error else Migration.Status.CONFIRMED)
            if not report.error:
                lifecycle.record_current_event(
                    instance, report.request_id, "compute_confirm_migration", host=report.host
                )
            transaction.on_commit(lambda: _drop_transfer_image(migration))


def _migration_reverted(report: rpc.ActionResult) -> None:
    """The destination dropped the new guest: the source brings the old one back."""
    migration = _migration_for(report, host_field="dest_host", statuses=[Migration.Status.REVERTING])
    if migration is None:
        return
    instance = migration.instance
    if report.error:
        lifecycle.report_failed(
            report,
            instance=instance,
            expected_task_states=[TaskState.RESIZE_REVERTING],
            event="compute_revert_migration",
            vm_state=VmState.ERROR,
        )
        _set_status(migration, Migration.Status.ERROR)
        return
    lifecycle.record_current_event(instance, report.request_id, "compute_revert_migration", host=report.host)
    _send_finish_revert(migration, report.request_id)


def _revert_finished(report: rpc.ActionResult) -> None:
    migration = _migration_for(report, host_field="source_host", statuses=[Migration.Status.REVERTING])
    if migration is None:
        return
    instance = migration.instance
    on = instance.host.name if instance.host_id else ""
    with transaction.atomic():
        if report.error:
            done = lifecycle.task_fail(
                instance=instance,
                expected_task_states=[TaskState.RESIZE_REVERTING],
                event="compute_finish_revert_migration",
                message=report.error,
                details=report.details,
                request_id=report.request_id,
                vm_state=VmState.ERROR,
                host_id=migration.source_host_id,
                **_instance_flavor_fields(migration.old_flavor),
            )
            if done:
                _set_status(migration, Migration.Status.ERROR)
            return
        if lifecycle.compare_and_swap(
            instance,
            expected_task_states=[TaskState.RESIZE_REVERTING],
            expected_host=on or None,
            task_state=None,
            vm_state=VmState.ACTIVE if report.power_state == rpc.RUNNING else VmState.STOPPED,
            host_id=migration.source_host_id,
            power_state=report.power_state,
            vnc_host=report.vnc_host or "",
            vnc_port=report.vnc_port,
            **({"addresses": report.addresses} if report.addresses is not None else {}),
            **_instance_flavor_fields(migration.old_flavor),
        ):
            _set_status(migration, Migration.Status.REVERTED)
            lifecycle.record_current_event(
                instance,
                report.request_id,
                "compute_finish_revert_migration",
                host=report.host,
            )
            transaction.on_commit(lambda: _drop_transfer_image(migration))


def confirm_expired_resizes(*, limit: int = 100) -> int:
    """Confirm the moves that waited longer than ``CLOUD['RESIZE_CONFIRM_WINDOW']`` (0: never)."""
    window = settings.CLOUD["RESIZE_CONFIRM_WINDOW"]
    if window <= 0:
        return 0
    due = timezone.now() - timedelta(seconds=window)
    confirmed = 0
    rows = Migration.objects.filter(status=Migration.Status.FINISHED, finished_at__lt=due).select_related(
        "instance", "instance__user", "instance__project", "instance__host"
    )
    for migration in rows[:limit]:
        instance = migration.instance
        ctx = RequestContext(user=instance.user, project=instance.project, role="admin")
        try:
            instance_confirm_resize(ctx=ctx, instance=instance)
        except lifecycle.StateConflict as exc:
            log.info("Not confirming migration %s yet: %s", migration.pk, exc)
            continue
        confirmed += 1
    return confirmed


MOVE_TASKS = frozenset(
    {
        TaskState.RESIZE_PREP,
        TaskState.RESIZE_MIGRATING,
        TaskState.RESIZE_MIGRATED,
        TaskState.RESIZE_FINISH,
        TaskState.RESIZE_REVERTING,
    }
)


def move_expired(*, instance: Instance, task_state: str) -> bool:
    """A step of a move whose host never answered (its worker died, say): the server goes back to its
    source, which brings back what it kept if it had begun; a revert that never finished ends in ERROR.
    Returns whether the instance changed."""
    migration = active_migration(instance)
    message = f"Task {task_state} did not finish before its deadline"
    with transaction.atomic():
        if migration is None or task_state in (TaskState.RESIZE_PREP, TaskState.RESIZE_REVERTING):
            failed = lifecycle.task_fail(
                instance=instance,
                expected_task_states=[task_state],
                event="conductor_reap_expired_task",
                message=message,
                **({"vm_state": VmState.ERROR} if task_state == TaskState.RESIZE_REVERTING else {}),
            )
            if failed and migration is not None:
                _set_status(migration, Migration.Status.ERROR)
                transaction.on_commit(lambda: _drop_transfer_image(migration))
            return failed
        if not lifecycle.compare_and_swap(
            instance, expected_task_states=[task_state], task_state=TaskState.RESIZE_REVERTING
        ):
            return False
        _set_status(migration, Migration.Status.REVERTING)
        lifecycle.record_current_event(
            instance,
            "",
            "conductor_reap_expired_task",
            result="Error",
            details=f"{message}; the server goes back to {migration.source_host.name}.",
        )
        if migration.dest_host is not None and migration.dest_host_id != migration.source_host_id:
            ref = _migration_ref(migration, "")
            dest = migration.dest_host.name
            transaction.on_commit(lambda: rpc.revert_migration(dest, ref))
        transaction.on_commit(lambda: _send_finish_revert(migration, ""))
    return True


def moves_cleanup_on_delete(instance: Instance) -> None:
    """A server deleted during a move: both hosts let go of what they hold of it (inside the delete's
    transaction). The host it is on gets the usual terminate; the other side is told here."""
    migration = active_migration(instance)
    if migration is None:
        return
    _set_status(migration, Migration.Status.ERROR)
    on = instance.host_id
    ref = _migration_ref(migration, "")
    source, dest = migration.source_host.name, migration.dest_host.name if migration.dest_host else ""
    if migration.migration_type == Migration.Type.EVACUATION:
        return  # the server's host is its new one; the dead one's copy goes when it returns
    if migration.migration_type == Migration.Type.LIVE_MIGRATION:
        # The terminate on the source ends the transfer; the destination drops what it made ready.
        if dest:
            transaction.on_commit(lambda: rpc.rollback_live_migration(dest, ref), robust=True)
        return
    if dest and migration.dest_host_id != on:
        transaction.on_commit(lambda: rpc.revert_migration(dest, ref), robust=True)
    # The source's kept files go in every case (also on the same host, where they sit beside the guest).
    transaction.on_commit(lambda: rpc.confirm_migration(source, ref), robust=True)
    transaction.on_commit(lambda: _drop_transfer_image(migration), robust=True)


# Reports that end a move's step, by the action the host names (the rest end a row of the state table).
REPORT_HANDLERS: dict[str, Callable[[rpc.ActionResult], None]] = {
    "migrate_disk": _disk_migrated,
    "finish_migration": _migration_finished,
    "confirm_migration": _migration_confirmed,
    "revert_migration": _migration_reverted,
    "finish_revert_migration": _revert_finished,
}
