"""Errors in Keystone's envelope: ``{"error": {"code": 401, "title": "Unauthorized", "message": "..."}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from portal.db.contention import gave_way

log = logging.getLogger(__name__)

UNAUTHENTICATED = "The request you have made requires authentication."


class IdentityError(drf.APIException):
    status_code = 400
    default_detail = "Expecting to find valid input in the request."

    def __init__(self, message: str | None = None):
        super().__init__(detail=message or self.default_detail)


class ValidationFailed(IdentityError):
    status_code = 400


class Unauthorized(IdentityError):
    status_code = 401
    default_detail = UNAUTHENTICATED


class Forbidden(IdentityError):
    status_code = 403
    default_detail = "You are not authorized to perform the requested action."


class NotFound(IdentityError):
    status_code = 404
    default_detail = "Could not find the resource."


class Conflict(IdentityError):
    status_code = 409
    default_detail = "Conflict occurred attempting to store the resource."


class GaveWay(IdentityError):
    """PostgreSQL ended the request's transaction to break a deadlock: nothing was kept; try again."""

    status_code = 503
    default_detail = "The request conflicted with a concurrent one and was not carried out; try it again."
    wait = 1


class NotImplementedHere(IdentityError):
    status_code = 501
    default_detail = (
        "Not implemented by this cloud's identity service: projects, users and roles are managed in its admin "
        "pages (/admin/)."
    )


def error_body(status: int, message: str) -> dict:
    return {"error": {"code": status, "title": HTTPStatus(status).phrase, "message": message}}


def identity_exception_handler(exc, context):
    """Every failure of the identity API in Keystone's envelope; 401s say where to authenticate."""
    if isinstance(exc, Http404):
        exc = NotFound()
    elif isinstance(exc, RequestDataTooBig):
        exc = IdentityError("Request is too large.")
        exc.status_code = 413
    elif isinstance(exc, DataError):
        exc = ValidationFailed("Invalid input: a value holds a NUL character, or is too large.")
    elif isinstance(exc, drf.ParseError):
        exc = ValidationFailed("Malformed request body: expecting JSON.")
    elif gave_way(exc):
        log.warning("An identity request gave way to a concurrent one: %s", exc)
        exc = GaveWay()
    elif isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        exc = Unauthorized()
    if not isinstance(exc, drf.APIException):
        log.exception("Unexpected error in the identity API")
        return Response(error_body(500, "An unexpected error prevented the server from fulfilling your request."), 500)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Keystone uri="/identity"'
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    return Response(error_body(status, str(message)), status=status, headers=headers)
