"""Live migration, evacuation and a host drain between two real hypervisor hosts (each its own libvirtd
and instance directory; no shared storage), through the compute API.

The guest's user data prints a counter with its boot id to the serial port every second; a live
migration is proven by the counter going on under the same boot id on the other host (no reboot), an
evacuation by a new boot id there.
"""

from __future__ import annotations

import base64
import re
import time

import pytest

from portal.models import ComputeHost, Instance, Migration, Role, ServerGroup
from tests.http import ApiUser
from tests.images import public_image
from tests.libvirt_hosts import holds
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import TWO_HOSTS
from tests.wsclient import WebSocketClient

pytestmark = pytest.mark.system

VERSION = {"OpenStack-API-Version": "compute 2.74"}
COUNTER = """#!/bin/sh
boot=$(cat /proc/sys/kernel/random/boot_id)
n=0
while true; do n=$((n+1)); echo "TICK $n $boot"; sleep 1; done
"""
TICK = re.compile(r"TICK (\d+) (\S+)")


@pytest.fixture
def admin(live_server, settings, two_host_cluster):
    settings.CONSOLE = {**settings.CONSOLE, "PROXY_BASE_URL": f"{two_host_cluster.proxy_origin}/vnc_lite.html"}
    return ApiUser(live_server.url, role=Role.ADMIN)


@pytest.fixture
def image(admin, demo_image):
    for name in TWO_HOSTS:
        wait_for_host(name)
    return public_image(project=admin.ctx.project, path=demo_image, name="demo")


def boot(admin, image, flavor, host, name, **extra):
    body = {
        "server": {
            "name": name,
            "imageRef": str(image.id),
            "flavorRef": flavor.flavorid,
            "networks": "none",
            "host": host,
            "config_drive": True,
            "user_data": base64.b64encode(COUNTER.encode()).decode(),
            **extra,
        }
    }
    response = admin.post("/servers", body, headers=VERSION)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def ticks(admin, server_id) -> list[tuple[int, str]]:
    response = admin.post(f"/servers/{server_id}/action", {"os-getConsoleOutput": {}}, headers=VERSION)
    if response.status_code != 200:
        return []
    return [(int(n), b) for n, b in TICK.findall(response.json()["output"])]


def wait_ticking(admin, server_id, *, after: int = 0, boot_id: str | None = None, timeout=120) -> tuple[int, str]:
    """The guest's latest tick once it passed ``after`` (under ``boot_id`` when given)."""
    seen = {}

    def ticking():
        for n, b in ticks(admin, server_id):
            if n > after and (boot_id is None or b == boot_id):
                seen["last"] = (n, b)
        return "last" in seen

    wait_until(ticking, timeout, message=f"the guest's counter past {after}")
    return seen["last"]


def wait_status(admin, server_id, status, timeout=240):
    def reached():
        server = admin.server(server_id)
        assert server["status"] != "ERROR", server.get("fault")
        return server["status"] == status and server.get("OS-EXT-STS:task_state") is None

    wait_until(reached, timeout, message=status)
    return admin.server(server_id)


def host_of(server_id) -> str:
    return Instance.objects.select_related("host").get(uuid=server_id).host.name


def console_handshake(cluster, admin, server_id) -> None:
    response = admin.post(
        f"/servers/{server_id}/remote-consoles",
        {"remote_console": {"protocol": "vnc", "type": "novnc"}},
        headers=VERSION,
    )
    assert response.status_code == 200, response.text
    token = re.search(r"token%3D([A-Za-z0-9_-]+)", response.json()["remote_console"]["url"]).group(1)
    path = f"/?token={token}"
    with WebSocketClient.connect("127.0.0.1", cluster.proxy_port, path, origin=cluster.proxy_origin) as ws:
        assert ws.recv_exactly(12) == b"RFB 003.008\n"


def delete_all(admin, cluster, server_ids):
    for server_id in server_ids:
        admin.delete(f"/servers/{server_id}")
    for server_id in server_ids:
        wait_until(lambda s=server_id: admin.get(f"/servers/{s}").status_code == 404, 90, message="deletion")
    for name in TWO_HOSTS:
        assert not set(server_ids) & cluster.libvirt_hosts.domain_uuids(name)


