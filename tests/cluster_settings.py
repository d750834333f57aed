"""Settings of an API process a test starts (``Cluster.start_api``): production's, plus the fast password
hasher the test process creates its users with, so HTTP Basic works for them.

The fast hasher comes first: Django re-hashes a password with the first hasher after every successful
check that used another, so with PBKDF2 first each test user's second request would cost a full PBKDF2
check (about half a second of CPU), and a test firing hundreds of requests would mostly measure that."""

from portal.settings.base import *  # noqa: F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
