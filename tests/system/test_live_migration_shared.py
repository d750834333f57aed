"""Live migration on shared storage: both hosts keep their instance directories and cached images in one
directory (``COMPUTE_INSTANCES_DIR``, ``COMPUTE_IMAGES_DIR``) and the cloud knows it
(``SHARED_INSTANCE_STORAGE``), so no disk is copied: only memory moves, and the guest counts on."""

from __future__ import annotations

import pytest

from portal.models import Instance, InstanceActionEvent, Migration, Role
from tests.http import ApiUser
from tests.images import public_image
from tests.libvirt_hosts import start_compute_on
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import TWO_HOSTS
from tests.system.test_live_migration import boot, delete_all, wait_status, wait_ticking

pytestmark = pytest.mark.system


def where_it_is(cluster, admin, server_id: str) -> str:
    """What the hosts' libvirtds, the server and its events say of a guest that is not where it should be."""
    events = list(
        InstanceActionEvent.objects.filter(action__instance__uuid=server_id)
        .order_by("id")
        .values_list("event", "result", "host", "details")
    )
    states = {name: cluster.libvirt_hosts.domain_states(name) for name in TWO_HOSTS}
    power = admin.server(server_id).get("OS-EXT-STS:power_state")
    tail = admin.post(f"/servers/{server_id}/action", {"os-getConsoleOutput": {"length": 5}}).text
    return (
        f"domains (state, reason) by host: {states}\nthe server's power state: {power}\n"
        f"its console's last lines: {tail}\nits events: {events}\n{cluster.logs()}\n{cluster.libvirt_hosts.logs()}"
    )


def test_a_guest_on_shared_storage_moves_without_its_disk(
    two_host_cluster, live_server, settings, tiny_flavor, demo_image
):
    cluster = two_host_cluster
    first, second = TWO_HOSTS
    shared = cluster.work_dir / "shared"
    for name in TWO_HOSTS:
        cluster.processes[f"compute-{name}"].stop()
        start_compute_on(
            cluster,
            name,
            cluster.libvirt_hosts.hosts[name],
            COMPUTE_INSTANCES_DIR=str(shared / "instances"),
            COMPUTE_IMAGES_DIR=str(shared / "images"),
        )
    settings.CLOUD = {**settings.CLOUD, "SHARED_INSTANCE_STORAGE": True}
    settings.CONSOLE = {**settings.CONSOLE, "PROXY_BASE_URL": f"{cluster.proxy_origin}/vnc_lite.html"}
    admin = ApiUser(live_server.url, role=Role.ADMIN)
    for name in TWO_HOSTS:
        wait_for_host(name)
    image = public_image(project=admin.ctx.project, path=demo_image, name="demo")
    server_id = boot(admin, image, tiny_flavor, first, "shared")
    try:
        wait_status(admin, server_id, "ACTIVE")
        disk = shared / "instances" / server_id / "disk"
        assert disk.exists()
        inode = disk.stat().st_ino
        before, boot_id = wait_ticking(admin, server_id)

        response = admin.post(
            f"/servers/{server_id}/action",
            {"os-migrateLive": {"host": None, "block_migration": False}},
            headers={"OpenStack-API-Version": "compute 2.25"},
        )
        assert response.status_code == 202, response.text
        wait_status(admin, server_id, "ACTIVE")
        assert Instance.objects.select_related("host").get(uuid=server_id).host.name == second
        migration = Migration.objects.get(instance__uuid=server_id)
        assert (migration.status, migration.block_migration) == ("completed", False)
        # The same disk file, never copied, and the same boot counting on.
        assert disk.stat().st_ino == inode
        try:
            wait_ticking(admin, server_id, after=before + 2, boot_id=boot_id)
            assert server_id in cluster.libvirt_hosts.domain_uuids(second)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{where_it_is(cluster, admin, server_id)}") from None
        wait_until(lambda: server_id not in cluster.libvirt_hosts.domain_uuids(first), 30, message="source let go")
    finally:
        delete_all(admin, cluster, [server_id])
