"""A server's action log (``os-instance-actions``): newest first, paged by keyset after a request id."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Prefetch, Q

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceAction, InstanceActionEvent

from .instances import instances_visible


class MarkerNotFound(Exception):
    """The marker names no action of this server (the API answers 400)."""


def instance_with_history(ctx: RequestContext, server_id: str, *, include_deleted: bool) -> Instance | None:
    """The server (a deleted one too, when asked) whose actions the caller may read."""
    try:
        key = uuid.UUID(str(server_id))
    except ValueError:
        return None
    return instances_visible(ctx, all_tenants=True, include_deleted=include_deleted).filter(uuid=key).first()


def actions_page(
    instance: Instance,
    *,
    limit: int | None = None,
    marker: str | None = None,
    changes_since: datetime | None = None,
    changes_before: datetime | None = None,
) -> tuple[list[InstanceAction], bool]:
    """The server's actions, newest first, and whether more follow the page."""
    rows = InstanceAction.objects.filter(instance=instance).select_related("user")
    if changes_since is not None:
        rows = rows.filter(updated_at__gte=changes_since)
    if changes_before is not None:
        rows = rows.filter(updated_at__lte=changes_before)
    if marker is not None:
        found = InstanceAction.objects.filter(instance=instance, request_id=marker).order_by("-start_time", "-id")
        after = found.first()
        if after is None:
            raise MarkerNotFound(f"Marker {marker[:64]} could not be found.")
        rows = rows.filter(Q(start_time__lt=after.start_time) | Q(start_time=after.start_time, id__lt=after.id))
    rows = rows.order_by("-start_time", "-id")
    if limit is None:
        return list(rows), False
    page = list(rows[: limit + 1])
    return page[:limit], len(page) > limit


def action_get(instance: Instance, request_id: str) -> InstanceAction | None:
    """One action by its request id, with its events in the order they happened."""
    return (
        InstanceAction.objects.filter(instance=instance, request_id=request_id)
        .select_related("user")
        .prefetch_related(
            Prefetch("events", queryset=InstanceActionEvent.objects.order_by("start_time", "id"), to_attr="event_list")
        )
        .order_by("-start_time", "-id")
        .first()
    )
