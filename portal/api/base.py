"""The base view of the APIs: authentication and the caller's project (request ids: ``request_ids``)."""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from portal.auth.context import (
    NoProject,
    ProjectMismatch,
    ProjectScopedToken,
    RequestContext,
    resolve_context_recent,
    token_context,
)

from . import microversion
from .compute.validation import lenient_bodies
from .errors import BadRequest, Forbidden


class ProjectAPIView(APIView):
    """Every authenticated endpoint: ``self.ctx`` says who asks for which project.

    The project is the one in the URL (``/v2.1/{project_id}/…``), else the ``X-Project-Id`` header,
    else the caller's first project; with a token (Keystone's or the built-in identity's), always the
    token's project.
    """

    ctx: RequestContext
    project_hint: str | None = None

    def dispatch(self, request, *args, **kwargs):
        # The optional project segment of the URL selects the project; handlers never see it.
        self.project_hint = kwargs.pop("project_id", None)
        return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        project_id = self.project_hint or request.headers.get("X-Project-Id")
        try:
            if isinstance(request.auth, ProjectScopedToken):
                scope = request.auth
                self.ctx = token_context(request.user, scope.project, scope.role, self.project_hint)
            else:
                self.ctx = resolve_context_recent(request.user, project_id)
        except ProjectMismatch as exc:
            raise BadRequest(str(exc)) from None
        except NoProject as exc:
            raise Forbidden(str(exc)) from None

    def require_write(self) -> None:
        if not self.ctx.can_write:
            raise Forbidden("Policy doesn't allow this operation to be performed: your role is read-only.")

    def require_admin(self) -> None:
        if not self.ctx.is_admin:
            raise Forbidden("Policy doesn't allow this operation to be performed: admin only.")


class AlwaysJSON(DefaultContentNegotiation):
    """The compute API answers JSON whatever ``Accept`` says, as Nova does: openstacksdk sends ``Accept: ""``
    with every server action."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ComputeAPIView(ProjectAPIView):
    """A compute API endpoint: microversion negotiated before anything else, and echoed."""

    content_negotiation_class = AlwaysJSON

    def dispatch(self, request, *args, **kwargs):
        lenient = lenient_bodies.set(microversion.is_legacy_v2(request))
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            lenient_bodies.reset(lenient)

    def initial(self, request, *args, **kwargs):
        request.api_version = microversion.from_request(request)
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        version = getattr(request, "api_version", None)
        if version is not None and not microversion.is_legacy_v2(request):
            microversion.echo_headers(response, version)
        if response.has_header("X-Openstack-Request-Id"):
            # Nova's older name for the same id, which clients (Tempest among them) still read.
            response["X-Compute-Request-Id"] = response["X-Openstack-Request-Id"]
        return response


class PublicAPIView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
