"""Servers moving between two real hypervisor hosts (each its own libvirtd and instance directory; no
shared storage): resize with revert and confirm, cold migration, shelve-offload and unshelve onto the
other host, rescue and unrescue, all through the compute API.

The guest's user data prints what it sees of itself at every boot (its CPUs and its disk's size), and
the test reads that back through ``os-getConsoleOutput``, so "the guest sees its new size" is the
guest's own word.
"""

from __future__ import annotations

import base64
import re

import pytest

from portal.models import ComputeHost, Instance, Migration, Role
from tests.factories import FlavorFactory
from tests.http import ApiUser
from tests.images import public_image
from tests.libvirt_hosts import holds
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import TWO_HOSTS

pytestmark = pytest.mark.system

VERSION = {"OpenStack-API-Version": "compute 2.74"}
USER_DATA = """#!/bin/sh
cpus=$(grep -c ^processor /proc/cpuinfo)
echo "SEEN cpus=$cpus disk=$(cat /sys/block/vda/size) boot=$(cat /proc/sys/kernel/random/boot_id)"
"""
SEEN = re.compile(r"SEEN cpus=(\d+) disk=(\d+) boot=(\S+)")


@pytest.fixture
def admin(live_server):
    return ApiUser(live_server.url, role=Role.ADMIN)


def action(admin, server_id, body, expected=(202,)):
    response = admin.post(f"/servers/{server_id}/action", body, headers=VERSION)
    assert response.status_code in expected, response.text
    return response


def wait_status(admin, server_id, status, timeout=240):
    def reached():
        server = admin.server(server_id)
        assert server["status"] != "ERROR", server.get("fault")
        assert "fault" not in server or server["status"] == status, server["fault"]
        return server["status"] == status and server.get("OS-EXT-STS:task_state") is None

    wait_until(reached, timeout, message=status)
    return admin.server(server_id)


def seen_lines(admin, server_id) -> list[tuple[int, int, str]]:
    response = admin.post(f"/servers/{server_id}/action", {"os-getConsoleOutput": {}}, headers=VERSION)
    if response.status_code != 200:
        return []
    return [(int(c), int(d), b) for c, d, b in SEEN.findall(response.json()["output"])]


def wait_seen(admin, server_id, *, cpus=None, disk_gb=None, not_boot=(), timeout=180):
    """The guest's own report of itself from a boot not in ``not_boot``; returns that boot's id."""
    found = {}

    def reported():
        for count, sectors, boot in seen_lines(admin, server_id):
            if boot not in not_boot:
                found["line"] = (count, sectors, boot)
        return "line" in found

    wait_until(reported, timeout, message="the guest's report of itself")
    count, sectors, boot = found["line"]
    if cpus is not None:
        assert (count, sectors * 512) == (cpus, disk_gb * 1024**3)
    return boot


def host_of(server_id) -> str:
    return Instance.objects.select_related("host").get(uuid=server_id).host.name


