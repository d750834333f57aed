"""Console session reads: who is connected to which instance, and a user's latest session."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from portal.models import ConsoleSession, Instance


def latest_session_of(*, instance: Instance, user) -> ConsoleSession | None:
    return (
        ConsoleSession.objects.select_related("token")
        .filter(instance=instance, user=user)
        .order_by("-opened_at", "-id")
        .first()
    )


def open_sessions() -> QuerySet:
    """Sessions not closed, newest first, with who and which instance."""
    return (
        ConsoleSession.objects.filter(closed_at__isnull=True)
        .select_related("instance", "user", "token")
        .order_by("-opened_at", "-id")
    )


def session_is_stale(session: ConsoleSession) -> bool:
    """Whether the proxy stopped checking the session in (it is gone, or lost its way to us)."""
    if session.closed_at is not None or session.last_seen_at is None:
        return False
    age = (timezone.now() - session.last_seen_at).total_seconds()
    return age > settings.CONSOLE["SESSION_STALE_AFTER"]
