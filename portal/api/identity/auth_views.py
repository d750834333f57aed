"""Version discovery and ``/v3/auth/…``: tokens issued, validated and revoked; the caller's projects,
domains and catalog."""

from __future__ import annotations

from django.db import transaction
from rest_framework.response import Response

from portal.models import ApplicationCredential, Membership, Project, Role
from portal.services.identity_tokens import token_issue, token_revoke, token_validate

from . import shapes
from .auth_methods import proven_identity, requested_scope
from .base import IdentityView, PublicIdentityView
from .errors import Forbidden, NotFound, ValidationFailed

SUBJECT_TOKEN = "X-Subject-Token"  # noqa: S105 (a header name)


class VersionsView(PublicIdentityView):
    """``/identity``: the one version, as Keystone lists its versions (300 Multiple Choices)."""

    def get(self, request):
        response = Response({"versions": {"values": [shapes.version()]}}, status=300)
        response["Location"] = f"{shapes.v3_url()}/"
        return response


class VersionView(PublicIdentityView):
    def get(self, request):
        return Response({"version": shapes.version()})


def _token_response(secret: str, record, principal_user, project, role, credential, *, with_catalog, status=200):
    body = shapes.token(
        record, user=principal_user, project=project, role=role, credential=credential, with_catalog=with_catalog
    )
    response = Response(body, status=status)
    response[SUBJECT_TOKEN] = secret
    return response


def _wants_catalog(request) -> bool:
    return "nocatalog" not in request.query_params


class TokensView(IdentityView):
    def get_authenticators(self):
        # Issuing a token needs no token; validating and revoking one do.
        if self.request.method == "POST":
            return []
        return super().get_authenticators()

    def get_permissions(self):
        if self.request.method == "POST":
            return []
        return super().get_permissions()

    def post(self, request):
        auth = request.data.get("auth") if isinstance(request.data, dict) else None
        if not isinstance(auth, dict):
            raise ValidationFailed("Expecting to find auth in the request body.")
        proven = proven_identity(request, auth.get("identity"))
        scope = requested_scope(proven, auth.get("scope"))
        expires_at = proven.token.record.expires_at if proven.token is not None else None
        with transaction.atomic():
            secret, record = token_issue(
                user=proven.user,
                project=scope.project,
                domain_scoped=scope.domain,
                methods=proven.methods,
                application_credential=proven.credential,
                expires_at=expires_at,
            )
        return _token_response(
            secret,
            record,
            proven.user,
            scope.project,
            scope.role,
            proven.credential,
            with_catalog=_wants_catalog(request),
            status=201,
        )

    def _subject(self, request):
        subject = request.headers.get(SUBJECT_TOKEN)
        if not subject:
            raise ValidationFailed("Expecting to find X-Subject-Token in the request headers.")
        principal = token_validate(subject)
        if principal is None:
            raise NotFound("Could not find token.")
        if principal.user.pk != request.user.pk and not self.is_admin:
            # Another user's token: as if it did not exist, so that tokens cannot be probed.
            raise NotFound("Could not find token.")
        return subject, principal

    def get(self, request):
        subject, principal = self._subject(request)
        credential = None
        if principal.record.application_credential_id is not None:
            credential = ApplicationCredential.objects.filter(pk=principal.record.application_credential_id).first()
        role = (
            principal.role
            if principal.project is not None
            else (Role.ADMIN if principal.record.domain_scoped else None)
        )
        return _token_response(
            subject,
            principal.record,
            principal.user,
            principal.project,
            role,
            credential,
            with_catalog=_wants_catalog(request),
        )

    def head(self, request):
        subject, _ = self._subject(request)
        response = Response(status=200)
        response[SUBJECT_TOKEN] = subject
        return response

    def delete(self, request):
        subject, _ = self._subject(request)
        token_revoke(secret=subject)
        return Response(status=204)


def visible_projects(view) -> list[Project]:
    """The enabled projects the caller has a role in (every one for a superuser)."""
    user = view.request.user
    if getattr(user, "is_superuser", False):
        return list(Project.objects.filter(enabled=True))
    ids = Membership.objects.filter(user=user, project__enabled=True).values("project_id")
    return list(Project.objects.filter(pk__in=ids))


class AuthProjectsView(IdentityView):
    def get(self, request):
        projects = visible_projects(self)
        return Response(
            {
                "projects": [shapes.project(p) for p in projects],
                "links": {"self": shapes.v3_url("/auth/projects"), "previous": None, "next": None},
            }
        )


class AuthDomainsView(IdentityView):
    def get(self, request):
        user = request.user
        admin = (
            getattr(user, "is_superuser", False)
            or Membership.objects.filter(user=user, role=Role.ADMIN, project__enabled=True).exists()
        )
        return Response(
            {
                "domains": [shapes.domain()] if admin else [],
                "links": {"self": shapes.v3_url("/auth/domains"), "previous": None, "next": None},
            }
        )


class AuthCatalogView(IdentityView):
    def get(self, request):
        if self.principal.project is None:
            raise Forbidden("The catalog is offered to project-scoped tokens only.")
        return Response(
            {"catalog": shapes.catalog(self.principal.project.pk), "links": {"self": shapes.v3_url("/auth/catalog")}}
        )
