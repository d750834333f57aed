"""Live migration and evacuation: moves an admin asks for, begun and ended through the same two doors as
every action (``actions.host_action``, ``actions.action_result``).

A live migration keeps the guest running. Its ``Migration`` goes ``queued`` (the API accepted it) →
``preparing`` (the conductor chose and claimed the destination, which makes ready what the guest needs
there) → ``running`` (the source moves memory and disk, reporting progress) → ``post-migrating`` (the
source let go; the destination confirms the guest runs there) → ``completed``. A failure or an abort at
any step leaves the guest running on its source (``failed``/``cancelled``) and the destination cleans up.
Until it ends, the destination holds the server's flavor (``selectors.hosts.migration_claims``).

An evacuation rebuilds the server of a host that is down on another host, from its image; the old host,
if it comes back, finds the server placed elsewhere and its heartbeat gets the leftover domain removed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import ComputeHost, ConsoleToken, Instance, Migration
from portal.selectors.hosts import host_is_up
from portal.states import TaskState, VmState

from . import lifecycle
from .actions import NotAllowed, host_of
from .host_requests import build_request
from .instances import InvalidRequest
from .moves import begin_migration, locked_migration
from .scheduling import LostRace, select_destination

log = logging.getLogger(__name__)

LIVE_EVENT = "conductor_live_migrate_instance"
EVACUATE_EVENT = "conductor_evacuate_instance"


def _target(host: str, instance: Instance) -> ComputeHost | None:
    if not host:
        return None
    target = ComputeHost.objects.filter(name=host).first()
    if target is None:
        raise LookupError(f"Compute host {host[:64]} could not be found.")
    if target.pk == instance.host_id:
        raise InvalidRequest(f"The target host {host} is the server's current host.")
    return target


# --- live migration -----------------------------------------------------------------------------------


def instance_live_migrate(
    *, ctx: RequestContext, instance: Instance, host: str = "", block_migration: bool | None = None
) -> Migration:
    """os-migrateLive: move the running server to ``host`` (checked by the scheduler) or to the host the
    scheduler chooses. ``block_migration`` None is ``auto``: the disks are copied unless the hosts share
    the instance directory, which they do not by default."""
    if not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os_compute_api:os-migrate-server:migrate_live to be performed.")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; live-migrating it is not supported.")
    _target(host, instance)
    shared = settings.CLOUD["SHARED_INSTANCE_STORAGE"]
    if block_migration is False and not shared:
        raise InvalidRequest(
            f"Instance {instance.uuid} is not on shared storage: a live migration without block migration "
            "needs the hosts to share their instance directory."
        )
    with transaction.atomic():
        return begin_migration(
            ctx=ctx,
            instance=instance,
            action="live_migrate",
            kind=Migration.Type.LIVE_MIGRATION,
            place=rpc.live_migrate_server,
            requested_host=host,
            status=Migration.Status.QUEUED,
            block_migration=block_migration if block_migration is not None else not shared,
        )


def live_migrate_server(*, migration_id: int, request_id: str = "") -> str | None:
    """The conductor chooses and claims the destination, and asks it to get ready."""
    for _attempt in range(settings.SCHEDULER["CLAIM_RETRIES"] + 1):
        try:
            with transaction.atomic():
                return _place_live(migration_id, request_id)
        except LostRace:
            continue
    _live_not_placed(migration_id, request_id, "The hosts that fitted were claimed by concurrent requests.")
    return None


def _place_live(migration_id: int, request_id: str) -> str | None:
    migration = locked_migration(migration_id)
    if migration is None or migration.status != Migration.Status.QUEUED:
        return None
    instance = Instance.objects.for_change().select_related("image").get(pk=migration.instance_id)
    if instance.task_state != TaskState.MIGRATING:
        return None
    chosen, explanation = select_destination(
        instance, ignore_hosts=frozenset({migration.source_host.name}), requested_host=migration.requested_host
    )
    if chosen is None:
        _live_not_placed(migration_id, request_id, explanation.render() if explanation else "")
        return None
    Migration.objects.filter(pk=migration.pk).update(
        dest_host=chosen, status=Migration.Status.PREPARING, updated_at=timezone.now()
    )
    lifecycle.record_current_event(instance, request_id, LIVE_EVENT, host=chosen.name)
    request = rpc.PrepareLiveMigrationRequest(
        build=build_request(instance, request_id), migration_id=migration.pk, block_migration=migration.block_migration
    )
    name = chosen.name
    transaction.on_commit(lambda: rpc.prepare_live_migration(name, request))
    return name


def _live_not_placed(migration_id: int, request_id: str, message: str) -> None:
    with transaction.atomic():
        migration = Migration.objects.filter(pk=migration_id, status=Migration.Status.QUEUED).first()
        if migration is None:
            return
        Migration.objects.filter(pk=migration.pk).update(status=Migration.Status.ERROR, updated_at=timezone.now())
        lifecycle.task_fail(
            instance=Instance.objects.get(pk=migration.instance_id),
            expected_task_states=[TaskState.MIGRATING],
            event=LIVE_EVENT,
            message=f"No valid host was found. {message}".strip(),
            request_id=request_id,
            code=400,
        )


def _live_migration_for(report: rpc.ActionResult, *, host_field: str, statuses) -> Migration | None:
    if report.migration_id is None:
        return None
    return (
        Migration.objects.select_related("instance", "source_host", "dest_host")
        .filter(
            pk=report.migration_id,
            migration_type=Migration.Type.LIVE_MIGRATION,
            instance__uuid=report.instance_uuid,
            status__in=list(statuses),
            **{f"{host_field}__name": report.host},
        )
        .first()
    )


def _end(migration: Migration, status: str) -> None:
    Migration.objects.filter(pk=migration.pk).update(status=status, updated_at=timezone.now())


def _ref(migration: Migration, request_id: str = "") -> rpc.MigrationRef:
    return rpc.MigrationRef(
        instance_uuid=str(migration.instance.uuid),
        domain_name=migration.instance.domain_name,
        migration_id=migration.pk,
        request_id=request_id,
    )


def _live_failed(migration: Migration, report: rpc.ActionResult, event: str) -> None:
    """The guest stays (or is again) on its source: the task ends, the destination cleans up."""
    status = Migration.Status.CANCELLED if migration.abort_requested else Migration.Status.FAILED
    with transaction.atomic():
        _end(migration, status)
        # Believed from either host of the migration (``_live_migration_for`` checked which one speaks);
        # the guest's power state only from its source, which runs it.
        lifecycle.task_fail(
            instance=migration.instance,
            expected_task_states=[TaskState.MIGRATING],
            event=event,
            message=report.error,
            details=report.details,
            request_id=report.request_id,
            host=report.host,
            **({"power_state": report.power_state} if report.host == migration.source_host.name else {}),
        )
        if migration.dest_host is not None:
            ref, dest = _ref(migration, report.request_id), migration.dest_host.name
            transaction.on_commit(lambda: rpc.rollback_live_migration(dest, ref))


def _prepared(report: rpc.ActionResult) -> None:
    migration = _live_migration_for(report, host_field="dest_host", statuses=[Migration.Status.PREPARING])
    if migration is None:
        return
    if report.error:
        _live_failed(migration, report, "compute_prepare_live_migration")
        return
    if migration.abort_requested:
        _live_failed(
            migration, dataclasses.replace(report, error="The migration was aborted."), "compute_prepare_live_migration"
        )
        return
    with transaction.atomic():
        if not Migration.objects.filter(pk=migration.pk, status=Migration.Status.PREPARING).update(
            status=Migration.Status.RUNNING, updated_at=timezone.now()
        ):
            return
        instance = migration.instance
        lifecycle.record_current_event(instance, report.request_id, "compute_prepare_live_migration", host=report.host)
        request = rpc.LiveMigrateRequest(
            instance_uuid=str(instance.uuid),
            domain_name=instance.domain_name,
            migration_id=migration.pk,
            dest_host=report.host,
            dest_uri=report.migrate_uri,
            dest_vnc_listen=report.vnc_host or "",
            block_migration=migration.block_migration,
            request_id=report.request_id,
            dest_instances_dir=report.instances_dir,
        )
        source = migration.source_host.name
        transaction.on_commit(lambda: rpc.live_migrate(source, request))


def _migrated(report: rpc.ActionResult) -> None:
    """The source reports the end of the transfer: the destination confirms the guest runs there."""
    migration = _live_migration_for(report, host_field="source_host", statuses=[Migration.Status.RUNNING])
    if migration is None:
        return
    if report.error:
        _live_failed(migration, report, "compute_live_migration")
        return
    with transaction.atomic():
        if not Migration.objects.filter(pk=migration.pk, status=Migration.Status.RUNNING).update(
            status=Migration.Status.POST_MIGRATING, updated_at=timezone.now()
        ):
            return
        lifecycle.record_current_event(
            migration.instance, report.request_id, "compute_live_migration", host=report.host
        )
        ref, dest = _ref(migration, report.request_id), migration.dest_host.name
        transaction.on_commit(lambda: rpc.post_live_migration(dest, ref))


def _arrived(report: rpc.ActionResult) -> None:
    """The destination runs the guest: the server is there now, and the source's claim is gone."""
    migration = _live_migration_for(report, host_field="dest_host", statuses=[Migration.Status.POST_MIGRATING])
    if migration is None:
        return
    instance = migration.instance
    with transaction.atomic():
        fields: dict[str, Any] = {
            "host_id": migration.dest_host_id,
            "power_state": report.power_state,
            "vnc_host": report.vnc_host or "",
            "vnc_port": report.vnc_port,
        }
        if report.addresses is not None:
            fields["addresses"] = report.addresses
        if report.error:
            # The source let the guest go; whatever the destination says, it is there now.
            lifecycle.record_current_event(
                instance,
                report.request_id,
                "compute_post_live_migration",
                result="Error",
                host=report.host,
                details=report.error,
            )
        if lifecycle.compare_and_swap(
            instance,
            expected_task_states=[TaskState.MIGRATING],
            expected_host=migration.source_host.name,
            task_state=None,
            **fields,
        ):
            _end(migration, Migration.Status.COMPLETED)
            if not report.error:
                lifecycle.record_current_event(
                    instance,
                    report.request_id,
                    "compute_post_live_migration",
                    host=report.host,
                )
            # The screen moved: a console token naming the old address must not be used again.
            ConsoleToken.objects.filter(instance=instance).delete()


