"""Flavors the project may launch with (read only; operators change them in the admin)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from portal.selectors.flavors import flavors_visible

from .context import page, portal_view


@require_GET
@portal_view
def flavor_list(request: HttpRequest) -> HttpResponse:
    flavors = flavors_visible(request.ctx).order_by("vcpus", "memory_mb", "flavorid")
    return page(request, "portal/flavors.html", {"section": "flavors", "flavors": flavors})
