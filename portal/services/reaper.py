"""Ends every task whose lease ran out, so no instance stays in BUILD or deleting forever; and sends
again the scheduling requests that seem lost, since the database row, not the message, is the intention.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute_tasks import rpc
from portal.metrics import instruments
from portal.models import ConsoleToken, Instance, InstanceAction, InstanceActionEvent, Migration
from portal.states import BUILD_STEPS, TaskState, VmState

from . import actions, lifecycle, live_migrations, moves
from .host_requests import instance_ref

log = logging.getLogger(__name__)

_BUILDING = {TaskState.SCHEDULING, *BUILD_STEPS}


def reap_expired_tasks(*, limit: int = 500) -> int:
    """End tasks past their deadline; returns how many were ended."""
    now = timezone.now()
    expired = Instance.objects.filter(task_deadline__lt=now, task_state__isnull=False).select_related("host")
    ended = 0
    for instance in expired[:limit]:
        task = instance.task_state
        message = f"Task {task} did not finish before its deadline"
        if task in _BUILDING:
            host = instance.host.name if instance.host else None
            with transaction.atomic():
                done = lifecycle.task_fail(
                    instance=instance,
                    expected_task_states=[task],
                    event="conductor_reap_expired_task",
                    message=message,
                    vm_state=VmState.ERROR,
                    host_id=None,
                )
                if done and host:
                    # The host may still finish the build later: make sure nothing of it stays.
                    ref = instance_ref(instance)
                    transaction.on_commit(lambda h=host, r=ref: rpc.terminate_instance(h, r))
        elif task in moves.MOVE_TASKS:
            done = moves.move_expired(instance=instance, task_state=task)
        elif task == TaskState.DELETING:
            # The host never confirmed: delete locally. If the domain is still there when the host
            # comes back, its heartbeat reports it as an orphan.
            done = lifecycle.mark_deleted(
                instance=instance, expected_task_states=[task], event="conductor_reap_expired_delete"
            )
        else:
            done = lifecycle.task_fail(
                instance=instance,
                expected_task_states=[task],
                event="conductor_reap_expired_task",
                message=message,
                **actions.expired_task_fields(task),
            )
            if done:
                live_migrations.moves_expired(instance=instance, task_state=task)
                actions.expired_task_cleanup(instance=instance, task_state=task)
        if done:
            ended += 1
            instruments.reaper_actions.labels("end_expired_task").inc()
            instruments.reaper_expired_tasks.labels(task).inc()
            log.warning("Ended expired task %s of instance %s", task, instance.uuid)
    return ended


RESEND_EVENT = "conductor_resend_schedule"


def resend_lost_schedules(*, limit: int = 500) -> int:
    """Send ``conductor.schedule_and_build`` again for requests still waiting for a host well after they
    were sent (the message was lost: the broker restarted, or a conductor died holding it).

    A request is sent again when ``CLOUD['SCHEDULING_RESEND_AFTER']`` seconds passed since it was last
    sent, at most ``CLOUD['SCHEDULING_MAX_RESENDS']`` times; its lease still ends it in ERROR after that.
    Each resend is an event of the request's ``create`` action, so the count survives any restart. A
    request that was only slow, not lost, is harmless to send twice: placing is a compare-and-swap from
    ``scheduling``, so the second copy finds nothing to do.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.CLOUD["SCHEDULING_RESEND_AFTER"])
    max_resends = settings.CLOUD["SCHEDULING_MAX_RESENDS"]
    waiting = (
        Instance.objects.filter(
            task_state=TaskState.SCHEDULING,
            vm_state=VmState.BUILDING,
            host__isnull=True,
            task_deadline__gt=now,
            updated_at__lt=cutoff,
        )
        .order_by("created_at", "id")
        .values_list("pk", "uuid", "reservation_id")[:limit]
    )
    sent = 0
    seen_reservations: set[str] = set()
    for pk, uuid, reservation_id in waiting:
        # One message places a whole multiple-create request.
        if reservation_id and reservation_id in seen_reservations:
            continue
        seen_reservations.add(reservation_id)
        action = InstanceAction.objects.filter(instance_id=pk, action="create").order_by("start_time", "id").first()
        if action is None:
            continue
        events = InstanceActionEvent.objects.filter(action=action)
        resends = events.filter(event=RESEND_EVENT).count()
        last_sent = events.filter(event__in=["api_create", RESEND_EVENT]).order_by("-start_time").first()
        if resends >= max_resends or (last_sent is not None and last_sent.start_time >= cutoff):
            continue
        with transaction.atomic():
            lifecycle.record_event(action, RESEND_EVENT, details=f"resend {resends + 1} of at most {max_resends}")
            request = rpc.ScheduleRequest(instance_uuid=str(uuid), request_id=action.request_id)
            transaction.on_commit(lambda r=request: rpc.schedule_and_build(r), robust=True)
        sent += 1
        instruments.reaper_actions.labels("resend_schedule").inc()
        log.warning("Scheduling of instance %s seems lost; sent again (%d/%d)", uuid, resends + 1, max_resends)
    return sent


def purge_console_tokens() -> int:
    deleted, _ = ConsoleToken.objects.filter(expires_at__lt=timezone.now()).delete()
    if deleted:
        instruments.reaper_actions.labels("purge_console_tokens").inc(deleted)
    return deleted


# The conductor's message each kind of move waits for while it has no destination yet.
_PLACING = {
    (Migration.Type.RESIZE, Migration.Status.PRE_MIGRATING): "move_server",
    (Migration.Type.MIGRATION, Migration.Status.PRE_MIGRATING): "move_server",
    (Migration.Type.LIVE_MIGRATION, Migration.Status.QUEUED): "live_migrate_server",
    (Migration.Type.EVACUATION, Migration.Status.ACCEPTED): "evacuate_server",
}


def resend_lost_moves(*, limit: int = 200) -> int:
    """Send a move's placing message again when the move still waits for its destination well after it
    was sent (a conductor died holding it, or the broker lost it), as for boots. The migration row is the
    intention; a copy that arrives after all finds the move placed and does nothing. At most one resend
    every ``CLOUD['SCHEDULING_RESEND_AFTER']`` seconds (each bumps the row), until the move's lease ends it.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.CLOUD["SCHEDULING_RESEND_AFTER"])
    waiting = Migration.objects.filter(
        status__in=[Migration.Status.PRE_MIGRATING, Migration.Status.QUEUED, Migration.Status.ACCEPTED],
        dest_host__isnull=True,
        updated_at__lt=cutoff,
        instance__task_state__isnull=False,
    ).order_by("created_at", "id")[:limit]
    sent = 0
    for migration in waiting:
        sender = _PLACING.get((migration.migration_type, migration.status))
        if sender is None:
            continue
        with transaction.atomic():
            if not Migration.objects.filter(pk=migration.pk, updated_at=migration.updated_at).update(
                updated_at=timezone.now()
            ):
                continue  # another reaper, or the conductor, got to it
            request = rpc.MoveRequest(migration_id=migration.pk)
            transaction.on_commit(lambda s=sender, r=request: getattr(rpc, s)(r), robust=True)
        sent += 1
        instruments.reaper_actions.labels("resend_move").inc()
        log.warning("The %s %s seems lost while waiting for a host; sent again", migration.migration_type, migration.pk)
    return sent