def _rolled_back(report: rpc.ActionResult) -> None:
    migration = _live_migration_for(
        report, host_field="dest_host", statuses=[Migration.Status.FAILED, Migration.Status.CANCELLED]
    )
    if migration is None:
        return
    lifecycle.record_current_event(
        migration.instance,
        report.request_id,
        "compute_rollback_live_migration",
        result="Error" if report.error else "Success",
        host=report.host,
        details=report.error,
    )


def _abort_refused(report: rpc.ActionResult) -> None:
    migration = _live_migration_for(report, host_field="source_host", statuses=Migration.ACTIVE_STATUSES)
    if migration is not None:
        log.info("Host %s could not abort migration %s: %s", report.host, migration.pk, report.error)


def migration_progress(*, progress: rpc.MigrationProgress) -> None:
    """How far the transfer is: the source reports while the guest moves, the destination the final
    figures once it arrived (a short migration may end before the source saw any). Figures only grow:
    a late message never takes back what a newer one said. The server's ``step_progress`` (its
    ``progress`` in the API) follows while it is still migrating."""
    rows = Migration.objects.filter(
        Q(
            source_host__name=progress.host,
            # The source's last figures may come after its report of the end.
            status__in=[Migration.Status.RUNNING, Migration.Status.POST_MIGRATING, Migration.Status.COMPLETED],
        )
        | Q(
            dest_host__name=progress.host,
            status__in=[Migration.Status.POST_MIGRATING, Migration.Status.COMPLETED],
        ),
        Q(memory_processed_bytes__isnull=True)
        | Q(
            memory_processed_bytes__lte=progress.memory_processed_bytes,
            disk_processed_bytes__lte=progress.disk_processed_bytes,
        ),
        pk=progress.migration_id,
        migration_type=Migration.Type.LIVE_MIGRATION,
    )
    updated = rows.update(
        memory_total_bytes=progress.memory_total_bytes,
        memory_processed_bytes=progress.memory_processed_bytes,
        memory_remaining_bytes=progress.memory_remaining_bytes,
        disk_total_bytes=progress.disk_total_bytes,
        disk_processed_bytes=progress.disk_processed_bytes,
        disk_remaining_bytes=progress.disk_remaining_bytes,
        updated_at=timezone.now(),
    )
    migration = rows.first() if updated else None
    if migration is not None and migration.transfer_percent is not None:
        Instance.objects.filter(
            pk=migration.instance_id, task_state=TaskState.MIGRATING, host__name=progress.host
        ).update(step_progress=migration.transfer_percent, updated_at=timezone.now())


