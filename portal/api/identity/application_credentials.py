"""``/v3/users/{user_id}/application_credentials``: a user's own credentials for programs, made with a
token scoped to the project they will act in."""

from __future__ import annotations

from datetime import UTC

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.response import Response

from portal.models import ApplicationCredential, Role
from portal.services.identity_tokens import (
    ROLE_ORDER,
    ApplicationCredentialConflict,
    application_credential_create,
    application_credential_delete,
)

from . import shapes
from .base import IdentityView
from .errors import Conflict, Forbidden, NotFound, ValidationFailed

FIELDS = {"name", "description", "secret", "expires_at", "roles", "unrestricted", "access_rules"}


class _UserCredentialsView(IdentityView):
    def owner(self, user_id: str):
        """The path's user, who must be the caller (admins may look at anyone's)."""
        if user_id != self.request.user.get_username() and not (self.is_admin and self.request.method == "GET"):
            raise NotFound(f"Could not find user: {user_id[:64]}.")
        return user_id

    def credentials(self, user_id: str):
        return ApplicationCredential.objects.select_related("user").filter(user__username=self.owner(user_id))


def _requested_role(roles, held: str) -> str:
    """The strongest role asked for, each of which the user must hold (by implication) in the project."""
    if roles is None:
        return held
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        raise ValidationFailed("Invalid input for field 'roles': expecting a list of objects.")
    names = [r.get("name", r.get("id")) for r in roles]
    if not names:
        return held
    unknown = [n for n in names if n not in Role.values]
    if unknown:
        raise NotFound(f"Could not find role: {str(unknown[0])[:64]}.")
    if any(ROLE_ORDER.index(n) > ROLE_ORDER.index(held) for n in names):
        raise Forbidden("An application credential cannot have a role its user does not have.")
    return max(names, key=ROLE_ORDER.index)


def _expiry(value):
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise ValidationFailed("Invalid input for field 'expires_at': expecting an ISO 8601 time.")
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    if moment <= timezone.now():
        raise ValidationFailed("Invalid input for field 'expires_at': the time has passed.")
    return moment


class ApplicationCredentialsView(_UserCredentialsView):
    def get(self, request, user_id):
        credentials = self.credentials(user_id)
        if "name" in request.query_params:
            credentials = credentials.filter(name=request.query_params["name"])
        return Response(
            {
                "application_credentials": [shapes.application_credential(c) for c in credentials],
                "links": {
                    "self": shapes.v3_url(f"/users/{user_id}/application_credentials"),
                    "previous": None,
                    "next": None,
                },
            }
        )

    def post(self, request, user_id):
        self.owner(user_id)
        principal = self.principal
        if principal.project is None:
            raise Forbidden("An application credential is made with a token scoped to its project.")
        if principal.record.application_credential_id is not None:
            raise Forbidden("An application credential cannot make another application credential.")
        body = request.data.get("application_credential") if isinstance(request.data, dict) else None
        if not isinstance(body, dict):
            raise ValidationFailed("Expecting to find application_credential in the request body.")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise ValidationFailed(f"Invalid input: additional property {unknown[0][:64]!r} is not allowed.")
        if body.get("access_rules"):
            raise ValidationFailed("Access rules are not offered by this cloud.")
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise ValidationFailed("Invalid input for field 'name': expecting a string of 1 to 255 characters.")
        description = body.get("description") or ""
        secret = body.get("secret")
        if not isinstance(description, str) or (secret is not None and (not isinstance(secret, str) or not secret)):
            raise ValidationFailed("Invalid input for field 'description' or 'secret': expecting a string.")
        unrestricted = body.get("unrestricted", False)
        if not isinstance(unrestricted, bool):
            raise ValidationFailed("Invalid input for field 'unrestricted': expecting a boolean.")
        role = _requested_role(body.get("roles"), principal.role)
        try:
            with transaction.atomic():
                credential, secret = application_credential_create(
                    user=request.user,
                    project=principal.project,
                    role=role,
                    name=name,
                    description=description,
                    secret=secret,
                    expires_at=_expiry(body.get("expires_at")),
                    unrestricted=unrestricted,
                )
        except ApplicationCredentialConflict as exc:
            raise Conflict(str(exc)) from None
        return Response({"application_credential": shapes.application_credential(credential, secret)}, status=201)


class ApplicationCredentialView(_UserCredentialsView):
    def find(self, user_id: str, credential_id: str) -> ApplicationCredential:
        credential = self.credentials(user_id).filter(pk=credential_id).first()
        if credential is None:
            raise NotFound(f"Could not find application credential: {credential_id[:64]}.")
        return credential

    def get(self, request, user_id, credential_id):
        return Response({"application_credential": shapes.application_credential(self.find(user_id, credential_id))})

    def delete(self, request, user_id, credential_id):
        credential = self.find(user_id, credential_id)
        if self.principal.record.application_credential_id is not None and not credential.unrestricted:
            raise Forbidden("A restricted application credential cannot delete application credentials.")
        application_credential_delete(credential=credential)
        return Response(status=204)
