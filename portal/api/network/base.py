"""The networking API's base view: the compute API's authentication, Neutron's error envelope."""

from __future__ import annotations

from django.conf import settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from portal.api.base import ProjectAPIView
from portal.api.errors import openstack_exception_handler
from portal.services.network_errors import BadRequest, NetworkError, PolicyNotAuthorized

# The type Neutron names a fault that is not one of its own exceptions after (webob's class names).
HTTP_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    406: "HTTPNotAcceptable",
    409: "HTTPConflict",
    413: "HTTPRequestEntityTooLarge",
    415: "HTTPUnsupportedMediaType",
    429: "HTTPTooManyRequests",
    500: "HTTPInternalServerError",
    501: "HTTPNotImplemented",
    503: "HTTPServiceUnavailable",
}


def neutron_error(status: int, message: str, type_: str | None = None) -> dict:
    return {"NeutronError": {"type": type_ or HTTP_TYPES.get(status, "HTTPError"), "message": message, "detail": ""}}


def neutron_exception_handler(exc, context):
    """Every failure in Neutron's envelope: the network controller's own errors with their type, the rest
    (authentication, parsing, methods) as the compute API's handler would answer, re-wrapped."""
    if isinstance(exc, NetworkError):
        return Response(neutron_error(exc.status, exc.message, exc.type), status=exc.status)
    response = openstack_exception_handler(exc, context)
    inner = next(iter(response.data.values())) if isinstance(response.data, dict) and response.data else {}
    message = inner.get("message", "") if isinstance(inner, dict) else ""
    response.data = neutron_error(response.status_code, message)
    return response


class AlwaysJSON(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def service_url() -> str:
    return f"{settings.CLOUD['PUBLIC_URL']}/networking"


class NetworkingAPIView(ProjectAPIView):
    content_negotiation_class = AlwaysJSON

    def get_exception_handler(self):
        return neutron_exception_handler

    @property
    def is_admin(self) -> bool:
        return self.ctx.is_admin

    def body_of(self, key: str) -> dict:
        """The object under ``key`` of the request body, or 400."""
        data = self.request.data
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise BadRequest(f"Resource body required: expected an object under '{key}'.")
        return data[key]

    def require_write(self) -> None:
        if not self.ctx.can_write:
            raise PolicyNotAuthorized("Policy doesn't allow this operation to be performed: your role is read-only.")

    def require_admin(self) -> None:
        if not self.ctx.is_admin:
            raise PolicyNotAuthorized("Policy doesn't allow this operation to be performed: admin only.")

    def collection_url(self, collection: str) -> str:
        return f"{service_url()}/v2.0/{collection}"
