"""The conductor's writes: place instances, claim their hosts atomically, reschedule failed builds, and
record what hosts report back.

A claim never over-commits a host and never breaks a hard server-group policy, however many conductors
place instances at once:

1. The instances of one request (a multi-create batch) are locked, then their server group's row, so
   every placement into one group happens one after another and sees the members placed before it.
2. The scheduler decides on fresh snapshots, consuming each instance of the batch before the next.
3. Every chosen host's row is locked (in name order, so two batches never wait on each other in a
   cycle), the chosen hosts' usage is read again under the locks, and the scheduler's filters check
   the whole batch again on it. A claim on a host takes its row lock, so nothing can change under it.
4. If a chosen host filled up between 2 and 3, everything is rolled back and the decision is taken
   again, up to ``SCHEDULER['CLAIM_RETRIES']`` times. Otherwise every instance moves to ``networking`` on
   its host by compare-and-swap, and its build is sent once the transaction commits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from compute_tasks import rpc
from portal.metrics import instruments
from portal.models import ComputeHost, Image, Instance, Migration, Project, ServerGroup
from portal.selectors.hosts import (
    forget_host_rows,
    group_spec,
    hinted_instances,
    host_state_snapshots,
    instance_request_spec,
    scheduler_config,
)
from portal.selectors.instances import HAS_VOLUMES, instance_by_uuid
from portal.selectors.rows import Columns, CompiledQuery, every_field
from portal.states import BUILD_STEPS, TaskState, VmState
from scheduler import Explanation, recheck_placements, select_hosts_for_batch

from . import lifecycle, volumes
from .host_requests import build_request, instance_ref
from .images import image_delete
from .instances import requested_host_note

log = logging.getLogger(__name__)

SCHEDULE_EVENT = "conductor_schedule_and_build"
BUILD_EVENT = "compute_build_and_run_instance"


class LostRace(Exception):
    """A chosen host filled up between the decision and its lock; the decision is taken again."""


class _Outcome(NamedTuple):
    """What one attempt at placing a request came to: the host chosen for the instance asked about, and
    the decision (``instruments.PLACED``, ``instruments.NO_VALID_HOST``; None: nothing left to decide)."""

    host: str | None
    result: str | None = None


def no_valid_host_reason(explanation: Explanation) -> str:
    """A bounded name for why a request found no host: the filter that removed the last hosts (filters
    stop running once none is left), or ``no_hosts`` when there were none to filter."""
    removing = [step.name for step in explanation.steps if step.removed]
    return removing[-1] if removing and explanation.total_hosts else "no_hosts"


def _pending_batch(instance: Instance) -> list[Instance]:
    """The instances of ``instance``'s request still waiting for a host, locked, in launch order, with
    their image and server group, and ``has_volumes`` (whether each has block device mappings)."""
    if instance.reservation_id:
        rows = _PENDING_QUERY.rows("request", reservation_id=instance.reservation_id)
    else:
        rows = _PENDING_QUERY.rows("instance", pk=instance.pk)
    batch = PENDING_COLUMNS.instances(rows)
    for member, row in zip(batch, rows, strict=True):
        member.has_volumes = row[-1]
    return batch


PENDING_COLUMNS = Columns(Instance, related={"image": every_field(Image), "server_group": every_field(ServerGroup)})


def _pending(shape: str, *, reservation_id: str = "", pk: int = 0) -> QuerySet:
    rows = Instance.objects.for_change()
    rows = rows.annotate(has_volumes=HAS_VOLUMES)
    rows = rows.filter(task_state=TaskState.SCHEDULING, vm_state=VmState.BUILDING, host__isnull=True)
    rows = rows.filter(reservation_id=reservation_id) if shape == "request" else rows.filter(pk=pk)
    return rows.order_by("launch_index", "id").values_list(*PENDING_COLUMNS.paths, "has_volumes")


# Every placement reads its batch so: the SQL is built once per process.
_PENDING_QUERY = CompiledQuery(_pending)


def share_lock_projects(project_ids: list[str]) -> None:
    """Take the projects' rows in KEY SHARE mode before any server group's row.

    A boot into a group locks its project, then the group (for the group's member quota). A claim
    locks the group, and its commit checks the deferred foreign keys of the rows it wrote, which needs
    the project row in KEY SHARE mode: without this, a claim and a boot can wait on each other. Taking
    the share lock first puts both in the same order (project, then group). KEY SHARE does not block
    other claims, only a boot of the same project for the moment a claim commits.
    """
    if connection.vendor != "postgresql" or not project_ids:
        return  # SQLite has one writer at a time and nothing to order
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Project._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",  # noqa: S608
            [project_ids],
        )


def _fault_details(explanation: Explanation) -> str:
    return f"{explanation.render()}\n\n{json.dumps(explanation.as_dict(), indent=2)}"


def _fail_batch(batch: list[Instance], message: str, details: str, request_id: str) -> None:
    for member in batch:
        lifecycle.task_fail(
            instance=member,
            expected_task_states=[TaskState.SCHEDULING],
            event=SCHEDULE_EVENT,
            message=message,
            details=details,
            request_id=request_id,
            code=500,
            vm_state=VmState.ERROR,
        )


def _no_valid_host_message(explanation: Explanation, previous_failure: str) -> str:
    if previous_failure:
        # A reschedule that found nowhere to go: the build failure is what the user needs to read first.
        return f"{previous_failure} No other host could take it: {explanation.render()}"
    return explanation.render()


def _place_batch(instance: Instance, request_id: str, previous_failure: str, user_token: str = "") -> _Outcome:
    """One attempt, inside the caller's transaction: decide, lock, re-check, claim. Returns the host
    chosen for ``instance`` (None if it was not placed) and the decision; raises ``LostRace`` to be run
    again."""
    conf = settings.SCHEDULER
    batch = _pending_batch(instance)
    if not any(member.pk == instance.pk for member in batch):
        return _Outcome(None)  # placed, deleted or reaped meanwhile
    group_ids = sorted({member.server_group_id for member in batch if member.server_group_id})
    if group_ids:
        share_lock_projects(sorted({member.project_id for member in batch}))
    groups = {}
    if group_ids:
        locked_groups = ServerGroup.objects.select_for_update().filter(pk__in=group_ids).order_by("pk")
        groups = {group.pk: group for group in locked_groups}
    # Members of one request share one group; the batch's own members never count against themselves.
    group_row = groups.get(batch[0].server_group_id) if batch[0].server_group_id else None
    group = group_spec(group_row, excluding=[member.pk for member in batch])
    specs = [instance_request_spec(member, group=group, num_instances=len(batch)) for member in batch]
    named = set().union(*(hinted_instances(spec.scheduler_hints) for spec in specs))
    config = scheduler_config()

    # Members of one request name the same host, if any: then the decision is about that host alone.
    # The hosts' rows may be a few seconds old (``recent``); usage is read now. A request that fits
    # nowhere on that picture is decided again on every host's row read now before it fails.
    requested_host = batch[0].requested_host or None
    cached = requested_host is None and conf["HOST_STATE_MAX_AGE"] > 0
    for recent in (True, False) if cached else (False,):
        decision = select_hosts_for_batch(
            host_state_snapshots(instance_uuids=named, host_name=requested_host, recent=recent),
            specs,
            now=time.time(),
            config=config,
            limit=1 + conf["MAX_ALTERNATES"],
        )
        if decision.failed is None:
            break
        forget_host_rows()
    if decision.failed is not None:
        explanation = decision.failed.explanation
        for member in batch:
            previous = previous_failure if member.pk == instance.pk else ""
            message = _no_valid_host_message(explanation, previous)
            _fail_batch([member], message, _fault_details(explanation), request_id)
        log.info("No valid host for request %s: %s", instance.reservation_id, explanation.render())
        reason, failed = no_valid_host_reason(explanation), len(batch)
        transaction.on_commit(lambda: instruments.no_valid_host.labels(reason).inc(failed))
        return _Outcome(None, instruments.NO_VALID_HOST)

    chosen = [selection.hosts[0].host for selection in decision.selections]
    # FOR NO KEY UPDATE: claims on a host (and its deletion, its aggregates) wait for each other, but a
    # transaction writing a row that refers to the host (a port bound there) checks that reference at
    # commit without waiting for a claim, which may itself be waiting for that transaction.
    locked = dict(
        ComputeHost.objects.for_change().filter(name__in=set(chosen)).order_by("name").values_list("name", "pk")
    )
    fresh = host_state_snapshots(instance_uuids=named, host_ids=list(locked.values()))
    vanished = len(locked) < len(set(chosen))
    if vanished or recheck_placements(fresh, specs, chosen, now=time.time(), config=config) is not None:
        # A host went away or filled up, or the decision was taken on an out-of-date picture of it.
        forget_host_rows()
        raise LostRace

    placed_for_instance = None
    for member, selection in zip(batch, decision.selections, strict=True):
        host = selection.hosts[0]
        swapped = lifecycle.compare_and_swap(
            member,
            expected_task_states=[TaskState.SCHEDULING],
            expected_vm_states=[VmState.BUILDING],
            task_state=TaskState.NETWORKING,  # its ports are bound to the host as it is placed there
            host_id=locked[host.host],
            availability_zone=member.availability_zone or host.availability_zone,
            build_attempts=member.build_attempts + 1,
        )
        if not swapped:
            raise LostRace  # cannot happen while the row is locked; start again rather than half-claim
        recorded = lifecycle.record_current_event(
            member, request_id, SCHEDULE_EVENT, host=host.host, details=requested_host_note(member)
        )
        alternates = [alternate.host for alternate in selection.alternates(conf["MAX_ALTERNATES"])]
        build = build_request(member, recorded or request_id, alternates=alternates)
        # Sent once committed, with the server's volumes made and connected for the host first, if any.
        if member.has_volumes:
            transaction.on_commit(
                lambda h=host.host, b=build: volumes.build_with_volumes(host=h, build=b, user_token=user_token)
            )
        else:
            transaction.on_commit(lambda h=host.host, b=build: rpc.build_and_run_instance(h, b))
        if member.pk == instance.pk:
            placed_for_instance = host.host
        log.debug("instance %s claimed %s", member.uuid, host.host)
    return _Outcome(placed_for_instance, instruments.PLACED)


def schedule_and_build(
    *, instance_uuid: str, request_id: str = "", previous_failure: str = "", user_token: str = ""
) -> str | None:
    """Place a scheduling instance (and the rest of its multi-create request), claim, and send the builds.

    Returns the host chosen for ``instance_uuid``. When no host fits, every instance of the request
    ends in ERROR with the scheduler's explanation as its fault (a request is placed whole or not at
    all). Redelivered or stale requests (the instance is no longer scheduling) do nothing.
    ``previous_failure`` is the build failure that caused a reschedule, kept in front of the fault.
    ``user_token`` (the Keystone token of the user who asked, when there is one) makes the new volumes.
    """
    started = time.monotonic()
    instance = instance_by_uuid(instance_uuid)
    if instance is None or instance.task_state != TaskState.SCHEDULING:
        return None
    retries = settings.SCHEDULER["CLAIM_RETRIES"]
    for _attempt in range(retries + 1):
        try:
            with transaction.atomic():
                outcome = _place_batch(instance, request_id, previous_failure, user_token)
        except LostRace:
            instruments.claim_races.inc()
            continue
        if outcome.result is not None:
            _count_decision(outcome.result, started)
        return outcome.host
    with transaction.atomic():
        batch = _pending_batch(instance)
        message = (
            f"No valid host was found. The hosts that fitted were claimed by concurrent requests "
            f"{retries + 1} times in a row."
        )
        _fail_batch(batch, message, message, request_id)
    log.warning("Gave up placing request %s after %d lost races", instance.reservation_id, retries + 1)
    instruments.no_valid_host.labels("lost_races").inc(len(batch))
    _count_decision(instruments.GAVE_UP, started)
    return None


def _count_decision(result: str, started: float) -> None:
    instruments.scheduling_decisions.labels(result).inc()
    instruments.scheduling_duration.labels(result).observe(time.monotonic() - started)


def select_destination(
    instance: Instance,
    *,
    flavor: dict[str, Any] | None = None,
    ignore_hosts: frozenset[str] = frozenset(),
    requested_host: str = "",
) -> tuple[ComputeHost | None, Explanation | None]:
    """Where ``instance`` can go now (with ``flavor`` instead of its own), the chosen host's row locked
    and the choice checked again under the lock; or the scheduler's explanation why nowhere.

    Runs inside the caller's transaction; raises ``LostRace`` when the host filled up meanwhile.
    """
    group = None
    if instance.server_group_id:
        # As a boot does: the project in KEY SHARE mode, then the group, so placements into one group
        # happen one after another.
        share_lock_projects([instance.project_id])
        group = group_spec(
            ServerGroup.objects.select_for_update().filter(pk=instance.server_group_id).first(), excluding=[instance.pk]
        )
    spec = instance_request_spec(instance, group=group)
    overrides: dict[str, Any] = {
        "ignore_hosts": ignore_hosts,
        "ignore_reason": "the server is there now",
        "requested_host": requested_host or None,
        "force_host": False,
    }
    if flavor is not None:
        overrides.update(
            vcpus=flavor["vcpus"],
            memory_mb=flavor["memory_mb"],
            root_gb=flavor["root_gb"],
            ephemeral_gb=flavor["ephemeral_gb"],
            swap_mb=flavor["swap"],
            flavor_extra_specs=dict(flavor["extra_specs"]),
        )
    spec = dataclasses.replace(spec, **overrides)
    named = hinted_instances(spec.scheduler_hints)
    config = scheduler_config()
    decision = select_hosts_for_batch(
        host_state_snapshots(instance_uuids=named, host_name=requested_host or None),
        [spec],
        now=time.time(),
        config=config,
        limit=1,
    )
    if decision.failed is not None:
        return None, decision.failed.explanation
    name = decision.selections[0].hosts[0].host
    host = ComputeHost.objects.for_change().get(name=name)
    fresh = host_state_snapshots(instance_uuids=named, host_ids=[host.pk])
    if recheck_placements(fresh, [spec], [name], now=time.time(), config=config) is not None:
        raise LostRace
    return host, None


def _terminate_on_host(instance: Instance, host: str, request_id: str) -> None:
    ref = instance_ref(instance, request_id)
    transaction.on_commit(lambda: rpc.terminate_instance(host, ref))


def instance_built(*, report: rpc.InstanceBuilt) -> None:
    instance = instance_by_uuid(report.instance_uuid)
    if instance is None:
        return
    # An evacuation's build is reported as a boot's is, while the server's task is still ``rebuilding``.
    expected = TaskState.REBUILDING if instance.task_state == TaskState.REBUILDING else BUILD_STEPS
    with transaction.atomic():
        done = lifecycle.task_finish(
            instance=instance,
            expected_task_state=expected,
            event=BUILD_EVENT,
            request_id=report.request_id,
            reported_by=report.host,
            # An evacuated server may be built shut off (2.95, or because it was stopped before).
            vm_state=VmState.STOPPED
            if expected == TaskState.REBUILDING and report.power_state == rpc.SHUTDOWN
            else VmState.ACTIVE,
            power_state=report.power_state,
            vnc_host=report.vnc_host or "",
            vnc_port=report.vnc_port,
            # A host only knows the addresses of its user-mode NICs; ports' are the control plane's.
            **({} if instance.networks == "ports" else {"addresses": report.addresses}),
            launched_at=timezone.now(),
        )
        if done:
            # A success clears the host's record of failures (the row is only written when there were any).
            ComputeHost.objects.filter(name=report.host, failed_builds__gt=0).update(failed_builds=0)
            if instance.shelved_image:
                _unshelved(instance)
            if expected == TaskState.REBUILDING:
                evacuation_ended(instance, built=True)
            if instance.has_volumes:
                transaction.on_commit(lambda: volumes.boot_volumes_complete(instance_uuid=report.instance_uuid))
        elif instance.vm_state == VmState.DELETED or instance.task_state == TaskState.DELETING:
            # Deleted while it was being built: the host may have finished after it saw the delete.
            _terminate_on_host(instance, report.host, report.request_id)
        elif instance.host_id is None or instance.host.name != report.host:
            # A build the instance no longer waits for on that host (its lease ended it, or it was
            # rescheduled elsewhere, and a redelivered message built it anyway): nothing of it may stay.
            _terminate_on_host(instance, report.host, report.request_id)


def evacuation_ended(instance: Instance, *, built: bool) -> None:
    """The evacuated server's build on its new host was reported (inside the report's transaction)."""
    Migration.objects.filter(
        instance=instance, migration_type=Migration.Type.EVACUATION, status=Migration.Status.PRE_MIGRATING
    ).update(status=Migration.Status.DONE if built else Migration.Status.FAILED, updated_at=timezone.now())


def _unshelved(instance: Instance) -> None:
    """An unshelved server came up from its shelved image, which is no longer needed."""
    image = Image.objects.filter(pk=instance.shelved_image).exclude(status=Image.Status.DELETED).first()
    Instance.objects.filter(pk=instance.pk).update(shelved_image=None, shelved_at=None)
    if image is not None:
        transaction.on_commit(lambda: image_delete(ctx=None, image=image))


def build_failed(*, report: rpc.BuildFailed) -> None:
    """A host could not build an instance: count the failure against the host, release the claim, and
    try the next best host (never one already tried) until ``SCHEDULER['MAX_ATTEMPTS']`` builds were made;
    then, or when the failure would happen anywhere, or when the request named its host, the instance
    ends in ERROR with the host's fault."""
    max_attempts = settings.SCHEDULER["MAX_ATTEMPTS"]
    reschedule = False
    with transaction.atomic():
        instance = Instance.objects.for_change().select_related("host").filter(uuid=report.instance_uuid).first()
        if instance is None or instance.task_state not in (*BUILD_STEPS, TaskState.REBUILDING):
            return  # a duplicate report, or the instance moved on (deleted, reaped)
        if instance.host is not None and instance.host.name != report.host:
            return  # a late report from a host the build already left
        if instance.task_state == TaskState.REBUILDING:
            # An evacuation that failed on its new host: the server is in ERROR there, with the fault.
            evacuation_ended(instance, built=False)
            lifecycle.task_fail(
                instance=instance,
                expected_task_states=[TaskState.REBUILDING],
                event="compute_evacuate_instance",
                message=f"Evacuation of instance {instance.uuid} to {report.host} failed: {report.message}",
                details=report.details,
                request_id=report.request_id,
                host=report.host,
                vm_state=VmState.ERROR,
            )
            return
        ComputeHost.objects.filter(name=report.host).update(failed_builds=F("failed_builds") + 1)
        if instance.vm_state == VmState.SHELVED_OFFLOADED:
            # An unshelve: the server stays shelved, its image kept, for the user to try again.
            lifecycle.task_fail(
                instance=instance,
                expected_task_states=BUILD_STEPS,
                event="compute_unshelve_instance",
                message=f"Unshelving instance {instance.uuid} failed on host {report.host}: {report.message}",
                details=report.details,
                request_id=report.request_id,
                host=report.host,
                host_id=None,
            )
            return
        attempted = list(dict.fromkeys([*(instance.attempted_hosts or []), report.host]))
        message = f"Build of instance {instance.uuid} failed on host {report.host}: {report.message}"
        # A request that named its host has no alternates: it is built there or not at all, as in Nova.
        if report.reschedulable and instance.build_attempts < max_attempts and not instance.requested_host:
            reschedule = lifecycle.compare_and_swap(
                instance,
                expected_task_states=BUILD_STEPS,
                expected_vm_states=[VmState.BUILDING],
                task_state=TaskState.SCHEDULING,
                host_id=None,
                attempted_hosts=attempted,
                vnc_host="",
                vnc_port=None,
            )
            if reschedule:
                lifecycle.record_current_event(
                    instance,
                    report.request_id,
                    BUILD_EVENT,
                    result="Error",
                    host=report.host,
                    details=f"{message}\nRescheduling (build {instance.build_attempts} of at most {max_attempts}).",
                )
        else:
            if report.reschedulable and instance.requested_host:
                message += f" Not rescheduled: the request named host {instance.requested_host}."
            elif report.reschedulable:
                message += f" Gave up after {instance.build_attempts} builds on {', '.join(attempted)}."
            lifecycle.task_fail(
                instance=instance,
                expected_task_states=BUILD_STEPS,
                event=BUILD_EVENT,
                message=message,
                details=report.details,
                request_id=report.request_id,
                host=report.host,
                vm_state=VmState.ERROR,
                host_id=None,  # the claim is released; nothing of it is left on the host
                attempted_hosts=attempted,
            )
    instruments.build_failures.labels(instruments.RESCHEDULED if reschedule else instruments.FAILED).inc()
    if reschedule:
        log.info("Rescheduling instance %s after a failed build on %s", report.instance_uuid, report.host)
        schedule_and_build(instance_uuid=report.instance_uuid, request_id=report.request_id, previous_failure=message)
