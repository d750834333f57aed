"""Who is asking, for which project, with which rights: resolved once per request."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from compute_tasks import request_ids
from portal.models import Membership, Project, Role


class ProjectScopedToken:
    """``request.auth`` for a token scoped to a project (Keystone's or the built-in identity's): subclasses
    carry ``project`` and ``role``, which stand for the caller's project and role whatever they ask for."""

    project: Project
    role: str


class NoProject(Exception):
    """The user has no role in the project asked for (or in any project)."""


class ProjectMismatch(NoProject):
    """The URL names another project than the one the caller's token is scoped to."""


@dataclass(frozen=True)
class RequestContext:
    user: AbstractBaseUser
    project: Project
    role: str
    # The id of the request being answered (compute_tasks.request_ids), or a new one outside any.
    request_id: str = field(default_factory=lambda: request_ids.current() or request_ids.new())

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN or bool(getattr(self.user, "is_superuser", False))

    @property
    def can_write(self) -> bool:
        return self.role in (Role.MEMBER, Role.ADMIN) or self.is_admin


def resolve_context(user: AbstractBaseUser, project_id: str | None = None) -> RequestContext:
    """The context for ``user`` in ``project_id`` (or their first project when none is named).

    Superusers may act in any project, as admins; everyone else needs a membership.
    """
    memberships = Membership.objects.select_related("project").filter(user=user, project__enabled=True)
    if project_id:
        membership = memberships.filter(project_id=project_id).first()
        if membership is None:
            if getattr(user, "is_superuser", False):
                project = Project.objects.filter(pk=project_id, enabled=True).first()
                if project is not None:
                    return RequestContext(user=user, project=project, role=Role.ADMIN)
            raise NoProject(f"User has no role in project {project_id}")
    else:
        membership = memberships.first()
        if membership is None:
            raise NoProject("User has no role in any project")
    return RequestContext(user=user, project=membership.project, role=membership.role)


def token_context(user: AbstractBaseUser, project: Project, role: str, project_id: str | None = None) -> RequestContext:
    """The context of a project-scoped token: its project and role, whatever the caller's memberships.

    A project named in the URL must be the token's own (as Nova checks it).
    """
    if project_id and project_id.replace("-", "") != project.pk.replace("-", ""):
        raise ProjectMismatch(
            f"Malformed request URL: URL's project_id '{project_id}' doesn't match the token's project_id "
            f"'{project.pk}'"
        )
    return RequestContext(user=user, project=project, role=role)


class _RecentScopes:
    """The project and role ``resolve_context`` found for a user (and the project asked for), kept in this
    process for a few seconds: bounded, thread-safe."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[object, str], tuple[Project, str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, str]) -> tuple[Project, str] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            project, role, until = entry
            if until < time.monotonic():
                del self._entries[key]
                return None
            return project, role

    def put(self, key: tuple[object, str], project: Project, role: str, ttl: float) -> None:
        with self._lock:
            self._entries[key] = (project, role, time.monotonic() + ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


recent_scopes = _RecentScopes()

# Bumped by every change to users, projects or memberships made in this process, so that what this
# process keeps of identities is read again at once here (other processes: within the TTL).
_identity_generation = [0]


def identity_generation() -> int:
    return _identity_generation[0]


def forget_recent_identities() -> None:
    recent_scopes.clear()
    _identity_generation[0] += 1


def resolve_context_recent(user: AbstractBaseUser, project_id: str | None = None) -> RequestContext:
    """``resolve_context`` for the compute and image APIs' password and session callers: the project and
    role found at most ``IDENTITY['PRINCIPAL_CACHE_TTL']`` seconds ago in this process (as for a token's),
    so a client polling its server is not re-read from the database on every request. A refusal is never
    kept: a membership added counts at once, one removed within that time."""
    ttl = settings.IDENTITY["PRINCIPAL_CACHE_TTL"]
    if ttl <= 0:
        return resolve_context(user, project_id)
    key = (user.pk, project_id or "")
    found = recent_scopes.get(key)
    if found is not None:
        project, role = found
        return RequestContext(user=user, project=project, role=role)
    ctx = resolve_context(user, project_id)
    recent_scopes.put(key, ctx.project, ctx.role, ttl)
    return ctx
