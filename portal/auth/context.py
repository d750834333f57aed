"""Who is asking, for which project, with which rights: resolved once per request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser

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
    request_id: str = field(default_factory=lambda: f"req-{uuid.uuid4()}")

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