def live_migration_for(instance: Instance, migration_id: int | str) -> Migration | None:
    """The instance's live migration in progress with this id (what ``/servers/{id}/migrations`` shows)."""
    try:
        pk = int(migration_id)
    except (TypeError, ValueError):
        return None
    return (
        Migration.objects.select_related("instance", "source_host", "dest_host")
        .filter(
            pk=pk,
            instance=instance,
            migration_type=Migration.Type.LIVE_MIGRATION,
            status__in=[Migration.Status.QUEUED, Migration.Status.PREPARING, Migration.Status.RUNNING],
        )
        .first()
    )


def force_complete(*, ctx: RequestContext, instance: Instance, migration: Migration) -> None:
    """Make a running live migration finish (post-copy, or a larger allowed downtime)."""
    if not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os_compute_api:servers:migrations:force_complete to be performed.")
    if migration.status != Migration.Status.RUNNING:
        raise lifecycle.StateConflict(
            f"Migration {migration.pk} state of instance {instance.uuid} is {migration.status}. "
            "Cannot force_complete while the migration is in this state."
        )
    lifecycle.action_record(instance=instance, action="live_migration_force_complete", ctx=ctx)
    ref, source = _ref(migration, ctx.request_id), migration.source_host.name
    transaction.on_commit(lambda: rpc.force_complete_live_migration(source, ref))