def test_a_live_migrated_guest_keeps_counting_on_the_other_host(two_host_cluster, admin, image, tiny_flavor):
    cluster = two_host_cluster
    first, second = TWO_HOSTS
    server_id = boot(admin, image, tiny_flavor, first, "counter")
    try:
        wait_status(admin, server_id, "ACTIVE")
        before, boot_id = wait_ticking(admin, server_id)

        started = time.monotonic()
        response = admin.post(
            f"/servers/{server_id}/action",
            {"os-migrateLive": {"host": None, "block_migration": "auto"}},
            headers={"OpenStack-API-Version": "compute 2.25"},
        )
        assert response.status_code == 202, response.text
        progress = []

        def moved():
            listed = admin.get(f"/servers/{server_id}/migrations", headers=VERSION).json()["migrations"]
            progress.extend(m for m in listed if m["memory_total_bytes"])
            server = admin.server(server_id)
            assert server["status"] != "ERROR", server.get("fault")
            return server["status"] == "ACTIVE" and server.get("OS-EXT-STS:task_state") is None

        wait_until(moved, 240, interval=0.3, message="the live migration")
        took = time.monotonic() - started
        assert host_of(server_id) == second
        migration = Migration.objects.get(instance__uuid=server_id)
        assert (migration.migration_type, migration.status, migration.block_migration) == (
            "live-migration",
            "completed",
            True,
        )
        # The source reported the transfer's progress (at least its final figures).
        reported = wait_until(
            lambda: Migration.objects.filter(pk=migration.pk).exclude(disk_total_bytes=None).first(),
            10,
            message="the transfer's progress",
        )
        assert reported.disk_total_bytes + reported.memory_total_bytes > 0, vars(reported)
        # The same boot goes on counting: the guest never restarted.
        after, same_boot = wait_ticking(admin, server_id, after=before + 2, boot_id=boot_id)
        assert same_boot == boot_id and after > before
        assert server_id in cluster.libvirt_hosts.domain_uuids(second)
        assert server_id not in cluster.libvirt_hosts.domain_uuids(first)
        assert not cluster.instance_dir(first, server_id).exists()
        # The console follows the guest to its new host, through the same proxy.
        console_handshake(cluster, admin, server_id)
        print(f"live migration took {took:.1f}s; progress samples: {len(progress)}")
    finally:
        delete_all(admin, cluster, [server_id])


def test_an_aborted_live_migration_leaves_the_guest_on_its_source(two_host_cluster, admin, image, tiny_flavor):
    cluster = two_host_cluster
    first, second = TWO_HOSTS
    server_id = boot(admin, image, tiny_flavor, first, "stays")
    try:
        wait_status(admin, server_id, "ACTIVE")
        before, boot_id = wait_ticking(admin, server_id)
        # A slow transfer, so that there is time to abort it.
        response = admin.post(
            f"/servers/{server_id}/action",
            {"os-migrateLive": {"host": second, "block_migration": "auto"}},
            headers={"OpenStack-API-Version": "compute 2.25"},
        )
        assert response.status_code == 202, response.text
        migration = wait_until(
            lambda: Migration.objects.filter(instance__uuid=server_id, status__in=["preparing", "running"]).first(),
            60,
            interval=0.05,
            message="the migration under way",
        )
        response = admin.delete(
            f"/servers/{server_id}/migrations/{migration.pk}", headers={"OpenStack-API-Version": "compute 2.65"}
        )
        assert response.status_code in (202, 404), response.text
        wait_until(
            lambda: Migration.objects.get(pk=migration.pk).status in ("cancelled", "completed"),
            120,
            message="the migration's end",
        )
        ended = Migration.objects.get(pk=migration.pk).status
        if ended == "completed":
            pytest.skip("the migration finished before the abort reached it (nothing to abort)")
        wait_status(admin, server_id, "ACTIVE")
        assert host_of(server_id) == first
        wait_ticking(admin, server_id, after=before + 2, boot_id=boot_id)
        wait_until(lambda: not holds(cluster, second, server_id), 30, message="no leftover")
    finally:
        delete_all(admin, cluster, [server_id])


