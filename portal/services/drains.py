"""Emptying a host in one call: it is disabled, and every server on it is moved away by the scheduler
(running and paused ones live, stopped ones cold and confirmed), a few at a time.

A drain is rows, not a loop in a process: ``advance`` looks at what each item's move became and starts
the next ones, and runs again and again (after the request, and from beat). A server's item goes from
``pending`` to ``moving`` in the same transaction that starts its move, so a conductor killed at any
moment neither loses a drain nor moves a server twice: the next ``advance`` picks up from the rows.
"""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.auth.context import RequestContext
from portal.models import ComputeHost, HostDrain, HostDrainItem, Instance, InstanceFault, Migration
from portal.states import VmState

from . import lifecycle, live_migrations, moves
from .actions import NotAllowed
from .instances import InvalidRequest

log = logging.getLogger(__name__)

Item = HostDrainItem.Status


class DrainConflict(Exception):
    """The host is being drained already (the API answers 409)."""


def drain_start(*, user, host: ComputeHost) -> HostDrain:
    """Disable ``host`` and plan a move for each of its servers; the moves start once this commits.
    Callers let only admins (the API's and the admin site's) ask; the moves run as admin for ``user``."""
    try:
        with transaction.atomic():
            drain = HostDrain.objects.create(host=host, user=user)
            ComputeHost.objects.filter(pk=host.pk).update(enabled=False, disabled_reason=f"drained ({drain.uuid})")
            servers = Instance.objects.filter(host=host).exclude(vm_state=VmState.DELETED).order_by("id")
            HostDrainItem.objects.bulk_create(HostDrainItem(drain=drain, instance=server) for server in servers)
            transaction.on_commit(lambda: advance(drain.pk))
    except IntegrityError:
        raise DrainConflict(f"Host {host.name} is being drained already.") from None
    log.info("Draining host %s (%s)", host.name, drain.uuid)
    return drain


def drain_cancel(*, drain: HostDrain) -> None:
    """Start no more moves; those under way finish. The host stays disabled."""
    with transaction.atomic():
        if not HostDrain.objects.filter(pk=drain.pk, status=HostDrain.Status.RUNNING).update(
            status=HostDrain.Status.CANCELLED, updated_at=timezone.now()
        ):
            raise DrainConflict(f"Drain {drain.uuid} is {drain.status}.")
        HostDrainItem.objects.filter(drain=drain, status=Item.PENDING).update(
            status=Item.SKIPPED, reason="The drain was cancelled."
        )


def advance_drains() -> int:
    """Advance every running drain; returns how many there were."""
    drains = list(HostDrain.objects.filter(status=HostDrain.Status.RUNNING).values_list("pk", flat=True))
    for pk in drains:
        advance(pk)
    return len(drains)


def advance(drain_id: int) -> None:
    with transaction.atomic():
        drain = (
            HostDrain.objects.select_for_update(of=("self",)).select_related("host", "user").filter(pk=drain_id).first()
        )
        if drain is None or drain.status != HostDrain.Status.RUNNING:
            return
        items = list(
            HostDrainItem.objects.select_for_update(of=("self",))
            .select_related("instance", "migration")
            .filter(drain=drain, status__in=[Item.PENDING, Item.MOVING])
            .order_by("id")
        )
        moving = 0
        for item in items:
            if item.status == Item.MOVING:
                moving += _follow(drain, item)
        for item in items:
            if item.status == Item.PENDING:
                moving += _start(drain, item, may_start=moving < settings.CLOUD["DRAIN_PARALLEL"])
        if not HostDrainItem.objects.filter(drain=drain, status__in=[Item.PENDING, Item.MOVING]).exists():
            HostDrain.objects.filter(pk=drain.pk).update(status=HostDrain.Status.DONE, updated_at=timezone.now())
            log.info("Drain of host %s is done", drain.host.name)


def _end(item: HostDrainItem, status: str, reason: str = "") -> None:
    item.status, item.reason = status, reason
    HostDrainItem.objects.filter(pk=item.pk).update(status=status, reason=reason, updated_at=timezone.now())


def _ctx(drain: HostDrain, instance: Instance) -> RequestContext:
    return RequestContext(user=drain.user or instance.user, project=instance.project, role="admin")


def _fault(instance: Instance, default: str) -> str:
    fault = InstanceFault.objects.filter(instance=instance).order_by("-id").first()
    return fault.message if fault is not None else default


def _follow(drain: HostDrain, item: HostDrainItem) -> int:
    """What the item's move became; returns 1 while it is still under way."""
    migration = Migration.objects.select_related("instance").get(pk=item.migration_id)
    instance = migration.instance
    if instance.vm_state == VmState.DELETED:
        _end(item, Item.SKIPPED, "The server was deleted.")
        return 0
    status = migration.status
    if status in (Migration.Status.COMPLETED, Migration.Status.CONFIRMED):
        _end(item, Item.MOVED)
        return 0
    if status == Migration.Status.FINISHED and instance.task_state is None:
        # A cold migration waits in VERIFY_RESIZE: the drain confirms it.
        with contextlib.suppress(lifecycle.StateConflict):
            moves.instance_confirm_resize(ctx=_ctx(drain, instance), instance=instance)
        return 1
    if status in Migration.ACTIVE_STATUSES:
        return 1
    _end(item, Item.FAILED, _fault(instance, f"Its {migration.migration_type} ended {status}."))
    return 0


def _start(drain: HostDrain, item: HostDrainItem, *, may_start: bool) -> int:
    """Start the item's move when ``may_start``; returns 1 when one started. A server that cannot move
    is named with the reason at once, whatever the number of moves under way."""
    instance = Instance.objects.select_related("host", "image").get(pk=item.instance_id)
    if instance.vm_state == VmState.DELETED or instance.host_id != drain.host_id:
        _end(item, Item.SKIPPED, "The server is no longer on the host.")
        return 0
    if instance.vm_state not in _MOVABLE:
        default = f"A server in {instance.vm_state} cannot move."
        _end(item, Item.FAILED, _CANNOT_MOVE.get(instance.vm_state, default))
        return 0
    if instance.task_state is not None or not may_start:
        return 0  # busy, or enough moves under way: tried again on the next pass
    ctx = _ctx(drain, instance)
    try:
        with transaction.atomic():
            if instance.vm_state == VmState.STOPPED:
                migration = moves.instance_migrate(ctx=ctx, instance=instance)
            else:
                migration = live_migrations.instance_live_migrate(ctx=ctx, instance=instance)
            item.status, item.migration = Item.MOVING, migration
            HostDrainItem.objects.filter(pk=item.pk).update(
                status=Item.MOVING, migration=migration, updated_at=timezone.now()
            )
    except (InvalidRequest, lifecycle.StateConflict, NotAllowed, LookupError) as exc:
        _end(item, Item.FAILED, str(exc))
        return 0
    return 1


_MOVABLE = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.STOPPED})
_CANNOT_MOVE = {
    VmState.SUSPENDED: "A suspended server cannot move: resume or stop it first.",
    VmState.RESIZED: "The server waits for its resize to be confirmed or reverted.",
    VmState.RESCUED: "A rescued server cannot move: unrescue it first.",
    VmState.SHELVED: "A shelved server cannot move: offload it (shelveOffload) to free the host.",
    VmState.ERROR: "A server in ERROR cannot move: reset or rebuild it first.",
    VmState.BUILDING: "The server is still being built.",
}
