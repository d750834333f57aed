"""Failed sign-ins counted for the throttle: by user name and by client address, in one query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Q

from portal.models import FailedSignIn


@dataclass(frozen=True)
class RecentFailures:
    by_user: int
    by_address: int
    oldest_by_user: datetime | None
    oldest_by_address: datetime | None


def recent_failed_sign_ins(*, username: str, address: str, since: datetime) -> RecentFailures:
    """The failures since ``since`` of this user name (from anywhere) and of this address (any name)."""
    same_user, same_address = Q(username=username), Q(address=address)
    totals = FailedSignIn.objects.filter(same_user | same_address, at__gte=since).aggregate(
        by_user=Count("id", filter=same_user),
        by_address=Count("id", filter=same_address),
        oldest_by_user=Min("at", filter=same_user),
        oldest_by_address=Min("at", filter=same_address),
    )
    return RecentFailures(**totals)
