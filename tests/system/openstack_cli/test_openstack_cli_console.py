"""The issue's new user, with the real `openstack` CLI and a real Keystone, on a real QEMU guest:
upload the demo image, `server create --image demo --flavor m1.tiny --wait vm1`, read the console log,
`console url show vm1` and open the URL's token through the console proxy."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

import libvirt
import pytest
import requests
from django.conf import settings as django_settings

from portal.internal.consoleauth import SECRET_HEADER
from tests.processes import wait_for_host, wait_until
from tests.system.conftest import SYSTEM_HOST
from tests.wsclient import WebSocketClient

pytestmark = pytest.mark.system


def console_log_shows_prompt(cli) -> str | None:
    out = cli.member.ok("console", "log", "show", "vm1")
    return out if "demo# " in out else None


def test_boot_the_demo_image_and_open_its_console(cli, qemu_cluster, demo_image, tiny_flavor, settings):
    settings.CONSOLE = {**settings.CONSOLE, "PROXY_BASE_URL": f"{qemu_cluster.proxy_origin}/vnc_lite.html"}
    wait_for_host(SYSTEM_HOST)

    image = cli.admin.json(
        "image",
        "create",
        "--file",
        str(demo_image),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--public",
        "demo",
    )
    assert (image["name"], image["status"], image["visibility"]) == ("demo", "active", "public")
    assert image["size"] == demo_image.stat().st_size

    server = cli.member.json("server", "create", "--image", "demo", "--flavor", "m1.tiny", "--wait", "vm1")
    try:
        assert server["status"] == "ACTIVE", server
        assert server["image"] == f"demo ({image['id']})"

        wait_until(lambda: console_log_shows_prompt(cli), 90, interval=2, message="the guest's shell prompt")
        last = cli.member.ok("console", "log", "show", "--lines", "3", "vm1")
        assert 0 < len(last.splitlines()) <= 3

        console = cli.member.json("console", "url", "show", "vm1")
        assert console["type"] == "novnc"
        assert console["protocol"] == "vnc"
        url = console["url"]
        assert url.startswith(f"{qemu_cluster.proxy_origin}/vnc_lite.html?path=")
        path = unquote(parse_qs(urlsplit(url).query)["path"][0])
        token = re.fullmatch(r"\?token=([A-Za-z0-9_-]+)", path).group(1)

        # The consoleauth view resolves the token to this server's VNC port ...
        resolved = requests.get(
            f"{cli.api_url}/internal/consoleauth/{token}",
            headers={SECRET_HEADER: django_settings.CONSOLE["AUTH_SECRET"]},
            timeout=10,
        )
        assert resolved.status_code == 200
        assert resolved.json()["instance_uuid"] == server["id"]
        # ... and the proxy, opened with the URL's token, speaks RFB from the guest's QEMU.
        with WebSocketClient.connect(
            "127.0.0.1", qemu_cluster.proxy_port, path.replace("?", "/?", 1), origin=qemu_cluster.proxy_origin
        ) as ws:
            assert ws.recv_exactly(12) == b"RFB 003.008\n"
        assert token not in qemu_cluster.processes["consoleproxy"].output()
    finally:
        cli.member.run("server", "delete", "--wait", "vm1")
    assert cli.member.json("server", "list") == []
    conn = libvirt.open("qemu:///system")
    try:
        assert server["id"] not in [d.UUIDString() for d in conn.listAllDomains()]
    finally:
        conn.close()
