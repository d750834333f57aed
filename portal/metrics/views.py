"""``GET /metrics``: the Prometheus text format, for a scraper holding ``CLOUD["METRICS_TOKEN"]`` or an admin.

What processes counted (``instruments``) comes from every process's files in ``settings.METRICS_DIR``;
what the cloud is (``collectors``) is read at this scrape.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from compute_tasks.scrape_auth import bearer_token_matches
from portal.auth.context import NoProject, ProjectScopedToken, resolve_context_recent
from portal.models import Role

from .collectors import CloudStateCollector


def scrape_registry() -> CollectorRegistry:
    """Every process's counters, from their files in ``settings.METRICS_DIR``, and the cloud's state."""
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=str(settings.METRICS_DIR))
    registry.register(CloudStateCollector())
    return registry


def _caller_is_admin(request) -> bool:
    if request.user is None or not request.user.is_authenticated:
        return False
    if isinstance(request.auth, ProjectScopedToken):
        return request.auth.role == Role.ADMIN or bool(getattr(request.user, "is_superuser", False))
    try:
        return resolve_context_recent(request.user, request.headers.get("X-Project-Id")).is_admin
    except NoProject:
        return bool(getattr(request.user, "is_superuser", False))


class ScraperOrAdmin(BasePermission):
    """The configured scraper token (checked before any other credential), or an admin's credentials."""

    message = "Policy doesn't allow this operation to be performed: metrics are for the scraper and admins."

    def has_permission(self, request, view) -> bool:
        if bearer_token_matches(request.headers.get("Authorization"), settings.CLOUD["METRICS_TOKEN"]):
            return True
        return _caller_is_admin(request)


class MetricsView(APIView):
    permission_classes = [ScraperOrAdmin]

    def get(self, request):
        return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
