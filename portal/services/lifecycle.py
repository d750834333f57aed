"""The one writer of ``vm_state`` and ``task_state``.

Every change is a compare-and-swap on the task state the writer expects, so two writers can never both
win, and every change writes an ``InstanceActionEvent`` in the same transaction. Each task state gets a
deadline (its lease) from ``CLOUD['TASK_LEASES']``; the reaper ends the ones that pass it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, Q
from django.utils import timezone

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.models import (
    BlockDeviceMapping,
    ComputeHost,
    ConsoleToken,
    Instance,
    InstanceAction,
    InstanceActionEvent,
    InstanceFault,
)
from portal.selectors.rows import prepared_cursor, refresh_from, returning
from portal.states import ALLOWED, MOVE_TASK_STATES, VmState, allowed_task_states

from . import instance_ports

_UNSET: Any = object()


def _moves(task_state: str | None) -> bool:
    return task_state in MOVE_TASK_STATES


class StateConflict(Exception):
    """The instance is not in a state that allows what was asked; the API answers 409."""


class InstanceLocked(StateConflict):
    """The instance is locked and the caller is not an admin; the API answers 409."""


def lease_deadline(task_state: str | None, now: datetime | None = None) -> datetime | None:
    if task_state is None:
        return None
    seconds = settings.CLOUD["TASK_LEASES"].get(task_state, 600)
    return (now or timezone.now()) + timedelta(seconds=seconds)


def _task_state_q(expected: Iterable[str | None]) -> Q:
    expected = set(expected)
    q = Q(task_state__in=[s for s in expected if s is not None])
    if None in expected:
        q |= Q(task_state__isnull=True)
    return q


def compare_and_swap(
    instance: Instance,
    *,
    expected_task_states: Iterable[str | None],
    expected_vm_states: Iterable[str] | None = None,
    expected_host: str | None = None,
    task_state: str | None = _UNSET,
    **fields: Any,
) -> bool:
    """Write ``fields`` (and ``task_state`` with its lease) only if the instance is still as expected
    (and, with ``expected_host``, still placed on that host).

    Returns whether the write happened; ``instance`` is refreshed from the database either way (by the
    write itself when it happened).
    """
    now = timezone.now()
    values = dict(fields, updated_at=now)
    if task_state is not _UNSET:
        values["task_state"] = task_state
        values["task_deadline"] = lease_deadline(task_state, now)
        values.setdefault("step_progress", 0)  # a new step starts from nothing
    previous_task_state = instance.task_state
    if connection.vendor == "postgresql":
        written = _swap(instance, values, set(expected_task_states), expected_vm_states, expected_host)
        changed = bool(written)
    else:
        query = Instance.objects.filter(_task_state_q(expected_task_states), pk=instance.pk)
        if expected_vm_states is not None:
            query = query.filter(vm_state__in=list(expected_vm_states))
        if expected_host is not None:
            query = query.filter(host__name=expected_host)
        written, changed = [], query.update(**values) == 1
    if written:
        refresh_from(instance, written[0])
    else:
        instance.refresh_from_db()
    if (
        changed
        and instance.networks == "ports"
        and ("host_id" in fields or _moves(previous_task_state) or _moves(instance.task_state))
    ):
        # Its ports follow the server to its host; a move's hosts both have its networks meanwhile.
        instance_ports.ports_follow(instance)
    if changed and values.get("vm_state") in (VmState.STOPPED, VmState.SUSPENDED, VmState.DELETED, VmState.ERROR):
        # A screen that is gone, or may come back on another port, must not stay reachable.
        ConsoleToken.objects.filter(instance=instance).delete()
    return changed


def _swap(
    instance: Instance,
    values: dict[str, Any],
    expected_task_states: set[str | None],
    expected_vm_states: Iterable[str] | None,
    expected_host: str | None,
) -> list[Instance]:
    """The compare-and-swap as one PostgreSQL statement, its SQL built once per shape (the fields written
    and what is expected): the row as written, or nothing when the instance was not as expected."""
    sql = _swap_sql(
        tuple(values), None in expected_task_states, expected_vm_states is not None, expected_host is not None
    )
    params = [_db_value(name, value) for name, value in values.items()]
    params += [instance.pk, sorted(state for state in expected_task_states if state is not None)]
    if expected_vm_states is not None:
        params.append(list(expected_vm_states))
    if expected_host is not None:
        params.append(expected_host)
    return returning(Instance, connection.alias, sql, params)


@functools.cache
def _swap_sql(names: tuple[str, ...], idle_expected: bool, with_vm_states: bool, with_host: bool) -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(f"{quote(Instance._meta.get_field(name).column)} = %s" for name in names)
    task_states = "task_state = ANY(%s) OR task_state IS NULL" if idle_expected else "task_state = ANY(%s)"
    where = f"id = %s AND ({task_states})"
    if with_vm_states:
        where += " AND vm_state = ANY(%s)"
    if with_host:
        # As ``host__name``: the host row of that name, deleted or not.
        where += f" AND host_id IN (SELECT id FROM {ComputeHost._meta.db_table} WHERE name = %s)"  # noqa: S608
    return f"UPDATE {Instance._meta.db_table} SET {columns} WHERE {where}"  # noqa: S608


def _db_value(name: str, value: Any) -> Any:
    field = Instance._meta.get_field(name)
    if field.is_relation and isinstance(value, Model):
        value = value.pk
    return field.get_db_prep_save(value, connection)


def record_event(
    action: InstanceAction | None,
    event: str,
    *,
    result: str | None = "Success",
    host: str = "",
    details: str = "",
) -> None:
    if action is None:
        return
    now = timezone.now()
    InstanceActionEvent.objects.create(
        action=action,
        event=event,
        finish_time=now if result else None,
        result=result,
        host=host,
        details=details,
    )
    InstanceAction.objects.filter(pk=action.pk).update(updated_at=now)


_EVENT_FIELDS = "action_id, event, start_time, finish_time, result, host, details"


def record_current_event(
    instance: Instance,
    request_id: str,
    event: str,
    *,
    result: str | None = "Success",
    host: str = "",
    details: str = "",
) -> str | None:
    """``record_event(current_action(instance, request_id), …)``; on PostgreSQL in one statement. Returns
    the request id of the action the event went to (None when the instance has no action)."""
    if connection.vendor != "postgresql":
        action = current_action(instance, request_id)
        record_event(action, event, result=result, host=host, details=details)
        return action.request_id if action is not None else None
    now = timezone.now()
    with prepared_cursor(connection) as cursor:
        cursor.execute(
            _RECORD_CURRENT_EVENT,
            [
                now,
                instance.pk,
                request_id or None,
                instance.pk,
                event,
                now,
                now if result else None,
                result,
                host,
                details,
            ],
        )
        row = cursor.fetchone()
    return row[0] if row else None


_ACTIONS = InstanceAction._meta.db_table
_NEWEST_ACTION = f"SELECT id FROM {_ACTIONS} WHERE instance_id = %s{{}} ORDER BY start_time DESC, id DESC LIMIT 1"  # noqa: S608
# The action asked for by its request id, else the instance's newest (as ``current_action``): its time
# touched and the event added to it, in one statement.
_RECORD_CURRENT_EVENT = f"""
    WITH action AS (
        UPDATE {_ACTIONS} SET updated_at = %s
        WHERE id = COALESCE(({_NEWEST_ACTION.format(" AND request_id = %s")}), ({_NEWEST_ACTION.format("")}))
        RETURNING id, request_id
    ), added AS (
        INSERT INTO {InstanceActionEvent._meta.db_table} ({_EVENT_FIELDS})
        SELECT id, %s, %s, %s, %s, %s, %s FROM action
    )
    SELECT request_id FROM action
