"""What security groups and rules a caller may see: its project's (admins: all). Others are not there."""

from __future__ import annotations

from django.db.models import QuerySet

from portal.ids import as_uuid
from portal.models import Port, SecurityGroup, SecurityGroupRule

from .rows import CompiledQuery, where_in


def groups_visible(ctx) -> QuerySet[SecurityGroup]:
    rows = SecurityGroup.objects.prefetch_related("rules")
    return rows if ctx.is_admin else rows.filter(project=ctx.project)


def rules_visible(ctx) -> QuerySet[SecurityGroupRule]:
    rows = SecurityGroupRule.objects.select_related("remote_group")
    return rows if ctx.is_admin else rows.filter(project=ctx.project)


def group_get(ctx, group_id) -> SecurityGroup | None:
    pk = as_uuid(group_id)
    return None if pk is None else groups_visible(ctx).filter(pk=pk).first()


def rule_get(ctx, rule_id) -> SecurityGroupRule | None:
    pk = as_uuid(rule_id)
    return None if pk is None else rules_visible(ctx).filter(pk=pk).first()


def group_named(ctx, name_or_id) -> SecurityGroup | None:
    """A group of the caller's project by id or name (a name several groups have: None)."""
    found = group_get(ctx, name_or_id)
    if found is not None:
        return found
    named = list(SecurityGroup.objects.filter(project=ctx.project, name=name_or_id)[:2])
    return named[0] if len(named) == 1 else None


def server_group_names(instance) -> list[str]:
    """The names of the groups a server's ports are in, once each, in name order. (A server on QEMU's
    user-mode network has no ports: the compute API shows it in ``default``, as before the controller.)"""
    names = getattr(instance, "security_group_names", None)
    if names is not None:
        return names
    return sorted(set(SecurityGroup.objects.filter(ports__device_id=str(instance.uuid)).values_list("name", flat=True)))


def _page_group_names(_shape, *, devices: list[str]) -> QuerySet:
    return where_in(Port.objects.all(), "device_id", devices).values_list("device_id", "security_groups__name")


_PAGE_GROUP_NAMES_QUERY = CompiledQuery(_page_group_names)


def attach_server_group_names(instances) -> None:
    """One query for the groups of every listed server's ports (``server_group_names`` then reads them);
    on PostgreSQL its SQL is built once per process."""
    by_device: dict[str, set[str]] = {str(i.uuid): set() for i in instances}
    if by_device:
        for device_id, name in _PAGE_GROUP_NAMES_QUERY.rows("names", devices=list(by_device)):
            if name is not None:
                by_device[device_id].add(name)
    for instance in instances:
        instance.security_group_names = sorted(by_device[str(instance.uuid)])


def server_groups(instance) -> list[SecurityGroup]:
    """The groups of a server's ports, once each, with their rules."""
    return list(
        SecurityGroup.objects.filter(ports__device_id=str(instance.uuid))
        .distinct()
        .prefetch_related("rules")
        .order_by("name", "id")
    )
