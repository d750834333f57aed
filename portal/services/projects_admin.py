"""Projects, memberships and users as operators change them in the admin and through the built-in identity
API (Keystone's mirror has its own writes).

A role taken away takes its consoles with it: the user's console tokens that the old role allowed are
revoked, and the console proxy closes their open sessions at its next check. It takes the user's identity
tokens for that project too (``identity_tokens.py``), as does a deactivated user or a disabled project.

Deleting never loses anything silently:
- A project that still owns servers (not deleted), networks, subnets, ports, routers, floating IPs, images,
  server groups or security groups other than its default one is refused (``ProjectInUse``).
- Otherwise its memberships and application credentials go (their tokens revoked). The row itself is
  deleted when nothing but the project's own settings (quotas, flavor access, its default security group)
  would go with it; when history refers to it (deleted servers and images, migrations, instance actions)
  it is kept, disabled and marked deleted (``Project.deleted_at``), and its name stays taken.
- A user is deleted outright only when nothing but their identity rows (memberships, tokens, application
  credentials, console tokens) goes with them; a user with servers, key pairs, server groups or other
  history is kept, inactive, without a usable password or memberships, marked deleted
  (``UserIdentity.deleted_at``), and their name stays taken (it is the id their history shows).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, router, transaction
from django.db.models import ProtectedError, QuerySet, RestrictedError
from django.db.models.deletion import Collector
from django.utils import timezone

from portal.models import (
    ApplicationCredential,
    ConsoleSession,
    ConsoleToken,
    FlavorAccess,
    FloatingIP,
    IdentityToken,
    Image,
    Instance,
    Membership,
    Network,
    Port,
    Project,
    QuotaLimit,
    Role,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    ServerGroup,
    Subnet,
    UserIdentity,
)
from portal.states import VmState

from .consoles import console_tokens_revoke, console_tokens_revoke_for_role
from .identity_tokens import ROLE_ORDER, identity_tokens_revoke


class ProjectConflict(Exception):
    """The name is taken by another project."""


class ProjectInUse(Exception):
    """The project still owns resources that deleting it would orphan or destroy."""


class UserConflict(Exception):
    """The name is taken by another user (a deleted one whose history is kept included)."""


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


def membership_grant(*, project: Project, user, role: str) -> Membership:
    """Give ``user`` ``role`` in ``project`` unless they already hold it or a role that implies it (an admin is
    also member and reader): a user has one role per project here, so a weaker grant never lowers it."""
    with transaction.atomic():
        held = (
            Membership.objects.select_for_update().filter(project=project, user=user).values_list("role", flat=True)
        ).first()
        if held is not None and ROLE_ORDER.index(held) >= ROLE_ORDER.index(role):
            return Membership.objects.get(project=project, user=user)
        return membership_set(project=project, user=user, role=role)


# --- deleting ------------------------------------------------------------------------------------------

_PROJECT_OWNED = (
    ("servers", lambda p: Instance.objects.filter(project=p).exclude(vm_state=VmState.DELETED)),
    ("networks", lambda p: Network.objects.filter(project=p)),
    ("subnets", lambda p: Subnet.objects.filter(project=p)),
    ("ports", lambda p: Port.objects.filter(project=p)),
    ("routers", lambda p: Router.objects.filter(project=p)),
    ("floating IPs", lambda p: FloatingIP.objects.filter(project=p)),
    ("images", lambda p: Image.objects.filter(owner=p).exclude(status=Image.Status.DELETED)),
    ("server groups", lambda p: ServerGroup.objects.filter(project=p)),
    ("security groups", lambda p: SecurityGroup.objects.filter(project=p, is_default=False)),
    # Its default group goes with it: nothing of another project may lean on it.
    (
        "rules of other projects naming its security groups",
        lambda p: SecurityGroupRule.objects.filter(remote_group__project=p).exclude(project=p),
    ),
    (
        "ports of other projects in its security groups",
        lambda p: Port.objects.filter(security_groups__project=p).exclude(project=p),
    ),
)

# What may be deleted with a project or a user: their identity rows and a project's own settings.
_IDENTITY_ROWS = {Membership, IdentityToken, ApplicationCredential, ConsoleToken, ConsoleSession, UserIdentity}
_PROJECT_SETTINGS = {QuotaLimit, FlavorAccess, SecurityGroup, SecurityGroupRule}


def _deletes_only(obj, allowed: set) -> bool:
    """Whether deleting ``obj`` would take nothing with it but rows of the ``allowed`` models (and Django's
    own link tables), would clear no reference to it elsewhere (a deleted image's owner, who did an
    instance action: history), and nothing protects it."""
    collector = Collector(using=router.db_for_write(type(obj)))
    try:
        collector.collect([obj])
    except (ProtectedError, RestrictedError):
        return False
    taken = {model for model, rows in collector.data.items() if rows}
    taken |= {query.model for query in collector.fast_deletes if query.exists()}
    taken.discard(type(obj))
    if not all(model in allowed or model._meta.auto_created for model in taken):
        return False
    for (field, _value), batches in collector.field_updates.items():
        if field.model in allowed:
            continue
        if any(batch.exists() if isinstance(batch, QuerySet) else len(batch) for batch in batches):
            return False
    return True


def project_owned_resources(project: Project) -> list[str]:
    """What the project still owns that stops its deletion, as ``"servers (2)"`` phrases."""
    found = []
    for name, query in _PROJECT_OWNED:
        count = query(project).count()
        if count:
            found.append(f"{name} ({count})")
    return found


def project_delete(*, project: Project) -> bool:
    """Delete ``project``: refused (``ProjectInUse``) while it owns resources; otherwise its memberships,
    application credentials and tokens go, and the row is deleted, or kept and marked deleted when history
    refers to it. Returns whether the row itself was deleted."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)
        owned = project_owned_resources(project)
        if owned:
            raise ProjectInUse(f"Project {project.name} still owns {', '.join(owned)}: delete them first.")
        for membership in Membership.objects.filter(project=project).select_related("user"):
            membership_remove(membership=membership)
        identity_tokens_revoke(project=project)
        ApplicationCredential.objects.filter(project=project).delete()
        if _deletes_only(project, _IDENTITY_ROWS | _PROJECT_SETTINGS):
            project.delete()
            return True
        Project.objects.filter(pk=project.pk).update(enabled=False, deleted_at=timezone.now())
        return False