"""  # noqa: S608


def current_action(instance: Instance, request_id: str = "") -> InstanceAction | None:
    actions = InstanceAction.objects.filter(instance=instance)
    if request_id:
        found = actions.filter(request_id=request_id).first()
        if found is not None:
            return found
    return actions.order_by("-start_time", "-id").first()


def action_begin(
    *, instance: Instance, action: str, ctx: RequestContext, record_as: str | None = None, **fields: Any
) -> InstanceAction:
    """Accept a user's action: check the state table, claim the task state, open the action log.

    ``fields`` are written in the same compare-and-swap (a rebuild's new image, say), so they change
    only if the action is accepted. ``record_as`` names the action in the log when the API's name
    differs from the table's (``createImage`` for ``snapshot``).

    Raises StateConflict when the table forbids it or another task got there first.
    """
    rule = ALLOWED[action]
    if instance.locked and rule.locked and not ctx.is_admin:
        raise InstanceLocked(f"Instance {instance.uuid} is locked")
    verb = record_as or rule.record_as or action
    # No savepoint of its own inside a caller's transaction: nothing is written when the swap fails.
    with transaction.atomic(savepoint=False):
        swapped = compare_and_swap(
            instance,
            expected_task_states=allowed_task_states(action),
            expected_vm_states=rule.vm_states,
            task_state=rule.task_state,
            **fields,
        )
        record = action_open(instance=instance, action=verb, ctx=ctx, event=f"api_{action}") if swapped else None
    if record is None:
        if instance.task_state is not None:
            raise StateConflict(
                f"Cannot '{verb}' instance {instance.uuid} while it is in task_state {instance.task_state}"
            )
        raise StateConflict(f"Cannot '{verb}' instance {instance.uuid} while it is in vm_state {instance.vm_state}")
    return record


def action_record(*, instance: Instance, action: str, ctx: RequestContext) -> InstanceAction:
    """Log an action that needs no host and no task state (lock, unlock, …) as one finished event."""
    return action_open(instance=instance, action=action, ctx=ctx, event=f"api_{action}")


def action_open(
    *, instance: Instance, action: str, ctx: RequestContext, event: str, details: str = ""
) -> InstanceAction:
    """A new action of ``ctx``'s request on ``instance``, with its first event (the API's, finished)."""
    record = InstanceAction.objects.create(
        instance=instance, action=action, request_id=ctx.request_id, user=ctx.user, project=ctx.project
    )
    InstanceActionEvent.objects.create(
        action=record, event=event, finish_time=record.updated_at, result="Success", details=details
    )
    return record


def reset_state(*, instance: Instance, vm_state: str, ctx: RequestContext) -> None:
    """An admin's ``os-resetState``: force ``vm_state`` and idle the instance, whatever it was doing.

    The compare-and-swap is on the task state just read, so a host report arriving meanwhile is not
    silently overwritten: the reset is tried again on what that report left.
    """
    if vm_state not in (VmState.ACTIVE, VmState.ERROR):
        raise ValueError(f"cannot reset to {vm_state!r}")
    for _attempt in range(3):
        with transaction.atomic():
            if instance.vm_state == VmState.DELETED:
                raise StateConflict(f"Instance {instance.uuid} is deleted")
            if compare_and_swap(
                instance, expected_task_states=[instance.task_state], task_state=None, vm_state=vm_state
            ):
                action_record(instance=instance, action="resetState", ctx=ctx)
                return
    raise StateConflict(f"Instance {instance.uuid} changed while its state was being reset; try again")


def task_finish(
    *,
    instance: Instance,
    expected_task_state: str | tuple[str, ...],
    event: str,
    request_id: str = "",
    reported_by: str,
    vm_state: str = _UNSET,
    **fields: Any,
) -> bool:
    """The host ``reported_by`` finished the task the instance was waiting for: idle it and set its new
    state, unless the instance is not (or no longer) placed on that host. ``expected_task_state`` may be
    several: the steps of one task (``states.BUILD_STEPS``)."""
    if vm_state is not _UNSET:
        fields["vm_state"] = vm_state
    expected = (expected_task_state,) if isinstance(expected_task_state, str) else expected_task_state
    with transaction.atomic(savepoint=False):
        changed = compare_and_swap(
            instance,
            expected_task_states=expected,
            expected_host=reported_by,
            task_state=None,
            **fields,
        )
        if changed:
            record_current_event(instance, request_id, event, host=reported_by)
    return changed


def task_fail(
    *,
    instance: Instance,
    expected_task_states: Iterable[str | None],
    event: str,
    message: str,
    details: str = "",
    request_id: str = "",
    host: str = "",
    reported_by: str | None = None,
    code: int = 500,
    vm_state: str = _UNSET,
    **fields: Any,
) -> bool:
    """A task failed: idle the instance (in ERROR when ``vm_state`` says so) and record the fault.

    A failure a host reports (``reported_by``) counts only while the instance is placed on that host."""
    if vm_state is not _UNSET:
        fields["vm_state"] = vm_state
    host = reported_by or host
    with transaction.atomic(savepoint=False):
        changed = compare_and_swap(
            instance,
            expected_task_states=expected_task_states,
            expected_host=reported_by,
            task_state=None,
            **fields,
        )
        if changed:
            InstanceFault.objects.create(
                instance=instance, code=code, message=message[:255], details=details, host=host
            )
            action = current_action(instance, request_id)
            record_event(action, event, result="Error", host=host, details=message)
            if action is not None and not action.message:
                InstanceAction.objects.filter(pk=action.pk).update(message="Error")
    return changed


def report_failed(
    report: rpc.ActionResult,
    *,
    instance: Instance,
    expected_task_states: Iterable[str | None],
    event: str,
    **fields: Any,
) -> bool:
    """``task_fail`` with what a host's failed report says: its error, details, request and host."""
    return task_fail(
        instance=instance,
        expected_task_states=expected_task_states,
        event=event,
        message=report.error,
        details=report.details,
        request_id=report.request_id,
        reported_by=report.host,
        **fields,
    )


