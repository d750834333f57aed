"""The screen of a real VM through the console proxy: the RFB handshake, refusals, and noVNC in Chromium."""

from __future__ import annotations

import re

import libvirt
import pytest

from tests.browser import launch_chromium
from tests.images import public_image
from tests.png import distinct_colours
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import ARTIFACTS, SYSTEM_HOST
from tests.wsclient import HandshakeRefused, WebSocketClient

pytestmark = pytest.mark.system


@pytest.fixture
def running_vm(qemu_cluster, api_user, tiny_flavor, demo_image, settings):
    settings.CONSOLE = {**settings.CONSOLE, "PROXY_BASE_URL": f"{qemu_cluster.proxy_origin}/vnc_lite.html"}
    image = public_image(project=api_user.ctx.project, path=demo_image, name="demo")
    wait_for_host(SYSTEM_HOST)
    body = {"server": {"name": "console-vm", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}
    server_id = api_user.post("/servers", body).json()["server"]["id"]
    try:
        wait_until(lambda: api_user.server(server_id)["status"] == "ACTIVE", 120, message="ACTIVE")
        log = qemu_cluster.instance_dir(SYSTEM_HOST, server_id) / "console.log"
        wait_until(lambda: log.exists() and b"demo# " in log.read_bytes(), 60, message="the guest's prompt")
        yield server_id
    finally:
        api_user.delete(f"/servers/{server_id}")
        wait_until(lambda: api_user.get(f"/servers/{server_id}").status_code == 404, 60, message="deletion")
        conn = libvirt.open("qemu:///system")
        try:
            assert server_id not in [d.UUIDString() for d in conn.listAllDomains()]
        finally:
            conn.close()


def console_url(api_user, server_id) -> str:
    response = api_user.post(
        f"/servers/{server_id}/remote-consoles", {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    )
    assert response.status_code == 200, response.text
    return response.json()["remote_console"]["url"]


def token_of(url: str) -> str:
    return re.search(r"token%3D([A-Za-z0-9_-]+)", url).group(1)


def test_the_console_of_a_real_vm_in_chromium_and_through_the_proxy(qemu_cluster, api_user, running_vm):
    """One booted guest serves both: noVNC in Chromium first, then the handshake, the refusals and, as it
    stops the server, the revocation of its tokens."""
    novnc_in_chromium_shows_the_vm_screen(qemu_cluster, api_user, running_vm)
    rfb_handshake_through_the_proxy_and_refusals(qemu_cluster, api_user, running_vm)


def rfb_handshake_through_the_proxy_and_refusals(qemu_cluster, api_user, running_vm):
    """The RFB handshake through the proxy; a forged token, a foreign origin and no origin refused; stopping the
    server revokes its tokens."""
    url = console_url(api_user, running_vm)
    assert url.startswith(f"{qemu_cluster.proxy_origin}/vnc_lite.html?path=")
    token = token_of(url)
    port, origin = qemu_cluster.proxy_port, qemu_cluster.proxy_origin

    with WebSocketClient.connect("127.0.0.1", port, f"/?token={token}", origin=origin) as ws:
        assert ws.recv_exactly(12) == b"RFB 003.008\n"
        ws.send_binary(b"RFB 003.008\n")
        count = ws.recv_exactly(1)[0]
        assert count >= 1
        assert 1 in ws.recv_exactly(count)  # QEMU offers "None": the proxy is the gate

    with pytest.raises(HandshakeRefused) as refused:
        WebSocketClient.connect("127.0.0.1", port, f"/?token={token[:-2]}xx", origin=origin)
    assert refused.value.status == 403
    with pytest.raises(HandshakeRefused):
        WebSocketClient.connect("127.0.0.1", port, f"/?token={token}", origin="http://evil.example")
    # A client that is not a browser sends no Origin: its token decides, as with Nova's proxy.
    with WebSocketClient.connect("127.0.0.1", port, f"/?token={token}") as ws:
        assert ws.recv_exactly(12) == b"RFB 003.008\n"

    # Stopping the server revokes its tokens.
    assert api_user.post(f"/servers/{running_vm}/action", {"os-stop": None}).status_code == 202
    wait_until(lambda: api_user.server(running_vm)["status"] == "SHUTOFF", 60, message="SHUTOFF")
    with pytest.raises(HandshakeRefused):
        WebSocketClient.connect("127.0.0.1", port, f"/?token={token}", origin=origin)
    assert token not in qemu_cluster.processes["consoleproxy"].output()


def novnc_in_chromium_shows_the_vm_screen(qemu_cluster, api_user, running_vm):
    """noVNC in Chromium connects through the proxy and shows the guest's screen."""
    from playwright.sync_api import sync_playwright

    url = console_url(api_user, running_vm)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            page.goto(url)
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('Connected')", timeout=30_000
            )
            status = page.text_content("#status")
            assert status.startswith("Connected to QEMU (instance-")
            canvas = page.locator("canvas")
            wait_until(lambda: distinct_colours(canvas.screenshot()) > 1, 30, message="a non-blank screen")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-demo-vm.png"))
        finally:
            browser.close()
    assert token_of(url) not in qemu_cluster.processes["consoleproxy"].output()
