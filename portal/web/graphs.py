"""An instance's graphs on its page: the figures its host keeps of it (``portal.services.instance_graphs``),
as JSON for the page's charts (``static/portal/graphs.js``), which fetch them again every few seconds."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from portal.services.instance_graphs import HostUnavailable, InvalidRange, graph_range_seconds, instance_graphs
from portal.services.lifecycle import StateConflict

from .context import instance_or_404, portal_view

# The ranges the page offers, with their buttons' labels.
GRAPH_RANGES = (("hour", "Last hour"), ("day", "Last day"), ("week", "Last week"))


@require_GET
@portal_view
def instance_graphs_data(request: HttpRequest, server_id) -> JsonResponse:
    """``{"resolution", "start", "step", "series", "no_history"}`` of the range asked (``?range=hour``,
    ``day``, ``week`` or seconds); 409 for an instance on no host, 503 when its host does not answer."""
    instance = instance_or_404(request, server_id)
    try:
        seconds = graph_range_seconds(request.GET.get("range"))
    except InvalidRange as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        reply = instance_graphs(ctx=request.ctx, instance=instance, seconds=seconds)
    except StateConflict as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    except HostUnavailable as exc:
        return JsonResponse({"error": str(exc)}, status=503)
    response = JsonResponse(
        {
            "resolution": reply.resolution,
            "start": reply.start,
            "step": reply.step,
            "series": reply.series,
            "no_history": reply.no_history,
        }
    )
    response["Cache-Control"] = "no-store"
    return response
