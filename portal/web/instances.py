"""Instance pages: the live list, the launch form, an instance's page and its buttons."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.selectors.instances import instances_listed
from portal.services.actions import NotAllowed
from portal.services.instances import InvalidRequest
from portal.services.lifecycle import StateConflict
from portal.services.quotas import QuotaExceeded

from .context import instance_or_404, page, portal_view
from .detail import detail_context
from .forms import LaunchForm
from .graphs import GRAPH_RANGES
from .instance_actions import BUTTONS, perform, resize
from .launch import launch
from .presenters import present, render_rows


@require_GET
@portal_view
def instance_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    views = [present(instance, ctx) for instance in instances_listed(ctx)]
    return page(
        request,
        "portal/instances.html",
        {"section": "instances", "rows": render_rows(request, views), "rendered_at": timezone.now().isoformat()},
    )


@require_GET
@portal_view
def instance_detail(request: HttpRequest, server_id) -> HttpResponse:
    instance = instance_or_404(request, server_id)
    context = detail_context(instance, request.ctx)
    return page(
        request,
        "portal/instance_detail.html",
        {
            "section": "instances",
            **context,
            "rendered_at": timezone.now().isoformat(),
            "graph_ranges": GRAPH_RANGES,
        },
    )


@require_POST
@portal_view
def instance_action(request: HttpRequest, server_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_or_404(request, server_id)
    action = request.POST.get("action", "")
    back = reverse("portal:instance", args=[instance.uuid])
    if request.POST.get("from") == "list":
        back = reverse("portal:instances")
    if action == "resize" and ctx.can_write:
        try:
            resize(ctx=ctx, instance=instance, flavor_id=request.POST.get("flavor", ""))
        except (StateConflict, NotAllowed, ValueError, InvalidRequest, QuotaExceeded) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Resize: requested for {instance.name}.")
        return HttpResponseRedirect(back)
    if action not in BUTTONS:
        messages.error(request, "There is no such action.")
        return HttpResponseRedirect(back)
    if not ctx.can_write:
        messages.error(request, "Your role in this project is read-only.")
        return HttpResponseRedirect(back)
    try:
        perform(ctx=ctx, instance=instance, action=action)
    except (StateConflict, NotAllowed, ValueError, InvalidRequest, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{BUTTONS[action].label}: requested for {instance.name}.")
    if action == "delete" and back != reverse("portal:instances"):
        back = reverse("portal:instances")
    return HttpResponseRedirect(back)


@require_http_methods(["GET", "POST"])
@portal_view
def instance_launch(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    if request.method == "POST":
        form = LaunchForm(request.POST, ctx=ctx)
        if not ctx.can_write:
            form.add_error(None, "Your role in this project is read-only: you cannot launch instances.")
        elif form.is_valid():
            created = launch(ctx=ctx, form=form)
            if created:
                names = ", ".join(instance.name for instance in created)
                messages.success(request, f"Launching {names}.")
                if len(created) == 1:
                    return HttpResponseRedirect(reverse("portal:instance", args=[created[0].uuid]))
                return HttpResponseRedirect(reverse("portal:instances"))
        status = 400
    else:
        form = LaunchForm(ctx=ctx)
        status = 200
    return page(request, "portal/launch.html", {"section": "instances", "form": form}, status=status)
