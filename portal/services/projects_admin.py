"""Projects, memberships and users as operators change them in the admin (Keystone's mirror has its own writes).

A role taken away takes its consoles with it: the user's console tokens that the old role allowed are
revoked, and the console proxy closes their open sessions at its next check. It takes the user's identity
tokens for that project too (``identity_tokens.py``), as does a deactivated user or a disabled project.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from portal.models import Membership, Project, Role

from .consoles import console_tokens_revoke, console_tokens_revoke_for_role
from .identity_tokens import ROLE_ORDER, identity_tokens_revoke


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
            if not enabled:
                identity_tokens_revoke(project=project)
    except IntegrityError:
        raise ProjectConflict(f"A project named {name} already exists.") from None
    project.refresh_from_db()
    return project


def membership_set(*, project: Project, user, role: str) -> Membership:
    """Give ``user`` ``role`` in ``project`` (replacing the role they had there)."""
    if role not in Role.values:
        raise ValueError(f"Unknown role {role}")
    with transaction.atomic():
        before = (
            Membership.objects.select_for_update().filter(project=project, user=user).values_list("role", flat=True)
        ).first()
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
        console_tokens_revoke_for_role(user=user, project=project, before=before, after=role)
        if before is not None and ROLE_ORDER.index(role) < ROLE_ORDER.index(before):
            identity_tokens_revoke(user=user, project=project)
    return membership


def membership_remove(*, membership: Membership) -> None:
    with transaction.atomic():
        removed = (
            Membership.objects.select_for_update(of=("self",))
            .select_related("user", "project")
            .filter(pk=membership.pk)
            .first()
        )
        if removed is None:
            return
        Membership.objects.filter(pk=removed.pk).delete()
        identity_tokens_revoke(user=removed.user, project=removed.project)
        console_tokens_revoke_for_role(user=removed.user, project=removed.project, before=removed.role, after=None)


def user_deactivate(*, user: AbstractBaseUser) -> None:
    """The user may no longer sign in or use anything; their console tokens are revoked with it."""
    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        console_tokens_revoke(user=user)
        identity_tokens_revoke(user=user)
    user.is_active = False
