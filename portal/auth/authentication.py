"""API authentication: HTTP Basic and the portal's session cookie, for local Django users."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework import authentication, exceptions

from .context import identity_generation
from .throttle import SignIn, SignInThrottled


class VerifiedCredentials:
    """Remembers, for a while, which Basic credentials were already checked.

    A password hash check (PBKDF2) costs about half a second of CPU by design; paying it on every API call
    would make each request that slow. Entries are keyed by a digest of user and password (the password
    itself is never kept) and hold the user's password *hash* at the time of the check: a changed password,
    or a deactivated user, misses the cache. Bounded in size and age, safe across threads.

    The user's row itself is read again only when the last reading is older than
    ``IDENTITY['PRINCIPAL_CACHE_TTL']`` seconds (as a token's user is): a changed password or a
    deactivated user counts within that time.
    """

    def __init__(self, max_entries: int = 1024, ttl: float = 300.0):
        self.max_entries = max_entries
        self.ttl = ttl
        # key -> (user pk, password hash, expiry, the user as last read, (identity generation, when) of that read)
        self._entries: OrderedDict[str, tuple[int, str, float, object, tuple[int, float]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(userid: str, password: str) -> str:
        return hashlib.sha256(f"{userid}\0{password}".encode()).hexdigest()

    def user_for(self, key: str):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            user_pk, password_hash, expires, user, read_at = entry
            now = time.monotonic()
            if expires < now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        generation, read_at = read_at
        if generation == identity_generation() and now - read_at <= settings.IDENTITY["PRINCIPAL_CACHE_TTL"]:
            return user
        user = get_user_model().objects.filter(pk=user_pk, is_active=True).first()
        if user is None or user.password != password_hash:
            return None
        with self._lock:
            if key in self._entries:
                self._entries[key] = (user_pk, password_hash, expires, user, (identity_generation(), time.monotonic()))
        return user

    def remember(self, key: str, user) -> None:
        with self._lock:
            now = time.monotonic()
            entry = self._entries.get(key)
            read_at = entry[4] if entry is not None and entry[3] is user else (identity_generation(), now)
            self._entries[key] = (user.pk, user.password, now + self.ttl, user, read_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_credentials = VerifiedCredentials()


class ProjectBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic behind the throttle on password guessing: past its limits the answer is 429, and no
    password hash is computed."""

    www_authenticate_realm = "compute"

    def authenticate_credentials(self, userid, password, request=None):
        try:
            sign_in = SignIn(request, username=userid)
            key = VerifiedCredentials.key(userid, password)
            user = verified_credentials.user_for(key) or sign_in.authenticate(password)
        except SignInThrottled as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=str(exc)) from None
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        verified_credentials.remember(key, user)
        return (user, None)


class ProjectSessionAuthentication(authentication.SessionAuthentication):
    """The portal's session cookie; DRF enforces CSRF on unsafe methods for it."""
