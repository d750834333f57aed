"""A real VM through the whole cloud: the demo image booted through the API on qemu:///system.

Boot to ACTIVE and the guest's banner on its serial log, with the host name and the user data the guest
read from its config drive; stop, start, soft and hard reboot, each seen in the guest; delete, and find
no domain and no disk left behind.
"""

from __future__ import annotations

import base64
import re
import uuid

import libvirt
import pytest

from portal.models import Instance
from tests.images import public_image
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import SYSTEM_HOST

pytestmark = pytest.mark.system

BANNER = b"Welcome to the cloud demo guest"


@pytest.fixture
def demo(api_user, demo_image):
    image = public_image(project=api_user.ctx.project, path=demo_image, name="demo")
    return image


@pytest.fixture
def libvirt_conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


def wait_status(user, server_id, status, timeout=120):
    return wait_until(
        lambda: user.server(server_id)["status"] == status,
        timeout,
        interval=0.2,
        message=f"{server_id} to be {status}",
    )


def banners(log_path) -> int:
    return log_path.read_bytes().count(BANNER) if log_path.exists() else 0


def test_demo_vm_boots_stops_starts_reboots_and_leaves_nothing(
    qemu_cluster, api_user, tiny_flavor, demo, libvirt_conn, request
):
    wait_for_host(SYSTEM_HOST)
    token = uuid.uuid4().hex[:8]
    # The shell works the sum out, so the marker on the serial log is the script's, not an echo of it.
    script = f"#!/bin/sh\necho user-data-{token}-$((20 + 3))\n"
    body = {
        "server": {
            "name": f"Life Cycle_{token}",
            "imageRef": str(demo.id),
            "flavorRef": "1",
            "networks": "auto",
            "user_data": base64.b64encode(script.encode()).decode(),
        }
    }
    response = api_user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    try:
        wait_status(api_user, server_id, "ACTIVE")
        instance_dir = qemu_cluster.instance_dir(SYSTEM_HOST, server_id)
        log = instance_dir / "console.log"
        wait_until(lambda: banners(log) >= 1, 60, message="the guest's banner on its serial log")
        # The guest names itself from the config drive's meta_data.json and runs its user data.
        hostname = f"life-cycle-{token}"
        named = re.compile(re.escape(BANNER) + rb"\r?\n" + re.escape(hostname.encode()) + rb"\r?\n")
        wait_until(lambda: named.search(log.read_bytes()), 30, message=f"the host name {hostname} on the serial log")
        wait_until(lambda: f"user-data-{token}-23".encode() in log.read_bytes(), 30, message="the user data's output")
        assert (instance_dir / "disk.config").is_file()
        domain = libvirt_conn.lookupByUUIDString(server_id)
        assert "device='cdrom'" in domain.XMLDesc(0)
        assert domain.isActive()
        server = api_user.server(server_id)
        assert server["OS-EXT-STS:power_state"] == 1
        assert server["config_drive"] == "True"
        assert server["addresses"]["private"][0]["OS-EXT-IPS-MAC:mac_addr"].startswith("fa:16:3e:")
        assert Instance.objects.get(uuid=server_id).vnc_port >= 5900

        # A graceful stop: the guest obeys ACPI and the domain shuts off.
        assert api_user.post(f"/servers/{server_id}/action", {"os-stop": None}).status_code == 202
        wait_status(api_user, server_id, "SHUTOFF")
        assert not domain.isActive()
        assert api_user.server(server_id)["OS-EXT-STS:power_state"] == 4

        assert api_user.post(f"/servers/{server_id}/action", {"os-start": None}).status_code == 202
        wait_status(api_user, server_id, "ACTIVE")
        wait_until(lambda: banners(log) >= 1, 60, message="the banner after start")

        for kind in ("SOFT", "HARD"):
            before = libvirt_conn.lookupByUUIDString(server_id).ID()
            assert api_user.post(f"/servers/{server_id}/action", {"reboot": {"type": kind}}).status_code == 202
            wait_until(
                lambda: api_user.server(server_id)["OS-EXT-STS:task_state"] is None,
                120,
                message=f"{kind} reboot",
            )
            assert api_user.server(server_id)["status"] == "ACTIVE"
            # A new QEMU process (libvirt numbers each run anew): the guest went down and came back.
            assert libvirt_conn.lookupByUUIDString(server_id).ID() != before
            wait_until(lambda: banners(log) >= 1, 60, message=f"the banner after a {kind} reboot")

        assert api_user.delete(f"/servers/{server_id}").status_code == 204
        wait_until(lambda: api_user.get(f"/servers/{server_id}").status_code == 404, 120, message="deletion")
        with pytest.raises(libvirt.libvirtError):
            libvirt_conn.lookupByUUIDString(server_id)
        assert not instance_dir.exists()
    finally:
        _destroy_quietly(libvirt_conn, server_id)


def _destroy_quietly(conn, server_id: str) -> None:
    try:
        domain = conn.lookupByUUIDString(server_id)
    except libvirt.libvirtError:
        return
    if domain.isActive():
        domain.destroy()
    domain.undefine()
