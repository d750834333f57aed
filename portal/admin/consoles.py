"""Console sessions: who is connected to which instance since when, and ending a session."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone

from portal.models import ConsoleSession
from portal.selectors.console_sessions import session_is_stale
from portal.services.console_sessions import console_session_end

from .base import ReadOnlyAdmin


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(closed_at__isnull=True)
        if self.value() == "closed":
            return queryset.filter(~Q(closed_at=None))
        return queryset


@admin.register(ConsoleSession)
class ConsoleSessionAdmin(ReadOnlyAdmin):
    list_display = ["instance_name", "user", "client", "opened_at", "connected_for", "state", "closed_reason"]
    list_select_related = ["instance", "user"]
    list_filter = [OpenFilter]
    search_fields = ["instance__name", "instance__uuid", "user__username", "client"]
    actions = ["end_sessions"]
    readonly_fields = [
        "instance", "user", "client", "opened_at", "last_seen_at", "closed_at", "close_requested", "closed_reason",
        "action",
    ]  # fmt: skip
    exclude = ["token"]

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and obj is None  # for the action only

    @admin.display(description="Instance", ordering="instance__name")
    def instance_name(self, session: ConsoleSession) -> str:
        return session.instance.name

    @admin.display(description="State")
    def state(self, session: ConsoleSession) -> str:
        if session.closed_at is not None:
            return "closed"
        if session.close_requested:
            return "ending"
        return "lost (proxy silent)" if session_is_stale(session) else "open"

    @admin.display(description="Connected for")
    def connected_for(self, session: ConsoleSession) -> str:
        seconds = int(((session.closed_at or timezone.now()) - session.opened_at).total_seconds())
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}"

    @admin.action(description="End the selected console sessions", permissions=["change"])
    def end_sessions(self, request, queryset):
        ended = sum(console_session_end(session=session, ended_by=request.user) for session in queryset)
        self.message_user(
            request,
            f"Ending {ended} session(s): the console proxy closes each within seconds.",
            messages.SUCCESS if ended else messages.WARNING,
        )
