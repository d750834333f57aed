"""Server groups: create (within the project's quota) and delete. Their members are instances booted
with the ``group`` scheduler hint; the scheduler reads ``policy`` and ``rules`` to place them."""

from __future__ import annotations

from django.db import transaction

from portal.auth.context import RequestContext
from portal.models import ServerGroup

from . import quotas


class InvalidServerGroup(ValueError):
    """A policy or rule the compute API does not accept (the API answers 400)."""


def server_group_create(*, ctx: RequestContext, name: str, policy: str, rules: dict | None = None) -> ServerGroup:
    rules = dict(rules or {})
    if policy not in ServerGroup.Policy.values:
        raise InvalidServerGroup(f"Invalid policy {policy!r}.")
    if rules and policy != ServerGroup.Policy.ANTI_AFFINITY:
        raise InvalidServerGroup("Only anti-affinity policy supports rules.")
    unknown = sorted(set(rules) - {"max_server_per_host"})
    if unknown:
        raise InvalidServerGroup(f"Unknown rules: {', '.join(unknown)}.")
    with transaction.atomic():
        quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_groups")
        return ServerGroup.objects.create(name=name, project=ctx.project, user=ctx.user, policy=policy, rules=rules)


def server_group_delete(*, group: ServerGroup) -> None:
    """Remove the group; its members keep running, no longer bound by its policy."""
    with transaction.atomic():
        ServerGroup.objects.filter(pk=group.pk).delete()
