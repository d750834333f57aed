"""Server group reads: the caller's project's groups (every project's for admins who ask), with the
uuids of their members that are not deleted, in one extra query."""

from __future__ import annotations

import uuid

from django.db.models import Prefetch, QuerySet

from portal.auth.context import RequestContext
from portal.models import Instance, ServerGroup
from portal.states import VmState


def _with_members(query: QuerySet) -> QuerySet:
    live = Instance.objects.exclude(vm_state=VmState.DELETED).only("uuid", "server_group_id").order_by("created_at")
    return query.select_related("user").prefetch_related(Prefetch("members", queryset=live, to_attr="live_members"))


def server_groups_visible(ctx: RequestContext, *, all_projects: bool = False) -> QuerySet:
    query = ServerGroup.objects.all()
    if not (all_projects and ctx.is_admin):
        query = query.filter(project=ctx.project)
    return _with_members(query.order_by("created_at", "id"))


def server_group_get(ctx: RequestContext, group_id: str) -> ServerGroup | None:
    """A group by uuid: the caller's project's, or any project's for admins; None when hidden."""
    try:
        key = uuid.UUID(str(group_id))
    except ValueError:
        return None
    query = ServerGroup.objects.filter(uuid=key)
    if not ctx.is_admin:
        query = query.filter(project=ctx.project)
    return _with_members(query).first()


def server_group_exists(group_id: str) -> bool:
    """Whether a group of any project has this uuid (another project's is 403 in the compute API)."""
    try:
        key = uuid.UUID(str(group_id))
    except ValueError:
        return False
    return ServerGroup.objects.filter(uuid=key).exists()


def server_group_member_ids(group: ServerGroup) -> list[str]:
    members = getattr(group, "live_members", None)
    if members is None:
        members = group.members.exclude(vm_state=VmState.DELETED).order_by("created_at")
    return [str(instance.uuid) for instance in members]