def user_delete(*, user: AbstractBaseUser) -> bool:
    """Delete ``user``: every token, membership, application credential and console token goes at once; the
    row is deleted too unless history refers to it (then kept inactive and marked deleted). Returns whether
    the row itself was deleted."""
    with transaction.atomic():
        user_deactivate(user=user)
        for membership in Membership.objects.filter(user=user).select_related("project"):
            membership_remove(membership=membership)
        ApplicationCredential.objects.filter(user=user).delete()
        if _deletes_only(user, _IDENTITY_ROWS):
            get_user_model().objects.filter(pk=user.pk).delete()
            return True
        user.set_unusable_password()
        get_user_model().objects.filter(pk=user.pk).update(password=user.password, is_active=False)
        UserIdentity.objects.update_or_create(user=user, defaults={"deleted_at": timezone.now()})
        return False


# --- users ---------------------------------------------------------------------------------------------

_UNSET = object()


def user_create(
    *,
    name: str,
    password: str | None,
    email: str = "",
    description: str = "",
    default_project: Project | None = None,
    enabled: bool = True,
) -> AbstractBaseUser:
    """A local user, their password hashed as every local user's (no password: none can sign in)."""
    users = get_user_model()
    try:
        with transaction.atomic():
            if users.objects.filter(username=name).exists():
                raise UserConflict(f"Duplicate entry found with name {name} at domain ID default.")
            user = users(username=name, email=email, is_active=enabled)
            if password is None:
                user.set_unusable_password()
            else:
                user.set_password(password)
            user.save()
            if description or default_project is not None:
                UserIdentity.objects.create(user=user, description=description, default_project=default_project)
    except IntegrityError:
        raise UserConflict(f"Duplicate entry found with name {name} at domain ID default.") from None
    return user


def user_update(
    *,
    user: AbstractBaseUser,
    password=_UNSET,
    email=_UNSET,
    description=_UNSET,
    default_project=_UNSET,
    enabled=_UNSET,
) -> AbstractBaseUser:
    """Change what is given. A new password or disabling revokes the user's tokens (and consoles)."""
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        if email is not _UNSET:
            user.email = email
        if password is not _UNSET:
            if password is None:
                user.set_unusable_password()
            else:
                user.set_password(password)
        if enabled is not _UNSET and enabled and not user.is_active:
            user.is_active = True
        user.save()
        if password is not _UNSET:
            identity_tokens_revoke(user=user)
        if enabled is not _UNSET and not enabled and user.is_active:
            user_deactivate(user=user)
        if description is not _UNSET or default_project is not _UNSET:
            identity, _ = UserIdentity.objects.get_or_create(user=user)
            if description is not _UNSET:
                identity.description = description
            if default_project is not _UNSET:
                identity.default_project = default_project
            identity.save()
    return user
