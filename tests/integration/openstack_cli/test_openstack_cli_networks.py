"""`openstack server create --network …` / `--nic …` with the real CLI. The catalog has a network service, so
the CLI looks network names up through the networking API (no longer through the compute API's
``os-networks`` proxy, which stays for clients that ask it directly)."""

from __future__ import annotations

import pytest
from django.conf import settings

from portal.models import Instance

pytestmark = pytest.mark.integration


def test_network_list_and_server_create_network_options(cli, host_up, tiny_flavor, demo_image):
    label = settings.CLOUD["NETWORK"]["label"]
    # --network <name>: the CLI asks the networking API for the name; the user-mode label is not a network
    # there, so it is not found, and nothing is made.
    message = cli.member.fails(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--network", label, "vm-net"
    )
    assert f"no network found for {label}" in message.lower(), message
    assert not Instance.objects.filter(name="vm-net").exists()
    # Once the project has a network of that name, the CLI finds it there.
    made = cli.member.json("network", "create", label)
    assert cli.member.json("network", "show", label)["id"] == made["id"]
    assert [n["Name"] for n in cli.member.json("network", "list")] == [label]

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
