"""Talking to Keystone with keystoneauth1: validating users' tokens and signing users in.

The cloud holds service credentials (``settings.KEYSTONE``) and asks Keystone about every token it has not
seen, with ``GET /v3/auth/tokens`` and ``X-Subject-Token``. A validated token is cached, keyed by its
SHA-256, until the earlier of its expiry and ``TOKEN_CACHE_TTL`` seconds (which bounds how long a revoked
token keeps working), in a cache of at most ``TOKEN_CACHE_SIZE`` entries. Tokens and passwords are never
logged.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from keystoneauth1 import access, plugin, session
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1.identity import generic

from portal.models import Role

log = logging.getLogger(__name__)

# At most this many of a user's projects are looked at when they sign in to the portal.
MAX_LOGIN_PROJECTS = 50


class InvalidToken(Exception):
    """Keystone does not know the token, or it expired or was revoked."""


class InvalidCredentials(Exception):
    """Keystone refused the user name and password."""


class KeystoneUnavailable(Exception):
    """Keystone could not be reached, or refused the cloud's own service credentials."""


@dataclass(frozen=True)
class KeystoneIdentity:
    """What a project-scoped (or unscoped) Keystone token says about its bearer."""

    user_id: str
    user_name: str
    user_domain_name: str
    project_id: str | None
    project_name: str | None
    project_domain_name: str | None
    roles: frozenset[str]
    expires_at: datetime

    @classmethod
    def from_access(cls, info: access.AccessInfoV3) -> KeystoneIdentity:
        scoped = info.project_scoped
        return cls(
            user_id=info.user_id,
            user_name=info.username or info.user_id,
            user_domain_name=info.user_domain_name or "",
            project_id=info.project_id if scoped else None,
            project_name=info.project_name if scoped else None,
            project_domain_name=info.project_domain_name if scoped else None,
            roles=frozenset(name.lower() for name in (info.role_names or [])),
            expires_at=info.expires,
        )


def enabled() -> bool:
    return bool(settings.KEYSTONE["AUTH_URL"])


