"""`openstack server create --network …` / `--nic …` with the real CLI when the catalog has no network
service: the CLI then looks networks up through the compute API's ``os-networks`` proxy (at 2.1), and the
cloud answers there with the one network every server's NIC is on."""

from __future__ import annotations

import pytest
from django.conf import settings

from portal.models import Instance

pytestmark = pytest.mark.integration


def test_network_list_and_server_create_network_options(cli, host_up, tiny_flavor, demo_image):
    label = settings.CLOUD["NETWORK"]["label"]
    # --network <label>: the CLI finds the network through os-networks and asks for it by uuid.
    on_net = cli.member.json(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--network", label, "--wait", "vm-net"
    )
    assert on_net["status"] == "ACTIVE", on_net
    assert label in str(on_net["addresses"])
    assert Instance.objects.get(uuid=on_net["id"]).mac_address

    # --nic none: no NIC at all.
    no_nic = cli.member.json(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--nic", "none", "--wait", "vm-nonic"
    )
    assert no_nic["status"] == "ACTIVE", no_nic
    assert not no_nic["addresses"]

    # --network none names a network called "none", as with Nova: there is none, and the CLI says so
    # (before os-networks existed here it failed on a 404 of the proxy itself).
    message = cli.member.fails(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--network", "none", "vm-none"
    )
    assert "none not found" in message.lower() or "no network" in message.lower(), message
    assert not Instance.objects.filter(name="vm-none").exists()
