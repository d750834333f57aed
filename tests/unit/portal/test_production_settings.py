"""The settings' production default, checked in child processes started as an operator would start them:
with nothing in the environment but what the test gives."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
SECRETS = ("DJANGO_SECRET_KEY", "CONSOLEAUTH_SECRET")

NOT_FOUND_PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
response = Client().get("/no-such-page/", HTTP_HOST="127.0.0.1")
print(json.dumps({"debug": settings.DEBUG, "status": response.status_code, "body": response.content.decode()}))
"""


def environment(tmp_path: Path, **env: str) -> dict[str, str]:
    """This process's environment without anything that configures the cloud, plus ``env``."""
    kept = {
        key: value
        for key, value in os.environ.items()
        if key not in SECRETS and not key.startswith(("CLOUD_", "KEYSTONE_", "DJANGO_", "DATABASE_", "CINDER_"))
    }
    return {
        **kept,
        "DJANGO_SETTINGS_MODULE": "portal.settings.base",
        "CLOUD_STATE_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **env,
    }


def run(tmp_path: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=environment(tmp_path, **env), capture_output=True, text=True, timeout=120)


def manage_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return run(tmp_path, [sys.executable, "manage.py", "check"], **env)


def secrets_named_by_the_refusal(tmp_path: Path) -> list[str]:
    done = manage_check(tmp_path)
    match = re.search(r"ImproperlyConfigured: ([A-Z0-9_, ]+) must be set in the environment", done.stderr)
    assert done.returncode != 0 and match, done.stderr
    return match.group(1).split(", ")


def every_secret(tmp_path: Path) -> dict[str, str]:
    return {name: f"{name.lower()}-" + "s" * 48 for name in secrets_named_by_the_refusal(tmp_path)}


def test_without_secrets_and_without_debug_start_up_fails_naming_every_missing_secret(tmp_path):
    named = secrets_named_by_the_refusal(tmp_path)

    assert set(SECRETS) <= set(named)
    assert not (tmp_path / "secrets").exists()  # nothing was generated in their place


def test_one_missing_secret_is_named_alone(tmp_path):
    given = every_secret(tmp_path)
    del given["CONSOLEAUTH_SECRET"]

    done = manage_check(tmp_path, **given)

    assert done.returncode != 0
    assert "ImproperlyConfigured: CONSOLEAUTH_SECRET must be set in the environment" in done.stderr


def test_with_every_secret_set_production_starts(tmp_path):
    done = manage_check(tmp_path, **every_secret(tmp_path))

    assert done.returncode == 0, done.stderr


def test_debug_mode_generates_the_secrets_once_readable_by_the_owner_only(tmp_path):
    first = manage_check(tmp_path, CLOUD_DEBUG="1")
    assert first.returncode == 0, first.stderr
    files = {path.name: path for path in (tmp_path / "secrets").iterdir()}
    assert {"django_secret_key", "consoleauth_secret"} <= set(files)
    values = {name: path.read_text() for name, path in files.items()}
    assert all(len(value) >= 48 for value in values.values())
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in files.values())
    assert (tmp_path / "secrets").stat().st_mode & 0o077 == 0

    again = manage_check(tmp_path, CLOUD_DEBUG="1")
    assert again.returncode == 0, again.stderr
    assert {name: path.read_text() for name, path in files.items()} == values  # kept across restarts


def test_with_cloud_debug_unset_a_404_is_not_the_technical_page(tmp_path):
    done = run(tmp_path, [sys.executable, "-c", NOT_FOUND_PROBE], **every_secret(tmp_path))

    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["debug"] is False
    assert page["status"] == 404
    for technical in ("Using the URLconf", "portal.urls", "DEBUG = True", "Django settings", "CELERY_BROKER_URL"):
        assert technical not in page["body"]


def test_cloud_debug_1_is_how_the_technical_page_is_asked_for(tmp_path):
    """The counterpart of the test above: the probe does see the debug page when debug mode is asked for."""
    done = run(tmp_path, [sys.executable, "-c", NOT_FOUND_PROBE], CLOUD_DEBUG="1")

    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["debug"] is True
    assert "Using the URLconf" in page["body"]
