"""``force_complete`` finishes a live migration that would not converge: the source host's migration
bandwidth is limited (``COMPUTE_LIVE_MIGRATION_BANDWIDTH``) and the guest rewrites its memory faster than
that, so the transfer goes on and on; forcing it completes it, and the guest keeps counting on the other
host under the same boot."""

from __future__ import annotations

import base64
import time

import pytest

from portal.models import Instance, Migration, Role
from tests.http import ApiUser
from tests.images import public_image
from tests.libvirt_hosts import start_compute_on
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import TWO_HOSTS
from tests.system.test_live_migration import delete_all, wait_status, wait_ticking

pytestmark = pytest.mark.system

VERSION = {"OpenStack-API-Version": "compute 2.74"}
DIRTY = """#!/bin/sh
boot=$(cat /proc/sys/kernel/random/boot_id)
( while true; do dd if=/dev/zero of=/dev/shm/dirty bs=1M count=48 conv=notrunc 2>/dev/null; done ) &
n=0
while true; do n=$((n+1)); echo "TICK $n $boot"; sleep 1; done
"""


def test_force_complete_finishes_a_migration_that_would_not_converge(
    two_host_cluster, live_server, tiny_flavor, demo_image
):
    cluster = two_host_cluster
    first, second = TWO_HOSTS
    # The source sends at most 2 MiB/s: the guest dirties its memory faster than that.
    cluster.processes[f"compute-{first}"].stop()
    start_compute_on(cluster, first, cluster.libvirt_hosts.hosts[first], COMPUTE_LIVE_MIGRATION_BANDWIDTH="2")
    admin = ApiUser(live_server.url, role=Role.ADMIN)
    for name in TWO_HOSTS:
        wait_for_host(name)
    image = public_image(project=admin.ctx.project, path=demo_image, name="demo")
    body = {
        "server": {
            "name": "dirty",
            "imageRef": str(image.id),
            "flavorRef": tiny_flavor.flavorid,
            "networks": "none",
            "host": first,
            "config_drive": True,
            "user_data": base64.b64encode(DIRTY.encode()).decode(),
        }
    }
    response = admin.post("/servers", body, headers=VERSION)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    try:
        wait_status(admin, server_id, "ACTIVE")
        before, boot_id = wait_ticking(admin, server_id, after=3)

        response = admin.post(
            f"/servers/{server_id}/action",
            {"os-migrateLive": {"host": second, "block_migration": "auto"}},
            headers={"OpenStack-API-Version": "compute 2.25"},
        )
        assert response.status_code == 202, response.text
        migration = wait_until(
            lambda: Migration.objects.filter(instance__uuid=server_id, status="running").first(),
            90,
            message="the migration running",
        )
        # It runs on without finishing: memory keeps being dirtied faster than it moves. Its progress shows
        # memory moving, and it still runs a while after that.
        wait_until(
            lambda: Migration.objects.filter(pk=migration.pk, memory_processed_bytes__gt=0).exists(),
            90,
            message="the transfer's progress",
        )
        time.sleep(8)
        migration.refresh_from_db()
        assert migration.status == "running", migration.status
        assert migration.memory_total_bytes and migration.memory_remaining_bytes, vars(migration)
        shown = admin.get(f"/servers/{server_id}/migrations/{migration.pk}", headers=VERSION)
        assert shown.status_code == 200 and shown.json()["migration"]["status"] == "running"

        forced = admin.post(
            f"/servers/{server_id}/migrations/{migration.pk}/action",
            {"force_complete": None},
            headers={"OpenStack-API-Version": "compute 2.22"},
        )
        assert forced.status_code == 202, forced.text
        wait_until(
            lambda: Migration.objects.get(pk=migration.pk).status in ("completed", "failed"),
            180,
            message="the forced migration's end",
        )
        assert Migration.objects.get(pk=migration.pk).status == "completed"
        wait_status(admin, server_id, "ACTIVE")
        assert Instance.objects.select_related("host").get(uuid=server_id).host.name == second
        wait_ticking(admin, server_id, after=before + 2, boot_id=boot_id)
    finally:
        delete_all(admin, cluster, [server_id])
