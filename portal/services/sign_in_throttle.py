"""The throttle on password guessing: failed sign-ins are counted per user name and per client address,
and past ``AUTH_THROTTLE``'s limits an attempt is refused before its password hash is computed.

A password check costs a full PBKDF2 (a quarter of a second of CPU, by design), so without a bound a few
anonymous clients sending wrong passwords keep every core of the API busy. The counts live in the
database, the one store every API process of every deployment shares (the broker may be RabbitMQ, and
Django's cache is per process here); a check is one indexed read, a failure one insert.

A failure is recorded once its check has failed, so attempts already past the check when the limit is
reached still run: a key gets at most its limit plus the attempts in flight at that moment (bounded by
the API's threads). Counting attempts before their check would make that exact, but would also count a
legitimate client's burst of parallel first requests as failures. Nothing is ever reset by a success:
signing in with one's own account must not buy more guesses at someone else's, or from the same address.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from portal.models import FailedSignIn
from portal.selectors.sign_ins import recent_failed_sign_ins

# A user name longer than the column is cut: names that long exist nowhere, and sharing a counter only
# makes guessing at them slower.
_USERNAME_LENGTH = FailedSignIn._meta.get_field("username").max_length


class SignInThrottled(Exception):
    """Too many failed sign-ins lately for this user name or from this address."""

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def sign_in_throttle_check(*, username: str, address: str) -> None:
    """SignInThrottled if this user name or this address has used up its failures; reads only."""
    limits = settings.AUTH_THROTTLE
    now = timezone.now()
    window = timedelta(seconds=limits["WINDOW"])
    failures = recent_failed_sign_ins(username=username[:_USERNAME_LENGTH], address=address, since=now - window)
    if failures.by_user >= limits["MAX_FAILURES_PER_USER"]:
        raise SignInThrottled(
            "Too many failed sign-ins for this user name; try again later.",
            retry_after=_seconds_until(failures.oldest_by_user, window, now),
        )
    if failures.by_address >= limits["MAX_FAILURES_PER_ADDRESS"]:
        raise SignInThrottled(
            "Too many failed sign-ins from this address; try again later.",
            retry_after=_seconds_until(failures.oldest_by_address, window, now),
        )


def sign_in_failure_record(*, username: str, address: str) -> None:
    # One statement, committed at once: the next check in any API process counts it.
    FailedSignIn.objects.create(username=username[:_USERNAME_LENGTH], address=address)


def failed_sign_ins_purge(*, now: datetime | None = None) -> int:
    """Forget failures older than the window: they no longer count."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.AUTH_THROTTLE["WINDOW"])
    deleted, _ = FailedSignIn.objects.filter(at__lt=cutoff).delete()
    return deleted


def _seconds_until(oldest: datetime | None, window: timedelta, now: datetime) -> int:
    """When the oldest failure that counts leaves the window, making room for one more attempt."""
    if oldest is None:
        return 1
    return max(1, math.ceil((oldest + window - now).total_seconds()))
