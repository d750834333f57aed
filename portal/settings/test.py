"""Tests run against PostgreSQL (``DATABASE_URL``), never SQLite, so concurrency is real."""

import atexit
import os
import secrets
import shutil
import tempfile

# Tests run in production mode (no CLOUD_DEBUG), which requires the secrets: fresh ones for each run, put
# in the environment so every process the tests start shares them.
for _name in ("DJANGO_SECRET_KEY", "CONSOLEAUTH_SECRET", "CLOUD_SIGNING_KEY"):
    os.environ.setdefault(_name, secrets.token_urlsafe(48))
# Each test makes its own hosts: a conductor that decided on the hosts of the test before would first
# try those (correct, but the retry makes tests slower and their choices harder to read). The tests of
# the host cache turn it on.
os.environ.setdefault("SCHEDULER_HOST_STATE_MAX_AGE", "0")
# A server that asks for no particular network gets QEMU's user-mode NIC, so that the many tests about
# other things need no data plane; the network tests ask for networks, or turn "tenant" on.
os.environ.setdefault("NETWORK_MODE", "user")
# Live pages look for changes five times a second, so tests of them wait for an event a fifth as long.
os.environ.setdefault("PORTAL_LIVE_POLL_INTERVAL", "0.2")
# The metrics of this test run's processes (the test process and the workers it starts) are theirs alone.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cloud-test-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

from .base import *  # noqa: E402, F403
from .base import CLOUD, STATE_DIR, STATIC_ROOT, database  # noqa: E402

DATABASES = {
    "default": database(
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cloud"), conn_max_age=0
    )
}
# Lets several test runs share one PostgreSQL server without dropping each other's database.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_cloud")}

# Not exported to the environment: Celery would let it override every other app's broker in the process.
CELERY_BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/9")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CLOUD["IMAGE_DIR"] = STATE_DIR / "test-images"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
