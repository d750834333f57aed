"""Console tokens: random, stored only as their SHA-256, short-lived, bound to instance and user.

A token holds no address: the console proxy learns where the screen is when it connects (see
``selectors.consoles.console_target``).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.utils import timezone

from portal.auth.context import RequestContext
from portal.models import ConsoleToken, Instance
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
    ConsoleToken.objects.create(
        token_hash=ConsoleToken.hash(token),
        instance=instance,
        user=ctx.user,
        console_type=console_type,
        expires_at=expires_at,
    )
    return token, expires_at