def mark_deleted(
    *, instance: Instance, expected_task_states: Iterable[str | None], event: str, reported_by: str | None = None
) -> bool:
    """The instance is gone: keep the row for history, release its claim on the host. When a host reports
    it gone (``reported_by``), only if the instance is placed on that host."""
    now = timezone.now()
    host = reported_by or ""
    with transaction.atomic(savepoint=False):
        changed = compare_and_swap(
            instance,
            expected_task_states=expected_task_states,
            expected_host=reported_by,
            task_state=None,
            vm_state=VmState.DELETED,
            power_state=0,
            terminated_at=now,
            vnc_port=None,
        )
        if changed:
            record_current_event(instance, "", event, host=host)
            if instance.networks == "ports":
                instance_ports.ports_release(instance)
            # ``has_volumes``: known already when the instance was read by ``instance_by_uuid``.
            has_volumes = getattr(instance, "has_volumes", None)
            if has_volumes is None:
                has_volumes = BlockDeviceMapping.objects.filter(instance=instance).exists()
            if has_volumes:
                # Its volumes let go of it (and those that die with it are deleted) once this commits.
                release = rpc.VolumeRelease(instance_uuid=str(instance.uuid))
                transaction.on_commit(lambda: rpc.release_volumes(release), robust=True)
    return changed
