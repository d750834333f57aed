"""Counts every request the API answers and how long it took, by the route's name (never its path)."""

from __future__ import annotations

import time

from . import instruments

# A request no URL pattern matched: its path could be anything, so it is never a label.
UNMATCHED = "unmatched"


def route_of(request) -> str:
    """The matched URL pattern's name (with its namespace), or its pattern when it has no name."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.view_name if match.url_name else match.route


class RequestMetricsMiddleware:
    """First in ``MIDDLEWARE``, so the time counted is the whole of Django's; it adds no query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        route = route_of(request)
        method = request.method if request.method in instruments.METHODS else "other"
        instruments.api_requests.labels(route, method, str(response.status_code)).inc()
        instruments.api_request_duration.labels(route, method).observe(elapsed)
        return response