def abort(*, ctx: RequestContext, instance: Instance, migration: Migration) -> None:
    """Cancel a live migration: the guest stays on its source. A queued or preparing one ends when the
    destination answers; a running one when the source's job is aborted."""
    if not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os_compute_api:servers:migrations:delete to be performed.")
    with transaction.atomic():
        Migration.objects.filter(pk=migration.pk).update(abort_requested=True, updated_at=timezone.now())
        lifecycle.action_record(instance=instance, action="live_migration_abort", ctx=ctx)
        if migration.status == Migration.Status.QUEUED:
            migration.abort_requested = True
            if Migration.objects.filter(pk=migration.pk, status=Migration.Status.QUEUED).update(
                status=Migration.Status.CANCELLED
            ):
                lifecycle.task_fail(
                    instance=instance,
                    expected_task_states=[TaskState.MIGRATING],
                    event="api_live_migration_abort",
                    message="The live migration was aborted.",
                    request_id=ctx.request_id,
                    code=400,
                )
            return
        if migration.status == Migration.Status.RUNNING:
            ref, source = _ref(migration, ctx.request_id), migration.source_host.name
            transaction.on_commit(lambda: rpc.abort_live_migration(source, ref))


# --- evacuate -----------------------------------------------------------------------------------------


def instance_evacuate(*, ctx: RequestContext, instance: Instance, host: str = "", stopped: bool = False) -> None:
    """Rebuild the server of a host that is down on another host (``host``, or where the scheduler puts
    it), from its image.

    The server comes back running if it was running, shut off if it was stopped, and shut off in any case
    with ``stopped`` (compute API 2.95)."""
    if not ctx.is_admin:
        raise NotAllowed("Policy doesn't allow os_compute_api:os-evacuate to be performed.")
    if instance.image_ref is None:
        raise InvalidRequest(f"Instance {instance.uuid} boots from a volume; evacuating it is not supported.")
    source = host_of(instance, "evacuate")
    source_row = ComputeHost.objects.get(name=source)
    if host_is_up(source_row):
        raise lifecycle.StateConflict(f"Compute service of {source} is still in use.")
    _target(host, instance)
    with transaction.atomic():
        begin_migration(
            ctx=ctx,
            instance=instance,
            action="evacuate",
            kind=Migration.Type.EVACUATION,
            place=rpc.evacuate_server,
            requested_host=host,
            status=Migration.Status.ACCEPTED,
            power_on=instance.vm_state == VmState.ACTIVE and not stopped,
        )


