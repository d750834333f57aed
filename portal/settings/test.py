"""Tests run against PostgreSQL (``DATABASE_URL``), never SQLite, so concurrency is real."""

import os

import dj_database_url

from .base import *  # noqa: F403
from .base import CLOUD, STATE_DIR, STATIC_ROOT

DATABASES = {
    "default": dj_database_url.parse(
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
