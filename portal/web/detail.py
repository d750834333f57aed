"""What an instance's page shows besides the instance: its action log with events, and its image."""

from __future__ import annotations

from django.db.models import Prefetch

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceAction, InstanceActionEvent
from portal.selectors.images import image_get

from .presenters import present

ACTION_LOG_LENGTH = 20


def detail_context(instance: Instance, ctx: RequestContext) -> dict:
    actions = list(
        InstanceAction.objects.filter(instance=instance)
        .select_related("user")
        .prefetch_related(Prefetch("events", queryset=InstanceActionEvent.objects.order_by("start_time", "id")))
        .order_by("-start_time", "-id")[:ACTION_LOG_LENGTH]
    )
    image = image_get(ctx=ctx, image_id=instance.image_ref)  # a name the caller may see, else the id
    return {
        "view": present(instance, ctx),
        "actions": actions,
        "image_name": (image.name if image else None) or str(instance.image_ref),
    }
