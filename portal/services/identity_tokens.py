"""Tokens of the built-in identity API: issued for a checked password or application credential,
validated from Django's cache, revoked with the user, membership or credential they stand for.

Invariants:
- A token is a random secret returned once; only its SHA-256 is stored (``IdentityToken.token_hash``).
- Validating a token costs a cache lookup (``identity-token:<sha256>``, kept at most
  ``IDENTITY['TOKEN_CACHE_TTL']`` seconds and never past the token's expiry) plus the queries that load
  its user, project and role. The identity API validates that way every time, so a deactivated user, a
  disabled project or a removed membership stops a token there at once.
- The compute and image APIs (``token_validate_recent``) check the token's record as above on every
  request but keep its user, project and role in the process for at most
  ``IDENTITY['PRINCIPAL_CACHE_TTL']`` seconds, as Keystone's middleware keeps a validated token: a client
  polling its server is not re-read from the database on every request. A change to the user, project or
  role reaches them within that time (at once in the process that made it: the change revokes tokens).
- Revoking writes ``revoked_at`` and deletes the cache entries (at once and again after commit), the
  process's kept principals included. A per-process cache forgets them only in the revoking process;
  others stop believing the token when their entry ends (the TTL).
- A token's role is the user's role in the project *now* (capped, for an application credential, by the
  role the credential was made with): a role lowered after issue is lowered for the token too.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from portal.auth.context import forget_recent_identities
from portal.models import ApplicationCredential, IdentityToken, Membership, Project, Role, secret_hash

ROLE_ORDER = (Role.READER, Role.MEMBER, Role.ADMIN)
_CACHE_PREFIX = "identity-token:"


@dataclass(frozen=True)
class TokenRecord:
    """What a token says, as cached: ids only, no models."""

    token_id: int
    audit_id: str
    user_id: int
    project_id: str | None
    domain_scoped: bool
    methods: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    application_credential_id: str | None
    application_credential_role: str | None


@dataclass(frozen=True)
class TokenPrincipal:
    """A valid token with its user, project and the portal role it grants now (None when unscoped)."""

    record: TokenRecord
    user: AbstractBaseUser
    project: Project | None
    role: str | None


def lower_role(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return None
    return min(a, b, key=ROLE_ORDER.index)


def role_in_project(user: AbstractBaseUser, project: Project) -> str | None:
    """The user's role in an enabled project (superusers are admins everywhere), or None."""
    if not project.enabled or not user.is_active:
        return None
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


def _cache_key(token_hash: str) -> str:
    return f"{_CACHE_PREFIX}{token_hash}"


def _record(token: IdentityToken) -> TokenRecord:
    credential = token.application_credential
    return TokenRecord(
        token_id=token.pk,
        audit_id=token.audit_id,
        user_id=token.user_id,
        project_id=token.project_id,
        domain_scoped=token.domain_scoped,
        methods=tuple(token.methods.split(",")),
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        application_credential_id=credential.pk if credential else None,
        application_credential_role=credential.role if credential else None,
    )


def token_issue(
    *,
    user: AbstractBaseUser,
    project: Project | None,
    domain_scoped: bool = False,
    methods: list[str],
    application_credential: ApplicationCredential | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, TokenRecord]:
    """A new token (the secret, returned this once) and its record. ``expires_at`` may only shorten the
    configured lifetime (a token made from another never outlives it)."""
    now = timezone.now()
    deadline = now + timedelta(seconds=settings.IDENTITY["TOKEN_TTL"])
    if application_credential is not None and application_credential.expires_at is not None:
        deadline = min(deadline, application_credential.expires_at)
    if expires_at is not None:
        deadline = min(deadline, expires_at)
    secret = secrets.token_urlsafe(48)
    token = IdentityToken.objects.create(
        token_hash=secret_hash(secret),
        audit_id=uuid.uuid4().hex[:22],
        user=user,
        project=project,
        domain_scoped=domain_scoped,
        application_credential=application_credential,
        methods=",".join(methods),
        issued_at=now,
        expires_at=deadline,
    )
    return secret, _record(token)


def token_record(secret: str) -> TokenRecord | None:
    """What an unexpired, unrevoked token says: from the cache, else from the database (then cached)."""
    token_hash = secret_hash(secret)
    now = timezone.now()
    record = cache.get(_cache_key(token_hash))
    if record is None:
        token = (
            IdentityToken.objects.select_related("application_credential")
            .filter(token_hash=token_hash, revoked_at=None, expires_at__gt=now)
            .first()
        )
        if token is None:
            return None
        record = _record(token)
        ttl = min(settings.IDENTITY["TOKEN_CACHE_TTL"], (record.expires_at - now).total_seconds())
        if ttl > 0:
            cache.set(_cache_key(token_hash), record, timeout=ttl)
    if record.expires_at <= now:
        return None
    return record


def token_principal(record: TokenRecord) -> TokenPrincipal | None:
    """The record's user, project and current role; None when the user, project or role is gone."""
    user = get_user_model().objects.filter(pk=record.user_id, is_active=True).first()
    if user is None:
        return None
    if record.project_id is None:
        return TokenPrincipal(record=record, user=user, project=None, role=None)
    project = Project.objects.filter(pk=record.project_id, enabled=True).first()
    if project is None:
        return None
    role = role_in_project(user, project)
    if record.application_credential_id is not None:
        role = lower_role(role, record.application_credential_role)
    if role is None:
        return None
    return TokenPrincipal(record=record, user=user, project=project, role=role)


def token_validate(secret: str) -> TokenPrincipal | None:
    record = token_record(secret)
    return token_principal(record) if record is not None else None


