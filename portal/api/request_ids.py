"""Every answer of every API carries the id of its request: ``X-Openstack-Request-Id`` (and, from the
compute API, ``X-Compute-Request-Id``, as Nova sends both).

The id is made here for each request, never taken from the client (as Nova, which ignores the header a
client sends when naming the request). It is the request's context variable
(``compute_tasks.request_ids``) while the request runs: the ``RequestContext`` the views build, and so
the instance action they record, take it from there, every message the request sends carries it, and
every log line written meanwhile shows it. One line per request says how it was answered.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

from django.core.signals import request_finished
from django.dispatch import receiver

from compute_tasks import request_ids

log = logging.getLogger("portal.api.requests")

REQUEST_ID_HEADER = request_ids.HEADER
COMPUTE_REQUEST_ID_HEADER = "X-Compute-Request-Id"
_COMPUTE_PREFIX = "/compute/"


class RequestIdMiddleware:
    """First in ``MIDDLEWARE``: everything after it (error pages and the fallback's 404s included) runs
    inside the request's id. It adds no query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_ids.new()
        # Not reset on the way out: Django logs a failed request after the middleware returned
        # (``django.request``), and that line is about this request too. ``request_finished`` ends it.
        request_ids.use(request_id)
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        if request.path.startswith(_COMPUTE_PREFIX):
            response[COMPUTE_REQUEST_ID_HEADER] = request_id
        # The request of another process this one is part of (a host's download for a build): named on the
        # line, never taken as this request's id.
        caller = request.headers.get(REQUEST_ID_HEADER)
        log.info(
            '"%s %s" status: %s len: %s time: %.3f%s',
            request.method,
            # Only the path, quoted: a query string may hold a secret, and a line break must not start a
            # forged line.
            quote(request.path, safe="/:@!$&'()*+,;=-._~"),
            response.status_code,
            response.get("Content-Length", "-"),
            time.perf_counter() - started,
            f" global_request_id: {caller}" if request_ids.well_formed(caller) else "",
        )
        return response


@receiver(request_finished, dispatch_uid="request_ids.request_finished")
def _request_finished(**_) -> None:
    """The thread (a gunicorn worker's, reused for the next request) works for no request any more."""
    request_ids.use(None)
