"""An instance's volumes on its page: attach one of the project's free volumes, detach one."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.selectors.instances import instance_get
from portal.services import volumes
from portal.services.cinder import BlockStorageError
from portal.services.lifecycle import StateConflict

from .context import portal_view

_REFUSALS = (StateConflict, volumes.VolumeRequestError, BlockStorageError)


def _volume_id(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (TypeError, ValueError):
        return None


@require_POST
@portal_view
def volume_attach(request: HttpRequest, server_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_get(ctx, server_id)
    if instance is None:
        raise Http404("No such instance")
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    volume_id = _volume_id(request.POST.get("volume_id", ""))
    if volume_id is None:
        messages.error(request, "Choose a volume to attach.")
        return back
    if not ctx.can_write:
        messages.error(request, "Your role in this project is read-only.")
        return back
    try:
        mapping = volumes.volume_attach(
            ctx=ctx, instance=instance, volume_id=volume_id, device=request.POST.get("device", "").strip() or None
        )
    except _REFUSALS as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Attaching volume {volume_id} to {instance.name} as {mapping.device}.")
    return back


@require_POST
@portal_view
def volume_detach(request: HttpRequest, server_id, volume_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_get(ctx, server_id)
    if instance is None:
        raise Http404("No such instance")
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    if not ctx.can_write:
        messages.error(request, "Your role in this project is read-only.")
        return back
    try:
        volumes.volume_detach(ctx=ctx, instance=instance, volume_id=str(volume_id))
    except _REFUSALS as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Detaching volume {volume_id} from {instance.name}.")
    return back
