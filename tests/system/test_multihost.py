"""Two real hypervisor hosts on one machine, as if on two: each its own libvirtd, state directory and VNC
address, one console proxy in front of both.

The demo image is booted on each host (an admin names the host, microversion 2.74); each guest reaches its
shell prompt, its screen answers through the one proxy at its own host's address, its files are only in
its own host's state directory, and one host's libvirtd knows nothing of the other's domain.
"""

from __future__ import annotations

import re

import pytest

from portal.models import Instance, Role
from scripts.libvirt_host import port_ranges
from tests.http import ApiUser
from tests.images import public_image
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import TWO_HOSTS
from tests.wsclient import WebSocketClient

pytestmark = pytest.mark.system

HOST_FIELD_VERSION = {"OpenStack-API-Version": "compute 2.74"}


@pytest.fixture
def admin(live_server):
    return ApiUser(live_server.url, role=Role.ADMIN)


@pytest.fixture
def guests(two_host_cluster, admin, tiny_flavor, demo_image, settings):
    """One demo guest on each host, at its shell prompt: {host name: server id}."""
    settings.CONSOLE = {**settings.CONSOLE, "PROXY_BASE_URL": f"{two_host_cluster.proxy_origin}/vnc_lite.html"}
    image = public_image(project=admin.ctx.project, path=demo_image, name="demo")
    for name in TWO_HOSTS:
        wait_for_host(name)
    servers = {}
    try:
        for name in TWO_HOSTS:
            body = {
                "server": {
                    "name": f"on-{name}",
                    "imageRef": str(image.id),
                    "flavorRef": "1",
                    "networks": "none",
                    "host": name,
                }
            }
            response = admin.post("/servers", body, headers=HOST_FIELD_VERSION)
            assert response.status_code == 202, response.text
            servers[name] = response.json()["server"]["id"]
        for name, server_id in servers.items():
            wait_until(lambda s=server_id: admin.server(s)["status"] == "ACTIVE", 180, message=f"ACTIVE on {name}")
            log = two_host_cluster.instance_dir(name, server_id) / "console.log"
            wait_until(lambda log=log: log.exists() and b"demo# " in log.read_bytes(), 90, message="a prompt")
        yield servers
    finally:
        for server_id in servers.values():
            admin.delete(f"/servers/{server_id}")
        for server_id in servers.values():
            wait_until(lambda s=server_id: admin.get(f"/servers/{s}").status_code == 404, 60, message="deletion")
        for name in TWO_HOSTS:
            assert not set(servers.values()) & two_host_cluster.libvirt_hosts.domain_uuids(name)


def test_each_host_runs_its_own_guest_with_its_own_files_and_screen(two_host_cluster, admin, guests):
    cluster = two_host_cluster
    (first, second) = TWO_HOSTS
    for name, server_id in guests.items():
        other = second if name == first else first
        instance = Instance.objects.select_related("host").get(uuid=server_id)
        assert instance.host.name == name

        # The files are on the host that runs the guest, and only there.
        assert (cluster.instance_dir(name, server_id) / "disk").exists()
        assert not cluster.instance_dir(other, server_id).exists()

        # Each libvirtd knows its own guest and nothing of the other host's.
        assert server_id in cluster.libvirt_hosts.domain_uuids(name)
        assert server_id not in cluster.libvirt_hosts.domain_uuids(other)

        # The screen listens on the host's own address, in the host's own port range.
        vnc_ports, _migration_ports = port_ranges(TWO_HOSTS[name])
        assert instance.vnc_host == TWO_HOSTS[name]
        assert instance.vnc_port in vnc_ports

        # ... and the one console proxy reaches it there.
        response = admin.post(
            f"/servers/{server_id}/remote-consoles", {"remote_console": {"protocol": "vnc", "type": "novnc"}}
        )
        assert response.status_code == 200, response.text
        token = re.search(r"token%3D([A-Za-z0-9_-]+)", response.json()["remote_console"]["url"]).group(1)
        with WebSocketClient.connect(
            "127.0.0.1", cluster.proxy_port, f"/?token={token}", origin=cluster.proxy_origin
        ) as ws:
            assert ws.recv_exactly(12) == b"RFB 003.008\n"
            ws.send_binary(b"RFB 003.008\n")
            count = ws.recv_exactly(1)[0]
            assert 1 in ws.recv_exactly(count)

    # The QEMU logs of both hosts are in the cluster's logs, which a failing test prints.
    logs = cluster.logs()
    for name in TWO_HOSTS:
        assert str(cluster.libvirt_hosts.hosts[name].qemu_log_dir) in logs
