"""The demo's database is SQLite (no ``DATABASE_URL``), through the project's own backend: the schema
migrates from nothing, ``demo_setup`` fills it, and the compute API and the portal read servers from it
in the order of its indexes. Every other test runs on PostgreSQL, so this one is what finds a migration or
a query SQLite cannot take before ``make demo`` does.

Run in fresh interpreters with the production settings: the settings read the environment once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DEMO_IMAGE = ROOT / "var" / "images" / "demo.qcow2"

# Three servers of the admin project, then the first page of two and the page after it, as the compute
# API gives them, and the names on the portal's instance list.
READS = """
import base64, json
from django.contrib.auth import get_user_model
from django.test import Client
from portal.models import Instance, Project
admin = get_user_model().objects.get(username="admin")
project = Project.objects.get(name="admin")
for name in ("first", "second", "third"):
    Instance.objects.create(
        name=name, project=project, user=admin, flavor_name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1,
        vm_state="active", power_state=1,
    )
client = Client(HTTP_HOST="127.0.0.1")
auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"admin:demo-password").decode()}
first = client.get("/compute/v2.1/servers/detail?limit=2", **auth)
marker = first.json()["servers"][-1]["id"]
after = client.get(f"/compute/v2.1/servers/detail?limit=2&marker={marker}", **auth)
client.force_login(admin)
page = client.get("/instances/")
print(json.dumps({
    "statuses": [first.status_code, after.status_code, page.status_code],
    "pages": [[s["name"] for s in r.json()["servers"]] for r in (first, after)],
    "portal": [name for name in ("first", "second", "third") if f">{name}<" in page.content.decode()],
}))
"""


@pytest.fixture
def demo_env(tmp_path):
    if not DEMO_IMAGE.exists():
        pytest.skip("the demo image is not built (scripts/build_demo_image.sh)")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "DJANGO_", "CLOUD_", "TEST_", "CELERY_"))
    }
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "portal.settings.base",
        "CLOUD_DEBUG": "1",
        "CLOUD_STATE_DIR": str(tmp_path / "state"),
    }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_the_demo_database_migrates_and_serves_the_server_list(demo_env, tmp_path):
    image = tmp_path / "demo.qcow2"
    shutil.copy(DEMO_IMAGE, image)

    manage(demo_env, "migrate", "--noinput", "-v0")
    database = tmp_path / "state" / "cloud.sqlite3"
    assert database.stat().st_size > 0  # the default: SQLite, in the state directory
    manage(demo_env, "demo_setup", "--image", str(image), "--password", "demo-password")
    reads = json.loads(manage(demo_env, "shell", "-c", READS).strip().splitlines()[-1])

    assert reads["statuses"] == [200, 200, 200], reads
    assert reads["pages"] == [["third", "second"], ["first"]]  # newest first, in pages
    assert reads["portal"] == ["first", "second", "third"]
