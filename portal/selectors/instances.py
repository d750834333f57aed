"""Instance reads, scoped to what the caller may see."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from django.db.models import QuerySet

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceFault
from portal.states import VmState


def instances_visible(ctx: RequestContext, *, all_tenants: bool = False, include_deleted: bool = False) -> QuerySet:
    """The caller's project's instances; every project's for admins who ask for all tenants."""
    query = Instance.objects.select_related("host", "flavor", "user")
    if not (all_tenants and ctx.is_admin):
        query = query.filter(project=ctx.project)
    if not include_deleted:
        query = query.exclude(vm_state=VmState.DELETED)
    return query


def instance_get(ctx: RequestContext, instance_id: str) -> Instance | None:
    """One instance by uuid: the caller's project's, or any project's for admins; None when hidden."""
    try:
        key = uuid.UUID(str(instance_id))
    except ValueError:
        return None
    # uuid is unique: no ORDER BY to build and run, as ``first()`` would add.
    instance = next(iter(instances_visible(ctx, all_tenants=True).filter(uuid=key)[:1]), None)
    if instance is not None:
        with_latest_faults([instance])
    return instance


# The states whose views show the instance's latest fault (the compute API's ERROR and DELETED).
FAULT_VM_STATES = frozenset({VmState.ERROR, VmState.DELETED})


def with_latest_faults(instances: Iterable[Instance]) -> list[Instance]:
    """``instances``, each with its faults, newest first, as ``fault_list`` where a view shows them
    (``FAULT_VM_STATES``) and none elsewhere: one query for them all, or none when none is in such a
    state (the servers a client polls are nearly always ACTIVE or building)."""
    instances = list(instances)
    shown = [instance for instance in instances if instance.vm_state in FAULT_VM_STATES]
    by_instance: dict[int, list[InstanceFault]] = defaultdict(list)
    if shown:
        faults = InstanceFault.objects.filter(instance__in=shown).order_by("-created_at", "-id")
        for fault in faults:
            by_instance[fault.instance_id].append(fault)
    for instance in instances:
        instance.fault_list = by_instance.get(instance.pk, [])
    return instances


def latest_fault(instance: Instance) -> InstanceFault | None:
    faults = getattr(instance, "fault_list", None)
    if faults is None:
        return instance.faults.order_by("-created_at", "-id").first()
    return faults[0] if faults else None
