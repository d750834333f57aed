"""Console sessions: a browser connected to an instance's screen through the console proxy.

The proxy holds no database. It reports a session's opening (with the token it was opened with), checks
in every few seconds while the session lasts, and reports its end, all over HTTP to the internal
consoleauth endpoints. An administrator ends a session by marking it; the proxy learns it at its next
check and closes the websocket and the VNC connection. Opening and ending a session are recorded in the
instance's action log as a ``console`` action with events.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from compute_tasks import request_ids
from portal.models import ConsoleSession, ConsoleToken, InstanceAction
from portal.selectors.consoles import instance_has_console
from portal.states import VmState

from . import lifecycle

MAX_CLIENT_LENGTH = 255
MAX_REASON_LENGTH = 255


class SessionRefused(Exception):
    """The proxy may not open a session with this token; ``status`` is the internal API's answer."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def stale_before():
    """Sessions not seen since this moment lost their proxy."""
    return timezone.now() - timedelta(seconds=settings.CONSOLE["SESSION_STALE_AFTER"])


def console_session_open(*, token: str, client: str, max_sessions: int) -> ConsoleSession:
    """Record a session for a valid token, unless the token already has ``max_sessions`` open ones.

    The token's row is locked while its open sessions are counted, so two proxies (or two forked
    handlers of one) racing with the same token cannot both get past the limit.
    """
    if not token or len(token) > 256:
        raise SessionRefused("unknown or expired token", status=404)
    now = timezone.now()
    with transaction.atomic():
        console_token = (
            ConsoleToken.objects.select_for_update(of=("self",))
            .select_related("instance", "user")
            .filter(token_hash=ConsoleToken.hash(token), expires_at__gt=now, user__is_active=True)
            .first()
        )
        if console_token is None or not instance_has_console(console_token.instance):
            raise SessionRefused("unknown or expired token", status=404)
        _close_stale(ConsoleSession.objects.filter(token=console_token))
        open_count = ConsoleSession.objects.filter(token=console_token, closed_at__isnull=True).count()
        if open_count >= max_sessions:
            raise SessionRefused(
                f"the token already has {open_count} open console session(s) (at most {max_sessions})", status=409
            )
        instance = console_token.instance
        action = InstanceAction.objects.create(
            instance=instance,
            action="console",
            request_id=request_ids.current() or request_ids.new(),
            user=console_token.user,
            project=instance.project,
        )
        client = client[:MAX_CLIENT_LENGTH]
        lifecycle.record_event(action, "console_open", details=f"{console_token.console_type} from {client}")
        return ConsoleSession.objects.create(
            token=console_token,
            instance=instance,
            user=console_token.user,
            client=client,
            last_seen_at=now,
            action=action,
        )


def console_session_check(*, session_id: int) -> str | None:
    """The proxy checks in: record that the session lives, and say why it must close (None: it may go on)."""
    now = timezone.now()
    with transaction.atomic():
        session = (
            ConsoleSession.objects.select_for_update(of=("self",))
            .select_related("instance", "user")
            .filter(pk=session_id)
            .first()
        )
        if session is None:
            return "the session is unknown"
        if session.closed_at is not None:
            return session.closed_reason or "the session was closed"
        ConsoleSession.objects.filter(pk=session.pk).update(last_seen_at=now)
        if session.close_requested:
            return session.closed_reason or "ended by an administrator"
        if session.token_id is None:
            return "the console token was revoked"
        if not session.user.is_active:
            # user_deactivate revokes the tokens too; this catches a user deactivated around it (the shell).
            return "the user was deactivated"
        if session.instance.vm_state != VmState.ACTIVE:
            return "the instance is no longer running"
    return None


def console_session_close(*, session_id: int, reason: str) -> ConsoleSession | None:
    """The proxy closed the session. Idempotent: a second report changes nothing."""
    with transaction.atomic():
        session = ConsoleSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None or session.closed_at is not None:
            return session
        _close(session, reason)
    return session


def console_session_end(*, session: ConsoleSession, ended_by: AbstractBaseUser) -> bool:
    """An administrator ends a session; the proxy closes it at its next check. False if already over."""
    with transaction.atomic():
        locked = ConsoleSession.objects.select_for_update().get(pk=session.pk)
        if locked.closed_at is not None or locked.close_requested:
            return False
        reason = f"ended by {ended_by.get_username()}"
        ConsoleSession.objects.filter(pk=locked.pk).update(close_requested=True, closed_reason=reason)
        action = InstanceAction.objects.filter(pk=locked.action_id).first()
        lifecycle.record_event(action, "console_end_requested", details=reason)
    session.refresh_from_db()
    return True


def console_sessions_close_stale() -> int:
    """Close every session whose proxy stopped checking in; returns how many."""
    with transaction.atomic():
        return _close_stale(ConsoleSession.objects.all())


def _close_stale(sessions) -> int:
    stale = list(
        sessions.select_for_update(of=("self",)).filter(closed_at__isnull=True, last_seen_at__lt=stale_before())
    )
    for session in stale:
        _close(session, "the console proxy stopped reporting the session")
    return len(stale)


def _close(session: ConsoleSession, reason: str) -> None:
    reason = reason.strip()[:MAX_REASON_LENGTH] or "closed"
    if session.close_requested and session.closed_reason:
        reason = session.closed_reason  # the administrator's end is why it closed
    now = timezone.now()
    ConsoleSession.objects.filter(pk=session.pk).update(closed_at=now, closed_reason=reason)
    session.closed_at, session.closed_reason = now, reason
    action = InstanceAction.objects.filter(pk=session.action_id).first()
    lifecycle.record_event(action, "console_close", details=reason)
