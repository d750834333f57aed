"""``POST /v3/auth/tokens``: who the request proves to be (password, application credential or token) and
the scope it asks for, checked before any token is issued.

A wrong password, an unknown user and a user of another domain get the same 401 and the same message, and
cost the same password hash (Django's ``ModelBackend`` hashes for unknown users too), so the answer says
nothing about which users exist. Every check of a secret goes through the sign-in throttle first.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from rest_framework import exceptions as drf

from portal.auth.throttle import SignIn, SignInThrottled, client_address
from portal.models import ApplicationCredential, Membership, Project, Role
from portal.services.identity_tokens import (
    TokenPrincipal,
    application_credential_check,
    lower_role,
    role_in_project,
    token_validate,
)
from portal.services.sign_in_throttle import sign_in_failure_record, sign_in_throttle_check

from .errors import Forbidden, Unauthorized, ValidationFailed
from .shapes import DOMAIN_ID, DOMAIN_NAME

SUPPORTED_METHODS = ("password", "application_credential", "token")


@dataclass
class Proven:
    """What the request proved: the user, and how (an application credential, or an earlier token)."""

    user: object
    methods: list[str]
    credential: ApplicationCredential | None = None
    token: TokenPrincipal | None = None


@dataclass
class Scope:
    project: Project | None = None
    domain: bool = False
    role: str | None = None


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValidationFailed(f"Invalid input for field '{where}': expecting an object.")
    return value


def _string(value, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise ValidationFailed(f"Invalid input for field '{where}': expecting a string of 1 to 255 characters.")
    return value


def _in_our_domain(domain, where: str) -> bool:
    domain = _object(domain, where)
    if "id" in domain:
        return _string(domain["id"], f"{where}.id") == DOMAIN_ID
    if "name" in domain:
        return _string(domain["name"], f"{where}.name").lower() == DOMAIN_NAME.lower()
    raise ValidationFailed(f"Invalid input for field '{where}': expecting an id or a name.")


def _throttled(exc: SignInThrottled):
    error = drf.Throttled(wait=exc.retry_after, detail=str(exc))
    return error


def proven_identity(request, identity) -> Proven:
    identity = _object(identity, "auth.identity")
    methods = identity.get("methods")
    if not isinstance(methods, list) or not methods or not all(isinstance(m, str) for m in methods):
        raise ValidationFailed("Invalid input for field 'auth.identity.methods': expecting a list of strings.")
    unsupported = [m for m in methods if m not in SUPPORTED_METHODS]
    if unsupported or len(methods) != 1:
        raise Unauthorized(f"Attempted to authenticate with an unsupported method: {', '.join(methods)[:200]}.")
    method = methods[0]
    payload = _object(identity.get(method), f"auth.identity.{method}")
    if method == "password":
        return Proven(user=_password(request, payload), methods=methods)
    if method == "application_credential":
        return _application_credential(request, payload)
    principal = token_validate(_string(payload.get("id"), "auth.identity.token.id"))
    if principal is None:
        raise Unauthorized()
    if principal.record.application_credential_id is not None:
        raise Forbidden("A token made with an application credential cannot be used to make another token.")
    return Proven(user=principal.user, methods=["token"], token=principal)


def _password(request, payload: dict):
    user = _object(payload.get("user"), "auth.identity.password.user")
    password = user.get("password")
    if not isinstance(password, str):
        raise ValidationFailed("Invalid input for field 'auth.identity.password.user.password'.")
    if "id" in user:
        username = _string(user["id"], "auth.identity.password.user.id")
        ours = True
    else:
        username = _string(user.get("name"), "auth.identity.password.user.name")
        ours = _in_our_domain(user.get("domain"), "auth.identity.password.user.domain")
    try:
        sign_in = SignIn(request, username=username)
        found = sign_in.authenticate(password) if ours else None
    except SignInThrottled as exc:
        raise _throttled(exc) from None
    if found is None:
        raise Unauthorized()
    return found


def _application_credential(request, payload: dict) -> Proven:
    address = client_address(request)
    if "id" in payload:
        key = _string(payload["id"], "auth.identity.application_credential.id")
        credentials = ApplicationCredential.objects.filter(pk=key)
    else:
        name = _string(payload.get("name"), "auth.identity.application_credential.name")
        user = _object(payload.get("user"), "auth.identity.application_credential.user")
        if "id" in user:
            username = _string(user["id"], "auth.identity.application_credential.user.id")
        else:
            username = _string(user.get("name"), "auth.identity.application_credential.user.name")
            if not _in_our_domain(user.get("domain"), "auth.identity.application_credential.user.domain"):
                username = ""
        key = f"{username}/{name}"
        credentials = ApplicationCredential.objects.filter(user__username=username, name=name)
    secret = payload.get("secret")
    if not isinstance(secret, str):
        raise ValidationFailed("Invalid input for field 'auth.identity.application_credential.secret'.")
    throttle_key = f"application-credential:{key}"[:255]
    try:
        sign_in_throttle_check(username=throttle_key, address=address)
    except SignInThrottled as exc:
        raise _throttled(exc) from None
    credential = credentials.select_related("user", "project").first()
    if not application_credential_check(credential=credential, secret=secret):
        sign_in_failure_record(username=throttle_key, address=address)
        raise Unauthorized()
    return Proven(user=credential.user, methods=["application_credential"], credential=credential)


def requested_scope(proven: Proven, scope) -> Scope:
    """The scope asked for (none: the credential's project, or unscoped), checked against the user's roles."""
    user = proven.user
    if proven.credential is not None:
        if scope is not None:
            raise Unauthorized("An application credential is already scoped to its project.")
        project = proven.credential.project
        role = lower_role(role_in_project(user, project), proven.credential.role)
        if role is None:
            raise Unauthorized()
        return Scope(project=project, role=role)
    if scope is None or scope == "unscoped":
        return Scope()
    scope = _object(scope, "auth.scope")
    if "project" in scope:
        wanted = _object(scope["project"], "auth.scope.project")
        if "id" in wanted:
            project = Project.objects.filter(pk=_string(wanted["id"], "auth.scope.project.id")).first()
        else:
            name = _string(wanted.get("name"), "auth.scope.project.name")
            ours = _in_our_domain(wanted.get("domain"), "auth.scope.project.domain")
            project = Project.objects.filter(name=name).first() if ours else None
        role = role_in_project(user, project) if project is not None else None
        if role is None:
            raise Unauthorized(f"User {user.get_username()} has no access to the project asked for.")
        return Scope(project=project, role=role)
    if "domain" in scope:
        if not _in_our_domain(scope["domain"], "auth.scope.domain"):
            raise Unauthorized(f"User {user.get_username()} has no access to the domain asked for.")
        is_admin = (
            getattr(user, "is_superuser", False)
            or Membership.objects.filter(user=user, role=Role.ADMIN, project__enabled=True).exists()
        )
        if not is_admin:
            raise Unauthorized(f"User {user.get_username()} has no access to the domain asked for.")
        return Scope(domain=True, role=Role.ADMIN)
    if "system" in scope:
        raise Unauthorized("System scope is not offered by this cloud: scope a token to a project.")
    raise ValidationFailed("Invalid input for field 'auth.scope': expecting a project or a domain.")


def active_user(username: str):
    return get_user_model().objects.filter(username=username, is_active=True).first()
