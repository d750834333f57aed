"""Errors raised outside any API view (unknown URLs, crashes in middleware) in the right format."""

from django.http import JsonResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from .errors import json_error

_API_PREFIXES = ("/compute/", "/image/", "/internal/")
_NETWORKING_PREFIX = "/networking/"


def _neutron_error(status: int, type_: str, message: str) -> JsonResponse:
    return JsonResponse({"NeutronError": {"type": type_, "message": message, "detail": ""}}, status=status)


def not_found(request, exception=None):
    if request.path.startswith(_NETWORKING_PREFIX):
        return _neutron_error(404, "HTTPNotFound", "The resource could not be found.")
    if request.path.startswith(_API_PREFIXES):
        return json_error(404, "The resource could not be found.")
    return page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(_NETWORKING_PREFIX):
        return _neutron_error(
            500, "HTTPInternalServerError", "Request Failed: internal server error while processing your request."
        )
    if request.path.startswith(_API_PREFIXES):
        return json_error(500, "Unexpected API Error. Please report this.")
    return html_server_error(request)
