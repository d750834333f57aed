"""Instance reads, scoped to what the caller may see."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceFault
from portal.states import VmState


def instances_visible(ctx: RequestContext, *, all_tenants: bool = False, include_deleted: bool = False) -> QuerySet:
    """The caller's project's instances; every project's for admins who ask for all tenants."""
    query = Instance.objects.select_related("host", "flavor", "user").prefetch_related(
        Prefetch("faults", queryset=InstanceFault.objects.order_by("-created_at", "-id"), to_attr="fault_list")
    )
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
    return instances_visible(ctx, all_tenants=True).filter(uuid=key).first()


def latest_fault(instance: Instance) -> InstanceFault | None:
    faults = getattr(instance, "fault_list", None)
    if faults is None:
        return instance.faults.order_by("-created_at", "-id").first()
    return faults[0] if faults else None
