"""Volumes: the project's list (create, delete), and on an instance's page attach one and detach one."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.services import cinder, volumes
from portal.services.cinder import BlockStorageError
from portal.services.lifecycle import StateConflict

from .context import instance_or_404, page, portal_view
from .forms import VolumeCreateForm

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
    instance = instance_or_404(request, server_id)
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
    instance = instance_or_404(request, server_id)
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


@require_http_methods(["GET", "POST"])
@portal_view
def volume_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    if not cinder.configured():
        raise Http404("This cloud has no block storage service")
    status = 200
    form = VolumeCreateForm()
    if request.method == "POST":
        form = VolumeCreateForm(request.POST)
        if not ctx.can_write:
            form.add_error(None, "Your role in this project is read-only: you cannot create volumes.")
        elif form.is_valid():
            data = form.cleaned_data
            try:
                volume = volumes.project_volume_create(
                    ctx=ctx, name=data["name"], size=data["size"], description=data["description"]
                )
            except BlockStorageError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Creating volume {volume.get('name') or volume['id']}.")
                return HttpResponseRedirect(reverse("portal:volumes"))
        status = 400
    error = ""
    try:
        listed = volumes.project_volumes(ctx=ctx)
    except BlockStorageError as exc:
        listed, error = [], str(exc)
    rows = [
        {**v, "server_ids": [a["server_id"] for a in v.get("attachments") or [] if a.get("server_id")]} for v in listed
    ]
    context = {"section": "volumes", "volumes": rows, "error": error, "form": form}
    return page(request, "portal/volumes.html", context, status=status)


@require_POST
@portal_view
def volume_remove(request: HttpRequest, volume_id) -> HttpResponse:
    ctx = request.ctx
    back = HttpResponseRedirect(reverse("portal:volumes"))
    if not ctx.can_write:
        messages.error(request, "Your role in this project is read-only.")
        return back
    try:
        volumes.project_volume_delete(ctx=ctx, volume_id=str(volume_id))
    except (volumes.VolumeRequestError, BlockStorageError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Deleting volume {volume_id}.")
    return back
