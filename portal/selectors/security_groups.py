"""What security groups and rules a caller may see: its project's (admins: all). Others are not there."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from portal.models import SecurityGroup, SecurityGroupRule


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def groups_visible(ctx) -> QuerySet[SecurityGroup]:
    rows = SecurityGroup.objects.prefetch_related("rules")
    return rows if ctx.is_admin else rows.filter(project=ctx.project)


def rules_visible(ctx) -> QuerySet[SecurityGroupRule]:
    rows = SecurityGroupRule.objects.all()
    return rows if ctx.is_admin else rows.filter(project=ctx.project)


def group_get(ctx, group_id) -> SecurityGroup | None:
    pk = _uuid(group_id)
    return None if pk is None else groups_visible(ctx).filter(pk=pk).first()


def rule_get(ctx, rule_id) -> SecurityGroupRule | None:
    pk = _uuid(rule_id)
    return None if pk is None else rules_visible(ctx).filter(pk=pk).first()


def group_named(ctx, name_or_id) -> SecurityGroup | None:
    """A group of the caller's project by id or name (a name several groups have: None)."""
    found = group_get(ctx, name_or_id)
    if found is not None:
        return found
    named = list(SecurityGroup.objects.filter(project=ctx.project, name=name_or_id)[:2])
    return named[0] if len(named) == 1 else None
