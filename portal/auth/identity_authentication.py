"""``X-Auth-Token`` with a token of the built-in identity API (``/identity/v3``), when no Keystone is set."""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import authentication, exceptions

from portal.models import Project
from portal.services.identity_tokens import TokenPrincipal, token_validate, token_validate_recent

from . import keystone
from .context import ProjectScopedToken

TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 (a header name, not a secret)
UNAUTHENTICATED = "The request you have made requires authentication."


@dataclass(frozen=True)
class LocalTokenScope(ProjectScopedToken):
    """``request.auth`` for a built-in token scoped to a project: that project and the role it grants now."""

    project: Project
    role: str
    principal: TokenPrincipal


def local_tokens_enabled() -> bool:
    """The built-in identity answers unless an external Keystone is the authority."""
    return not keystone.enabled()


class LocalTokenAuthentication(authentication.BaseAuthentication):
    """Accepts a built-in identity token on the compute and image APIs; steps aside with Keystone set."""

    def authenticate(self, request):
        token = request.headers.get(TOKEN_HEADER)
        if not token or not local_tokens_enabled():
            return None
        principal = token_validate_recent(token)
        if principal is None:
            raise exceptions.AuthenticationFailed(UNAUTHENTICATED)
        if principal.project is None:
            raise exceptions.PermissionDenied("The token is not scoped to a project.")
        return principal.user, LocalTokenScope(project=principal.project, role=principal.role, principal=principal)

    def authenticate_header(self, request):
        return 'Keystone uri="/identity"'


class IdentityAPIAuthentication(authentication.BaseAuthentication):
    """The identity API's own callers: any valid built-in token, scoped or not (``request.auth`` is its
    :class:`TokenPrincipal`)."""

    def authenticate(self, request):
        token = request.headers.get(TOKEN_HEADER)
        if not token:
            return None
        principal = token_validate(token)
        if principal is None:
            raise exceptions.AuthenticationFailed(UNAUTHENTICATED)
        return principal.user, principal

    def authenticate_header(self, request):
        return "Keystone"