def token_key(token: str) -> str:
    """The cache key of a token: its SHA-256, so the cache never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    """A thread-safe, size-bounded LRU map from a token's hash to what validating it gave, with expiry."""

    def __init__(self, max_size: int, max_ttl: float, clock: Callable[[], float] = time.time):
        self.max_size = max_size
        self.max_ttl = max_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, token: str):
        key = token_key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            deadline, value = entry
            if deadline <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, token: str, value, expires_at: float) -> None:
        if self.max_size <= 0 or self.max_ttl <= 0:
            return
        now = self._clock()
        deadline = min(expires_at, now + self.max_ttl)
        if deadline <= now:
            return
        key = token_key(token)
        with self._lock:
            self._entries[key] = (deadline, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token_key(token), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class KeystoneClient:
    """The cloud's service session with Keystone, and the token cache. One per process."""

    def __init__(self, config: dict):
        self.config = config
        self.auth_url = config["AUTH_URL"]
        self.timeout = config["TIMEOUT"]
        self.cache = TokenCache(config["TOKEN_CACHE_SIZE"], config["TOKEN_CACHE_TTL"])
        self._session: session.Session | None = None
        self._identity_url: str | None = None
        self._lock = threading.Lock()

    # --- the service session ---------------------------------------------------------------------
    def service_session(self) -> session.Session:
        with self._lock:
            if self._session is None:
                auth = generic.Password(
                    auth_url=self.auth_url,
                    username=self.config["USERNAME"],
                    password=self.config["PASSWORD"],
                    project_name=self.config["PROJECT_NAME"],
                    user_domain_name=self.config["USER_DOMAIN_NAME"],
                    project_domain_name=self.config["PROJECT_DOMAIN_NAME"],
                )
                self._session = session.Session(auth=auth, timeout=self.timeout)
            return self._session

    def identity_url(self) -> str:
        """The identity v3 endpoint (``…/v3``), found by version discovery from ``AUTH_URL``."""
        if self._identity_url is None:
            url = self._call(
                lambda s: s.get_endpoint(interface=plugin.AUTH_INTERFACE, version=(3, 0)),
                "discover the identity API",
            )
            if not url:
                raise KeystoneUnavailable(f"no identity v3 API at {self.auth_url}")
            self._identity_url = url.rstrip("/")
        return self._identity_url

    def _call(self, request: Callable[[session.Session], object], what: str):
        try:
            return request(self.service_session())
        except ks_exceptions.Unauthorized:
            log.error("Keystone refused the cloud's service credentials (KEYSTONE_USERNAME) trying to %s", what)
            raise KeystoneUnavailable("Keystone refused the cloud's service credentials") from None
        except ks_exceptions.Forbidden:
            log.error("Keystone does not let the service user (KEYSTONE_USERNAME) %s: it needs a role", what)
            raise KeystoneUnavailable("The cloud's service user may not do this in Keystone") from None
        except (ks_exceptions.ConnectionError, ks_exceptions.DiscoveryFailure) as exc:
            log.warning("Keystone at %s is unreachable trying to %s: %s", self.auth_url, what, type(exc).__name__)
            raise KeystoneUnavailable(f"Keystone is unreachable: {type(exc).__name__}") from None
        except ks_exceptions.HttpError as exc:
            if exc.http_status is not None and exc.http_status >= 500:
                log.warning("Keystone failed trying to %s: HTTP %s", what, exc.http_status)
                raise KeystoneUnavailable(f"Keystone answered {exc.http_status}") from None
            raise

    # --- tokens ----------------------------------------------------------------------------------
    def validate(self, token: str) -> KeystoneIdentity:
        """What Keystone says about ``token``; raises InvalidToken or KeystoneUnavailable."""
        cached = self.cache.get(token)
        if cached is not None:
            return cached
        url = f"{self.identity_url()}/auth/tokens"
        try:
            response = self._call(lambda s: s.get(url, headers={"X-Subject-Token": token}), "validate a token")
        except ks_exceptions.HttpError as exc:  # 404 unknown/expired/revoked, 401/403 refused
            raise InvalidToken(f"token rejected by Keystone (HTTP {exc.http_status})") from None
        identity = KeystoneIdentity.from_access(access.create(resp=response))
        self.cache.put(token, identity, identity.expires_at.timestamp())
        return identity

    def remember(self, token: str, value, expires_at: datetime) -> None:
        self.cache.put(token, value, expires_at.timestamp())

    # --- signing in with a password --------------------------------------------------------------
    def _user_request(self, method: str, path: str, **kwargs):
        """A request on behalf of a user (``X-Auth-Token`` in the headers), not the service."""
        url = f"{self.identity_url()}{path}"
        sess = session.Session(timeout=self.timeout)
        try:
            return sess.request(url, method, authenticated=False, raise_exc=False, **kwargs)
        except ks_exceptions.ConnectionError as exc:
            log.warning("Keystone at %s is unreachable: %s", self.auth_url, type(exc).__name__)
            raise KeystoneUnavailable(f"Keystone is unreachable: {type(exc).__name__}") from None

    def _issue(self, auth: dict) -> access.AccessInfoV3 | None:
        response = self._user_request("POST", "/auth/tokens", json={"auth": auth})
        if response.status_code in (400, 401, 403, 404):
            return None
        if response.status_code != 201:
            raise KeystoneUnavailable(f"Keystone answered {response.status_code} to a sign-in")
        return access.create(resp=response)

    def sign_in(self, username: str, password: str, domain: str) -> list[KeystoneIdentity]:
        """The user's role in each of their projects, after checking their password with Keystone.

        Returns one identity per enabled project the user has a role in (none when they have no project);
        raises InvalidCredentials when Keystone refuses the password.
        """
        user = {"name": username, "domain": {"name": domain}, "password": password}
        unscoped = self._issue({"identity": {"methods": ["password"], "password": {"user": user}}})
        if unscoped is None:
            raise InvalidCredentials(username)
        token = unscoped.auth_token
        response = self._user_request("GET", "/auth/projects", headers={"X-Auth-Token": token})
        projects = response.json().get("projects", []) if response.status_code == 200 else []
        identities = []
        for project in [p for p in projects if p.get("enabled", True)][:MAX_LOGIN_PROJECTS]:
            scoped = self._issue(
                {
                    "identity": {"methods": ["token"], "token": {"id": token}},
                    "scope": {"project": {"id": project["id"]}},
                }
            )
            if scoped is not None:
                identities.append(KeystoneIdentity.from_access(scoped))
        if not identities:
            identities.append(KeystoneIdentity.from_access(unscoped))
        return identities


_client: KeystoneClient | None = None
_client_lock = threading.Lock()


def client() -> KeystoneClient:
    global _client
    with _client_lock:
        if _client is None:
            _client = KeystoneClient(settings.KEYSTONE)
        return _client


@receiver(setting_changed)
def _forget_client(*, setting, **kwargs):
    global _client
    if setting == "KEYSTONE":
        with _client_lock:
            _client = None


def portal_role(keystone_roles: frozenset[str] | set[str]) -> str | None:
    """The portal role Keystone roles amount to: admin is admin, member (or manager) acts, reader reads."""
    if "admin" in keystone_roles:
        return Role.ADMIN
    if keystone_roles & {"member", "_member_", "manager"}:
        return Role.MEMBER
    if "reader" in keystone_roles:
        return Role.READER
    return None