def evacuate_server(*, migration_id: int, request_id: str = "") -> str | None:
    """The conductor places the evacuated server and sends its build to the chosen host."""
    for _attempt in range(settings.SCHEDULER["CLAIM_RETRIES"] + 1):
        try:
            with transaction.atomic():
                return _place_evacuation(migration_id, request_id)
        except LostRace:
            continue
    return None


def _place_evacuation(migration_id: int, request_id: str) -> str | None:
    migration = locked_migration(migration_id)
    if migration is None or migration.status != Migration.Status.ACCEPTED:
        return None
    instance = Instance.objects.for_change().select_related("image").get(pk=migration.instance_id)
    if instance.task_state != TaskState.REBUILDING or instance.host_id != migration.source_host_id:
        return None
    chosen, explanation = select_destination(
        instance, ignore_hosts=frozenset({migration.source_host.name}), requested_host=migration.requested_host
    )
    if chosen is None:
        Migration.objects.filter(pk=migration.pk).update(status=Migration.Status.ERROR, updated_at=timezone.now())
        lifecycle.task_fail(
            instance=instance,
            expected_task_states=[TaskState.REBUILDING],
            event=EVACUATE_EVENT,
            message=f"No valid host was found. {explanation.render() if explanation else ''}".strip(),
            request_id=request_id,
            code=400,
        )
        return None
    # The claim moves to the destination now: the dead source holds nothing of the server any more.
    if not lifecycle.compare_and_swap(
        instance,
        expected_task_states=[TaskState.REBUILDING],
        host_id=chosen.pk,
        vnc_host="",
        vnc_port=None,
    ):
        raise LostRace
    Migration.objects.filter(pk=migration.pk).update(
        dest_host=chosen, status=Migration.Status.PRE_MIGRATING, updated_at=timezone.now()
    )
    lifecycle.record_current_event(instance, request_id, EVACUATE_EVENT, host=chosen.name)
    build = dataclasses.replace(build_request(instance, request_id), power_on=migration.power_on)
    name = chosen.name
    transaction.on_commit(lambda: rpc.build_and_run_instance(name, build))
    return name


def moves_expired(*, instance: Instance, task_state: str) -> None:
    """The reaper ended a live migration's or an evacuation's task: its migration ends too (the destination
    of a live migration cleans up; the guest stays where the host it is on runs it)."""
    kinds = {TaskState.MIGRATING: Migration.Type.LIVE_MIGRATION, TaskState.REBUILDING: Migration.Type.EVACUATION}
    if task_state not in kinds:
        return
    migration = (
        Migration.objects.select_related("instance", "dest_host")
        .filter(instance=instance, migration_type=kinds[task_state], status__in=Migration.ACTIVE_STATUSES)
        .first()
    )
    if migration is None:
        return
    _end(migration, Migration.Status.ERROR)
    if migration.migration_type == Migration.Type.LIVE_MIGRATION and migration.dest_host is not None:
        ref, dest = _ref(migration), migration.dest_host.name
        transaction.on_commit(lambda: rpc.rollback_live_migration(dest, ref))


# Reports of the live migration's steps, by the action the host names.
REPORT_HANDLERS: dict[str, Callable[[rpc.ActionResult], None]] = {
    "prepare_live_migration": _prepared,
    "live_migrate": _migrated,
    "post_live_migration": _arrived,
    "rollback_live_migration": _rolled_back,
    "abort_live_migration": _abort_refused,
}