class _RecentPrincipals:
    """The user, project and role of recently validated tokens, kept in this process for a few seconds,
    each with the token record it was found for: bounded, thread-safe."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[TokenPrincipal, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token_hash: str, record: TokenRecord) -> TokenPrincipal | None:
        with self._lock:
            entry = self._entries.get(token_hash)
            if entry is None:
                return None
            principal, until = entry
            if until < time.monotonic() or principal.record != record:
                del self._entries[token_hash]
                return None
            return principal

    def put(self, token_hash: str, principal: TokenPrincipal, ttl: float) -> None:
        with self._lock:
            self._entries[token_hash] = (principal, time.monotonic() + ttl)
            self._entries.move_to_end(token_hash)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, token_hashes) -> None:
        with self._lock:
            for token_hash in token_hashes:
                self._entries.pop(token_hash, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


recent_principals = _RecentPrincipals()


def token_validate_recent(secret: str) -> TokenPrincipal | None:
    """``token_validate`` for the compute and image APIs: the token itself is checked as always (its
    record, from the cache, unrevoked and unexpired), its user, project and role are those found at most
    ``IDENTITY['PRINCIPAL_CACHE_TTL']`` seconds ago in this process for that same record."""
    record = token_record(secret)
    if record is None:
        return None
    ttl = settings.IDENTITY["PRINCIPAL_CACHE_TTL"]
    token_hash = secret_hash(secret)
    principal = recent_principals.get(token_hash, record) if ttl > 0 else None
    if principal is None:
        principal = token_principal(record)
        if principal is not None and ttl > 0:
            recent_principals.put(token_hash, principal, ttl)
    return principal


def _revoke(tokens) -> int:
    """Marks ``tokens`` (a queryset) revoked and forgets them in the cache once committed."""
    now = timezone.now()
    with transaction.atomic():
        hashes = list(tokens.filter(revoked_at=None, expires_at__gt=now).values_list("token_hash", flat=True))
        if not hashes:
            return 0
        IdentityToken.objects.filter(token_hash__in=hashes).update(revoked_at=now)
        keys = [_cache_key(h) for h in hashes]
        recent_principals.forget(hashes)
        transaction.on_commit(lambda: recent_principals.forget(hashes))
        # Now, and again after commit: a request validating meanwhile may have cached the row as it was.
        cache.delete_many(keys)
        transaction.on_commit(lambda: cache.delete_many(keys))
    return len(hashes)


def token_revoke(*, secret: str) -> bool:
    """Revokes one token; False when it was not valid."""
    return _revoke(IdentityToken.objects.filter(token_hash=secret_hash(secret))) > 0


def forget_identities(**_: object) -> None:
    """What this process keeps of identities for password and session callers is read again, now and once
    the current transaction commits (a request in between may have kept the rows as they were)."""
    for forget in (forget_recent_identities, recent_principals.clear):
        forget()
        transaction.on_commit(forget)


def identity_tokens_revoke(*, user: AbstractBaseUser | None = None, project: Project | None = None) -> int:
    """Revokes the tokens of ``user`` (in ``project`` only, when given), or of everyone in ``project``.

    Called for every change to a user, project or membership: what this process keeps of identities for
    password and session callers is read again too, now and once committed."""
    forget_identities()
    tokens = IdentityToken.objects.all()
    if user is not None:
        tokens = tokens.filter(user=user)
    if project is not None:
        tokens = tokens.filter(project=project)
    return _revoke(tokens)


def identity_tokens_purge_expired() -> int:
    """Deletes rows of tokens that expired (revoked or not): nothing can use them any more."""
    deleted, _ = IdentityToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


# --- application credentials ------------------------------------------------------------------------------


class ApplicationCredentialConflict(Exception):
    """The user already has an application credential of that name."""


def application_credential_create(
    *,
    user: AbstractBaseUser,
    project: Project,
    role: str,
    name: str,
    description: str = "",
    secret: str | None = None,
    expires_at: datetime | None = None,
    unrestricted: bool = False,
) -> tuple[ApplicationCredential, str]:
    """A new application credential and its secret (generated unless given), returned this once."""
    secret = secret or secrets.token_urlsafe(48)
    with transaction.atomic():
        if ApplicationCredential.objects.select_for_update().filter(user=user, name=name).exists():
            raise ApplicationCredentialConflict(f"An application credential named {name} already exists.")
        credential = ApplicationCredential.objects.create(
            id=uuid.uuid4().hex,
            user=user,
            project=project,
            role=role,
            name=name,
            description=description,
            secret_hash=secret_hash(secret),
            expires_at=expires_at,
            unrestricted=unrestricted,
        )
    return credential, secret


def application_credential_delete(*, credential: ApplicationCredential) -> None:
    """The credential is gone, and every token made with it revoked."""
    with transaction.atomic():
        _revoke(IdentityToken.objects.filter(application_credential=credential))
        ApplicationCredential.objects.filter(pk=credential.pk).delete()


def application_credential_check(*, credential: ApplicationCredential | None, secret: str) -> bool:
    """Whether ``secret`` is the credential's and the credential is still usable (its user active, unexpired).

    Secrets are random (or, when a user chose one, checked as given): a SHA-256 compared in constant time.
    """
    if credential is None:
        secrets.compare_digest(secret_hash(secret), secret_hash(""))
        return False
    if not secrets.compare_digest(credential.secret_hash, secret_hash(secret)):
        return False
    if credential.expires_at is not None and credential.expires_at <= timezone.now():
        return False
    return credential.user.is_active
