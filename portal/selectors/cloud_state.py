"""The whole cloud's state in a few numbers, for ``/metrics``: instances by state, hosts by liveness and
status, console sessions. Each is one query whatever the size of the cloud, and every answer has a
bounded number of keys (states, not instances or projects)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from portal.models import ComputeHost, ConsoleSession, Instance
from portal.states import VmState

from .hosts import host_is_up


def instance_state_counts() -> dict[tuple[str, str | None], int]:
    """How many instances (deleted ones aside) are in each ``(vm_state, task_state)``."""
    rows = (
        Instance.objects.exclude(vm_state=VmState.DELETED)
        .order_by()
        .values_list("vm_state", "task_state")
        .annotate(count=Count("id"))
    )
    return {(vm_state, task_state): count for vm_state, task_state, count in rows}


def host_state_counts() -> dict[tuple[bool, bool], int]:
    """How many compute hosts are ``(up, enabled)``; up as ``host_is_up`` says (the scheduler's rule)."""
    now = timezone.now()
    counts: Counter[tuple[bool, bool]] = Counter()
    for host in ComputeHost.objects.order_by().only("enabled", "forced_down", "last_heartbeat"):
        counts[(host_is_up(host, now), host.enabled)] += 1
    return dict(counts)


def console_session_counts() -> dict[str, int]:
    """Console sessions not closed: ``open`` while their proxy checks them in, ``stale`` once it stopped
    (``selectors.console_sessions.session_is_stale``)."""
    stale_before = timezone.now() - timedelta(seconds=settings.CONSOLE["SESSION_STALE_AFTER"])
    stale = Q(last_seen_at__lt=stale_before)
    counts = ConsoleSession.objects.filter(closed_at__isnull=True).aggregate(
        open=Count("id", filter=~stale), stale=Count("id", filter=stale)
    )
    return {"open": counts["open"] or 0, "stale": counts["stale"] or 0}
