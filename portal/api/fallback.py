"""Errors raised outside any API view (unknown URLs, crashes in middleware) in the right format."""

from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from .errors import json_error

_API_PREFIXES = ("/compute/", "/image/", "/internal/")


def not_found(request, exception=None):
    if request.path.startswith(_API_PREFIXES):
        return json_error(404, "The resource could not be found.")
    return page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(_API_PREFIXES):
        return json_error(500, "Unexpected API Error. Please report this.")
    return html_server_error(request)
