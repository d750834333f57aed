"""Server actions on real guests (the demo image on qemu:///system): pause, suspend and resume seen by the
guest's own serial console, the banner in os-getConsoleOutput, and a snapshot that boots as a new server.

The guest runs a shell on its serial port: a command typed into the port's pty is echoed into the
serial log, which proves the guest is running (and not rebooted) after each action.
"""

from __future__ import annotations

import os
import time
import uuid
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML

import libvirt
import pytest

from portal.models import Image
from tests.images import public_image
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import SYSTEM_HOST

pytestmark = pytest.mark.system

BANNER = "Welcome to the cloud demo guest"
PROMPT = b"demo# "


@pytest.fixture
def demo(api_user, demo_image, settings, live_server):
    settings.CLOUD = {**settings.CLOUD, "PUBLIC_URL": live_server.url}
    image = public_image(project=api_user.ctx.project, path=demo_image, name="demo")
    return image


@pytest.fixture
def libvirt_conn():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


def act(user, server_id, body, version="2.47"):
    return user.session.post(
        user.url(f"/servers/{server_id}/action"),
        json=body,
        headers={"OpenStack-API-Version": f"compute {version}"},
        timeout=30,
    )


def settle(user, server_id, status, timeout=120):
    def settled():
        server = user.server(server_id)
        return server["status"] == status and server["OS-EXT-STS:task_state"] is None

    wait_until(settled, timeout, interval=0.2, message=f"{server_id} to be {status}")


class SerialConsole:
    """The guest's serial console through its pty on this host, kept open: QEMU reads what is typed only
    while someone holds the pty, and notices a new holder within a second."""

    def __init__(self, conn, server_id: str):
        xml = ET.fromstring(conn.lookupByUUIDString(server_id).XMLDesc(0))  # noqa: S314
        self.fd = os.open(xml.find("./devices/serial/source").get("path"), os.O_RDWR | os.O_NOCTTY)
        time.sleep(1.5)

    def type(self, line: str) -> None:
        for char in line + "\n":  # one at a time, so the emulated UART's FIFO never overflows
            os.write(self.fd, char.encode())
            time.sleep(0.02)

    def close(self) -> None:
        os.close(self.fd)


def boot(cluster, user, image, name):
    body = {"server": {"name": name, "imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}
    response = user.post("/servers", body)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    settle(user, server_id, "ACTIVE")
    log = cluster.instance_dir(SYSTEM_HOST, server_id) / "console.log"
    wait_until(lambda: log.exists() and PROMPT in log.read_bytes(), 90, message="the guest's prompt")
    return server_id, log


def remove(user, conn, server_id):
    user.delete(f"/servers/{server_id}")
    wait_until(lambda: user.get(f"/servers/{server_id}").status_code == 404, 120, message="deletion")
    assert server_id not in [d.UUIDString() for d in conn.listAllDomains()]


def answered(console: SerialConsole, log) -> str:
    """Type an echo and wait for the guest's answer in the serial log: the guest is running."""
    marker = f"alive-{uuid.uuid4().hex[:8]}"
    console.type(f"echo {marker}")
    wait_until(lambda: f"{marker}\r\n".encode() in log.read_bytes(), 60, message=f"the guest's answer {marker}")
    return marker


def test_pause_suspend_resume_and_console_output_on_a_real_guest(
    qemu_cluster, api_user, tiny_flavor, demo, libvirt_conn
):
    wait_for_host(SYSTEM_HOST)
    server_id, log = boot(qemu_cluster, api_user, demo, "actions-vm")
    try:
        output = act(api_user, server_id, {"os-getConsoleOutput": {"length": 50}})
        assert output.status_code == 200, output.text
        assert BANNER in output.json()["output"]
        assert "\x1b" not in output.json()["output"]  # control characters are removed
        domain = libvirt_conn.lookupByUUIDString(server_id)
        console = SerialConsole(libvirt_conn, server_id)
        answered(console, log)

        # Pause: the guest's vCPUs stop, so it cannot answer until it is unpaused.
        assert act(api_user, server_id, {"pause": None}).status_code == 202
        settle(api_user, server_id, "PAUSED")
        assert domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        console.type("echo while-paused")
        with pytest.raises(AssertionError):
            wait_until(lambda: b"while-paused\r\n" in log.read_bytes(), 3, message="an answer while paused")
        assert act(api_user, server_id, {"unpause": None}).status_code == 202
        settle(api_user, server_id, "ACTIVE")
        wait_until(lambda: b"while-paused\r\n" in log.read_bytes(), 30, message="the answer after unpausing")

        # Suspend: the memory is saved to disk and QEMU ends; resume restores the same guest (no boot).
        qemu_id = domain.ID()
        console.close()
        assert act(api_user, server_id, {"suspend": None}).status_code == 202
        settle(api_user, server_id, "SUSPENDED")
        assert not domain.isActive() and domain.hasManagedSaveImage(0)
        assert api_user.server(server_id)["OS-EXT-STS:power_state"] == 7
        assert act(api_user, server_id, {"resume": None}).status_code == 202
        settle(api_user, server_id, "ACTIVE")
        domain = libvirt_conn.lookupByUUIDString(server_id)
        assert domain.isActive() and not domain.hasManagedSaveImage(0)
        assert domain.ID() != qemu_id  # a new QEMU process …
        console = SerialConsole(libvirt_conn, server_id)
        marker = answered(console, log)
        console.close()
        assert BANNER.encode() not in log.read_bytes()  # … running the old guest: it did not boot again
        output = act(api_user, server_id, {"os-getConsoleOutput": {"length": 5}}).json()["output"]
        assert marker in output
    except BaseException:
        print("SERIAL LOG:", log.read_bytes()[-2000:])
        raise
    finally:
        remove(api_user, libvirt_conn, server_id)


def test_a_snapshot_boots_as_a_new_server(qemu_cluster, api_user, tiny_flavor, demo, libvirt_conn):
    wait_for_host(SYSTEM_HOST)
    made = []
    try:
        server_id, log = boot(qemu_cluster, api_user, demo, "snapshot-source")
        made.append(server_id)
        response = act(api_user, server_id, {"createImage": {"name": "demo-snap"}}, version="2.45")
        assert response.status_code == 202, response.text
        image_id = response.json()["image_id"]
        settle(api_user, server_id, "ACTIVE", timeout=300)
        image = Image.objects.get(pk=image_id)
        assert image.status == "active"
        assert image.size > 1024**2 and image.os_hash_value
        # The guest was paused only for the copy and runs on.
        assert libvirt_conn.lookupByUUIDString(server_id).state()[0] == libvirt.VIR_DOMAIN_RUNNING
        console = SerialConsole(libvirt_conn, server_id)
        answered(console, log)
        console.close()

        copy_id, copy_log = boot(qemu_cluster, api_user, image, "from-snapshot")
        made.append(copy_id)
        assert BANNER.encode() in copy_log.read_bytes()
        output = act(api_user, copy_id, {"os-getConsoleOutput": {}}).json()["output"]
        assert BANNER in output
        assert api_user.server(copy_id)["image"]["id"] == image_id
    finally:
        for made_id in made:
            remove(api_user, libvirt_conn, made_id)
