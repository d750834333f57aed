"""``X-Auth-Token``: Keystone tokens on the APIs, and the project and role they carry."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rest_framework import authentication, exceptions

from portal.models import Project
from portal.services.identity import LocalUserConflict, keystone_principal_sync

from . import keystone
from .context import ProjectScopedToken

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Auth-Token"  # noqa: S105 (a header name, not a secret)


class IdentityUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The identity service is unavailable; try again later."


@dataclass(frozen=True)
class TokenScope(ProjectScopedToken):
    """``request.auth`` for a Keystone token: the project it is scoped to and the portal role it grants."""

    project: Project
    role: str
    identity: keystone.KeystoneIdentity


class KeystoneTokenAuthentication(authentication.BaseAuthentication):
    """Accepts a Keystone token in ``X-Auth-Token`` when ``KEYSTONE_AUTH_URL`` is set; otherwise steps aside."""

    def authenticate(self, request):
        token = request.headers.get(TOKEN_HEADER)
        if not token or not keystone.enabled():
            return None
        try:
            identity = keystone.client().validate(token)
        except keystone.InvalidToken:
            raise exceptions.AuthenticationFailed("The request you have made requires authentication.") from None
        except keystone.KeystoneUnavailable:
            raise IdentityUnavailable() from None
        if identity.project_id is None:
            raise exceptions.PermissionDenied("The token is not scoped to a project.")
        role = keystone.portal_role(identity.roles)
        try:
            membership = keystone_principal_sync(
                user_id=identity.user_id,
                user_name=identity.user_name,
                project_id=identity.project_id,
                project_name=identity.project_name or identity.project_id,
                project_domain=identity.project_domain_name,
                role=role,
            )
        except LocalUserConflict:
            log.warning("Keystone user %s has the name of a local user; refused", identity.user_id)
            raise exceptions.AuthenticationFailed("This Keystone user cannot use this cloud.") from None
        if membership is None:
            raise exceptions.PermissionDenied(
                f"None of your roles in project {identity.project_id} (reader, member, admin) is known here."
            )
        if not membership.user.is_active or not membership.project.enabled:
            raise exceptions.PermissionDenied("This user or project is disabled in this cloud.")
        return membership.user, TokenScope(project=membership.project, role=membership.role, identity=identity)
