"""Errors in the OpenStack envelope: ``{"itemNotFound": {"code": 404, "message": "..."}}``."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DataError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from portal.db.contention import gave_way

log = logging.getLogger(__name__)

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def envelope(status: int, message: str) -> dict:
    return {FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}}


class APIError(drf.APIException):
    status_code = 500
    default_detail = "An unexpected error occurred."

    def __init__(self, message: str | None = None):
        super().__init__(detail=message or self.default_detail)


class BadRequest(APIError):
    status_code = 400
    default_detail = "Bad request."


class Forbidden(APIError):
    status_code = 403
    default_detail = "Policy doesn't allow this operation to be performed."


class NotFound(APIError):
    status_code = 404
    default_detail = "The resource could not be found."


class Conflict(APIError):
    status_code = 409
    default_detail = "The request conflicts with the resource's current state."


class GaveWay(APIError):
    """PostgreSQL ended the request's transaction to let a concurrent one through (a deadlock): nothing
    of it was kept, and the client may send it again."""

    status_code = 503
    default_detail = "The request conflicted with a concurrent one and was not carried out; try it again."
    wait = 1


class NotAcceptable(APIError):
    status_code = 406
    default_detail = "Version not supported."


class PayloadTooLarge(APIError):
    status_code = 413
    default_detail = "Request is too large."


def _flatten(detail, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}: " if name else prefix)
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


def openstack_exception_handler(exc, context):
    """DRF's exception handler, speaking the compute API's error envelope for every failure."""
    if isinstance(exc, Http404):
        exc = NotFound()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        exc = BadRequest("Malformed request.")
    elif isinstance(exc, RecursionError):
        exc = BadRequest("Malformed request body: nested too deeply.")
    elif isinstance(exc, DataError):
        # The database refused a value the request carried (a NUL character, a number or a text too
        # large for its column): the request is at fault, whichever check let it through.
        log.info("Input refused by the database in %s: %s", context.get("view").__class__.__name__, exc)
        exc = BadRequest("Invalid input: a value holds a NUL character, or is too large.")
    elif gave_way(exc):
        log.warning("%s gave way to a concurrent request: %s", context.get("view").__class__.__name__, exc)
        exc = GaveWay()
    elif isinstance(exc, drf.PermissionDenied) and not isinstance(exc, APIError):
        exc = Forbidden(str(exc.detail) if exc.detail != drf.PermissionDenied.default_detail else None)

    if not isinstance(exc, drf.APIException):
        log.exception("Unexpected error in %s", context.get("view").__class__.__name__)
        return Response(envelope(500, "Unexpected API Error. Please report this."), status=500)

    status = exc.status_code
    if isinstance(exc, drf.ValidationError):
        message = "Invalid input for field/attribute " + "; ".join(_flatten(exc.detail))
        status = 400
    elif isinstance(exc, drf.ParseError):
        message = "Malformed request body."
    else:
        message = "; ".join(_flatten(exc.detail))
    body = envelope(status, message)
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
        # Nova's overLimit fault says it in the body too.
        next(iter(body.values()))["retryAfter"] = headers["Retry-After"]
    return Response(body, status=status, headers=headers)


def json_error(status: int, message: str) -> JsonResponse:
    return JsonResponse(envelope(status, message), status=status)
