"""Console tokens: random, stored only as their SHA-256, short-lived, bound to instance and user.

A token holds no address: the console proxy learns where the screen is when it connects (see
``selectors.consoles.console_target``). Deleting a user's tokens is how their rights to consoles end: a
session opened with a deleted token is closed by the proxy at its next check.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from portal.auth.context import RequestContext
from portal.models import ConsoleToken, Instance, Membership, Project
from portal.selectors.consoles import instance_has_console

from .lifecycle import StateConflict


class ConsoleForbidden(Exception):
    """The caller's role may not open consoles; the API answers 403."""


def console_permitted(ctx: RequestContext) -> bool:
    """Whether the caller may open a console in their project.

    A console is the server's keyboard, so it takes the right to act on the project's servers: the API's
    rule for every server action (``can_write``). Readers never get one.
    """
    return ctx.can_write


def console_url(token: str) -> str:
    # noVNC reads the websocket path from ``path``; the proxy reads the token from that path's query.
    return f"{settings.CONSOLE['PROXY_BASE_URL']}?path={quote('?token=' + token, safe='')}"


def console_create(*, ctx: RequestContext, instance: Instance, console_type: str = "novnc") -> str:
    """A new console token for the instance's screen; returns the URL, the only place it appears."""
    token, _expires_at = console_token_create(ctx=ctx, instance=instance, console_type=console_type)
    return console_url(token)


def console_token_create(
    *, ctx: RequestContext, instance: Instance, console_type: str = "novnc"
) -> tuple[str, datetime]:
    """A new console token and its expiry, for a page that builds the proxy URL itself (the portal's).

    Raises ConsoleForbidden for a role that may not open consoles, StateConflict when the instance has
    no console now.
    """
    if not console_permitted(ctx):
        raise ConsoleForbidden("Policy doesn't allow this operation to be performed: your role is read-only.")
    if not instance_has_console(instance):
        raise StateConflict(
            f"Instance {instance.uuid} is not ready for a console (vm_state {instance.vm_state}, "
            f"task_state {instance.task_state})"
        )
    token = secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(seconds=settings.CONSOLE["TOKEN_TTL"])
    with transaction.atomic():
        if not _role_still_held(ctx):
            raise ConsoleForbidden("Your role in this project changed while the console was asked for.")
        ConsoleToken.objects.create(
            token_hash=ConsoleToken.hash(token),
            instance=instance,
            user=ctx.user,
            console_type=console_type,
            expires_at=expires_at,
        )
    return token, expires_at


def _role_still_held(ctx: RequestContext) -> bool:
    """Whether the role ``ctx`` was resolved with is still the user's, read under the membership's lock.

    The services that change a role lock the same row, so a change either waits for this token and then
    revokes it, or is seen here: a request that began before the change cannot leave a token behind.
    """
    current = (
        Membership.objects.select_for_update()
        .filter(user=ctx.user, project=ctx.project)
        .values_list("role", flat=True)
        .first()
    )
    if current is None:
        return bool(getattr(ctx.user, "is_superuser", False))  # a superuser acts anywhere without a role
    return current == ctx.role


def console_tokens_revoke(*, user: AbstractBaseUser, project: Project | None = None) -> int:
    """Delete the user's console tokens on ``project``'s instances (every instance's when None).

    Their open sessions lose their token, and the proxy's next check closes them; the tokens open
    nothing more. Returns how many tokens were deleted.
    """
    tokens = ConsoleToken.objects.filter(user=user)
    if project is not None:
        tokens = tokens.filter(instance__project=project)
    _total, deleted = tokens.delete()
    return deleted.get(ConsoleToken._meta.label, 0)


def console_tokens_revoke_for_role(
    *, user: AbstractBaseUser, project: Project, before: str | None, after: str | None
) -> int:
    """Revoke the console tokens a change of ``user``'s role in ``project`` takes the right to.

    ``before``/``after`` are the roles (None: no membership). Losing the admin role revokes the user's
    tokens everywhere, since an admin opens consoles of every project's servers; losing the right to act
    in the project revokes those on its instances. Returns how many tokens were deleted.
    """
    was = RequestContext(user=user, project=project, role=before or "")
    now = RequestContext(user=user, project=project, role=after or "")
    if was.is_admin and not now.is_admin:
        return console_tokens_revoke(user=user)
    if console_permitted(was) and not console_permitted(now):
        return console_tokens_revoke(user=user, project=project)
    return 0
