"""Projects and memberships as operators change them in the admin (Keystone's mirror has its own writes)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from portal.models import Membership, Project, Role


class ProjectConflict(Exception):
    """The name is taken by another project."""


def project_save(*, project: Project | None, name: str, description: str = "", enabled: bool = True) -> Project:
    """Create a project (``project`` None) or change one's name, description and whether it is enabled."""
    name = name.strip()
    try:
        with transaction.atomic():
            others = Project.objects.filter(name=name)
            if project is not None:
                others = others.exclude(pk=project.pk)
            if others.exists():
                raise ProjectConflict(f"A project named {name} already exists.")
            if project is None:
                return Project.objects.create(name=name, description=description, enabled=enabled)
            Project.objects.filter(pk=project.pk).update(name=name, description=description, enabled=enabled)
    except IntegrityError:
        raise ProjectConflict(f"A project named {name} already exists.") from None
    project.refresh_from_db()
    return project


def membership_set(*, project: Project, user, role: str) -> Membership:
    """Give ``user`` ``role`` in ``project`` (replacing the role they had there)."""
    if role not in Role.values:
        raise ValueError(f"Unknown role {role}")
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


def membership_remove(*, membership: Membership) -> None:
    with transaction.atomic():
        Membership.objects.filter(pk=membership.pk).delete()