def test_a_server_moves_between_two_hosts_and_back(
    two_host_cluster, admin, tiny_flavor, demo_image, settings, live_server
):
    # The API (this process) signs the shelve's upload URL for the hosts.
    settings.CLOUD = {**settings.CLOUD, "PUBLIC_URL": live_server.url}
    cluster = two_host_cluster
    hosts = cluster.libvirt_hosts
    first, second = TWO_HOSTS
    image = public_image(project=admin.ctx.project, path=demo_image, name="demo")
    large = FlavorFactory(flavorid="2", name="m1.large", vcpus=2, memory_mb=512, root_gb=2)
    for name in TWO_HOSTS:
        wait_for_host(name)
    body = {
        "server": {
            "name": "mover",
            "imageRef": str(image.id),
            "flavorRef": tiny_flavor.flavorid,
            "networks": "none",
            "host": first,
            "config_drive": True,
            "user_data": base64.b64encode(USER_DATA.encode()).decode(),
        }
    }
    response = admin.post("/servers", body, headers=VERSION)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    try:
        wait_status(admin, server_id, "ACTIVE")
        boot = wait_seen(admin, server_id, cpus=1, disk_gb=1)

        # Resize, then revert: the guest saw two CPUs and a 2 GB disk, then its old self again.
        action(admin, server_id, {"resize": {"flavorRef": large.flavorid}})
        server = wait_status(admin, server_id, "VERIFY_RESIZE")
        assert server["flavor"]["original_name"] == "m1.large"
        boot = wait_seen(admin, server_id, cpus=2, disk_gb=2, not_boot={boot})
        action(admin, server_id, {"revertResize": None})
        server = wait_status(admin, server_id, "ACTIVE")
        assert (server["flavor"]["original_name"], host_of(server_id)) == ("m1.tiny", first)
        boot = wait_seen(admin, server_id, cpus=1, disk_gb=1, not_boot={boot})

        # Resize again and confirm: the source keeps nothing once confirmed.
        action(admin, server_id, {"resize": {"flavorRef": large.flavorid}})
        wait_status(admin, server_id, "VERIFY_RESIZE")
        boot = wait_seen(admin, server_id, cpus=2, disk_gb=2, not_boot={boot})
        action(admin, server_id, {"confirmResize": None}, expected=(204,))
        wait_status(admin, server_id, "ACTIVE")
        now_on = host_of(server_id)
        resize_dir = cluster.instance_dir(first, server_id).with_name(f"{server_id}_resize")
        wait_until(lambda: not resize_dir.exists(), 30, message="the source's kept files removed")

        # Cold migration goes to the other host, and only the other host has the guest afterwards.
        other = second if now_on == first else first
        action(admin, server_id, {"migrate": None})
        wait_status(admin, server_id, "VERIFY_RESIZE")
        assert host_of(server_id) == other
        boot = wait_seen(admin, server_id, cpus=2, disk_gb=2, not_boot={boot})
        action(admin, server_id, {"confirmResize": None}, expected=(204,))
        wait_status(admin, server_id, "ACTIVE")
        wait_until(lambda: not holds(cluster, now_on, server_id), 30, message="the old domain and disk gone")
        assert server_id in hosts.domain_uuids(other)

        migrations = admin.get("/os-migrations", headers={"OpenStack-API-Version": "compute 2.59"}).json()
        mine = [m for m in migrations["migrations"] if m["instance_uuid"] == server_id]
        assert [(m["migration_type"], m["status"]) for m in mine] == [
            ("migration", "confirmed"),
            ("resize", "confirmed"),
            ("resize", "reverted"),
        ]

        # Shelve: the disk becomes an image and no host holds anything; unshelve onto the other host.
        action(admin, server_id, {"shelve": None})
        wait_status(admin, server_id, "SHELVED_OFFLOADED")
        assert Instance.objects.get(uuid=server_id).host is None
        assert all(server_id not in hosts.domain_uuids(name) for name in TWO_HOSTS)
        ComputeHost.objects.filter(name=other).update(enabled=False)
        try:
            action(admin, server_id, {"unshelve": None})
            wait_status(admin, server_id, "ACTIVE")
        finally:
            ComputeHost.objects.filter(name=other).update(enabled=True)
        assert host_of(server_id) == now_on
        boot = wait_seen(admin, server_id, cpus=2, disk_gb=2, not_boot={boot})

        # Rescue boots the rescue image with the server's disk second; unrescue brings the server back.
        response = action(admin, server_id, {"rescue": {"rescue_image_ref": str(image.id)}}, expected=(200,))
        assert response.json() == {}  # no password: nothing in the guest would set it
        wait_status(admin, server_id, "RESCUE")
        rescue_boot = wait_seen(admin, server_id, not_boot={boot})  # the rescue image's own disk is 1 GB
        action(admin, server_id, {"unrescue": None})
        wait_status(admin, server_id, "ACTIVE")
        wait_seen(admin, server_id, cpus=2, disk_gb=2, not_boot={boot, rescue_boot})
        assert not Migration.objects.filter(instance__uuid=server_id, status__in=Migration.ACTIVE_STATUSES).exists()
    finally:
        admin.delete(f"/servers/{server_id}")
        wait_until(lambda: admin.get(f"/servers/{server_id}").status_code == 404, 90, message="deletion")
        for name in TWO_HOSTS:
            assert server_id not in hosts.domain_uuids(name)