def test_evacuation_and_the_old_host_cleaning_up_when_it_returns(two_host_cluster, admin, image, tiny_flavor):
    cluster = two_host_cluster
    first, second = TWO_HOSTS
    server_id = boot(admin, image, tiny_flavor, first, "survivor")
    try:
        wait_status(admin, server_id, "ACTIVE")
        _n, boot_id = wait_ticking(admin, server_id)

        # The first host dies: its worker, its libvirtd and its guests stop at once.
        cluster.processes[f"compute-{first}"].kill()
        cluster.libvirt_hosts.hosts[first].stop()
        refused = admin.post(f"/servers/{server_id}/action", {"evacuate": {}}, headers=VERSION)
        assert refused.status_code == 409, refused.text  # its service still counts as up
        ComputeHost.objects.filter(name=first).update(forced_down=True)

        response = admin.post(f"/servers/{server_id}/action", {"evacuate": {}}, headers=VERSION)
        assert response.status_code == 200, response.text
        wait_status(admin, server_id, "ACTIVE")
        assert host_of(server_id) == second
        _n, new_boot = wait_ticking(admin, server_id)
        assert new_boot != boot_id  # rebuilt from its image on the other host
        assert Migration.objects.get(instance__uuid=server_id).status == "done"

        # The first host returns: it still has the domain; the cloud removes it, and never runs it there.
        ComputeHost.objects.filter(name=first).update(forced_down=False)
        cluster.libvirt_hosts.start(first, TWO_HOSTS[first])
        cluster.restart(f"compute-{first}")
        wait_until(lambda: not holds(cluster, first, server_id), 90, message="the leftover gone")
        assert host_of(server_id) == second
    finally:
        ComputeHost.objects.filter(name=first).update(forced_down=False)
        delete_all(admin, cluster, [server_id])


def test_a_drain_moves_what_can_move_and_names_what_cannot(two_host_cluster, admin, image, tiny_flavor):
    cluster = two_host_cluster
    first, second = TWO_HOSTS
    group = ServerGroup.objects.create(
        name="apart", project=admin.ctx.project, user=admin.ctx.user, policy="anti-affinity"
    )
    hints = {"os:scheduler_hints": {"group": str(group.uuid)}}
    servers = []
    try:
        # One member of an anti-affinity group on each host, and a server of no group on the first.
        for host, name in ((first, "apart-1"), (second, "apart-2")):
            body = {
                "server": {
                    "name": name,
                    "imageRef": str(image.id),
                    "flavorRef": tiny_flavor.flavorid,
                    "networks": "none",
                    "host": host,
                },
                **hints,
            }
            response = admin.post("/servers", body, headers=VERSION)
            assert response.status_code == 202, response.text
            servers.append(response.json()["server"]["id"])
        loner = boot(admin, image, tiny_flavor, first, "loner")
        servers.append(loner)
        for server_id in servers:
            wait_status(admin, server_id, "ACTIVE")

        response = admin.post("/os-host-drains", {"drain": {"host": first}})
        assert response.status_code == 202, response.text
        drain_id = response.json()["drain"]["id"]
        assert not ComputeHost.objects.get(name=first).enabled

        def finished():
            drain = admin.get(f"/os-host-drains/{drain_id}").json()["drain"]
            return drain if drain["status"] == "done" else None

        drain = wait_until(finished, 300, message="the drain")
        results = {item["name"]: item for item in drain["items"]}
        assert results["loner"]["status"] == "moved"
        assert host_of(loner) == second
        # The group's member cannot join its sibling: it stays, and the drain says why.
        assert results["apart-1"]["status"] == "failed"
        assert "No valid host" in results["apart-1"]["reason"]
        assert host_of(servers[0]) == first
    finally:
        ComputeHost.objects.filter(name=first).update(enabled=True, disabled_reason="")
        delete_all(admin, cluster, servers)
