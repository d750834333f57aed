"""Keystone's users, projects and roles, mirrored into the portal's own on first sight.

A Keystone project becomes a ``Project`` with the same id; a Keystone user becomes a Django user whose
``username`` is the Keystone user id (``first_name`` holds the Keystone name) and whose password is
unusable, so only Keystone can sign them in; their role in a project becomes a ``Membership``. Keystone
stays the authority: every token and every portal sign-in brings the mirror up to date, and a role it no
longer grants takes the user's console tokens (and so their open console sessions) with it.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from portal.models import Membership, Project

from .consoles import console_tokens_revoke_for_role

log = logging.getLogger(__name__)


class LocalUserConflict(Exception):
    """A local (password) user already has the name a Keystone user maps to; the two are never merged."""


def _name_candidates(name: str, domain: str | None, project_id: str) -> list[str]:
    qualified = f"{name}@{domain or 'keystone'}"
    return [c[:255] for c in (name, qualified, f"{qualified}-{project_id[:8]}", project_id)]


def _project_name(name: str, domain: str | None, project_id: str) -> str:
    """``name`` if no other project has it, else one qualified by the domain, else by the id."""
    candidates = _name_candidates(name, domain, project_id)
    taken = set(Project.objects.filter(name__in=candidates).exclude(pk=project_id).values_list("name", flat=True))
    return next(c for c in candidates if c not in taken)


def _mirrors(project: Project, name: str, domain: str | None) -> bool:
    """Whether the project's name is one of those Keystone project ``name`` may map to."""
    return project.name in _name_candidates(name, domain, project.pk)


def keystone_project_sync(*, project_id: str, name: str, domain: str | None) -> Project:
    """The portal project mirroring Keystone project ``project_id``, created or renamed as needed."""
    with transaction.atomic():
        project = Project.objects.select_for_update().filter(pk=project_id).first()
        if project is not None:
            if not _mirrors(project, name, domain):
                project.name = _project_name(name, domain, project_id)
                project.save(update_fields=["name"])
            return project
    try:
        with transaction.atomic():
            return Project.objects.create(
                id=project_id, name=_project_name(name, domain, project_id), description=f"Keystone project {name}"
            )
    except IntegrityError:  # created by a concurrent request meanwhile
        return Project.objects.get(pk=project_id)


def keystone_user_sync(*, user_id: str, name: str) -> AbstractBaseUser:
    """The Django user mirroring Keystone user ``user_id``: created with an unusable password."""
    User = get_user_model()  # noqa: N806
    user = User.objects.filter(username=user_id).first()
    if user is None:
        try:
            with transaction.atomic():
                user = User(username=user_id, first_name=name[:150])
                user.set_unusable_password()
                user.save()
                log.info("Keystone user %s (%s) seen for the first time", name, user_id)
                return user
        except IntegrityError:
            user = User.objects.get(username=user_id)
    if user.has_usable_password():
        raise LocalUserConflict(f"a local user is named {user_id}")
    if user.first_name != name[:150]:
        user.first_name = name[:150]
        user.save(update_fields=["first_name"])
    return user


def keystone_membership_sync(*, user: AbstractBaseUser, project: Project, role: str | None) -> Membership | None:
    """The user's membership in ``project`` set to ``role``; with no role, removed."""
    with transaction.atomic():
        before = (
            Membership.objects.select_for_update().filter(user=user, project=project).values_list("role", flat=True)
        ).first()
        if role is None:
            Membership.objects.filter(user=user, project=project).delete()
            membership = None
        else:
            membership, created = Membership.objects.get_or_create(user=user, project=project, defaults={"role": role})
            if not created and membership.role != role:
                Membership.objects.filter(pk=membership.pk).update(role=role)
                membership.role = role
        console_tokens_revoke_for_role(user=user, project=project, before=before, after=role)
    return membership


def keystone_principal_sync(
    *, user_id: str, user_name: str, project_id: str, project_name: str, project_domain: str | None, role: str | None
) -> Membership | None:
    """The membership a project-scoped token stands for, mirrored; one query when nothing changed."""
    membership = (
        Membership.objects.select_related("user", "project")
        .filter(user__username=user_id, project_id=project_id)
        .first()
    )
    if (
        membership is not None
        and membership.role == role
        and membership.user.first_name == user_name[:150]
        and _mirrors(membership.project, project_name, project_domain)
    ):
        return membership
    user = keystone_user_sync(user_id=user_id, name=user_name)
    project = keystone_project_sync(project_id=project_id, name=project_name, domain=project_domain)
    membership = keystone_membership_sync(user=user, project=project, role=role)
    if membership is not None:
        membership.user, membership.project = user, project
    return membership


def keystone_sign_in_sync(
    *, user_id: str, user_name: str, projects: list[tuple[str, str, str | None, str | None]]
) -> AbstractBaseUser:
    """The user after a portal sign-in, with exactly the memberships Keystone gave them.

    ``projects`` holds ``(project_id, project_name, project_domain, role)`` for each project the user has a
    role in (``role`` None when none of their roles means anything here).
    """
    user = keystone_user_sync(user_id=user_id, name=user_name)
    kept = []
    for project_id, project_name, project_domain, role in projects:
        project = keystone_project_sync(project_id=project_id, name=project_name, domain=project_domain)
        if keystone_membership_sync(user=user, project=project, role=role) is not None:
            kept.append(project_id)
    with transaction.atomic():
        gone = list(
            Membership.objects.select_for_update(of=("self",))
            .select_related("project")
            .filter(user=user)
            .exclude(project_id__in=kept)
        )
        Membership.objects.filter(pk__in=[m.pk for m in gone]).delete()
        for membership in gone:
            console_tokens_revoke_for_role(user=user, project=membership.project, before=membership.role, after=None)
    return user
