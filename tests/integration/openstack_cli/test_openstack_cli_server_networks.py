"""The real ``openstack`` CLI putting servers on networks: ``server create --network`` and ``--nic
port-id=``, ``server add/remove port``, and ``network delete`` refused while ports are in use."""

from __future__ import annotations

import pytest

from portal.models import Port

pytestmark = pytest.mark.integration

CLI_IDENTITIES = ("builtin",)


def test_servers_on_networks_with_the_cli(cli, host_up, tiny_flavor, demo_image):
    member = cli.member
    member.json("network", "create", "green")
    member.json("subnet", "create", "--network", "green", "--subnet-range", "10.79.0.0/24", "green-sub")
    own_port = member.json("port", "create", "--network", "green", "--fixed-ip", "ip-address=10.79.0.50", "mine")
    spare = member.json("port", "create", "--network", "green", "spare")

    on_net = member.json(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--network", "green", "--wait", "on-net"
    )
    assert on_net["status"] == "ACTIVE", on_net
    assert "green" in str(on_net["addresses"]) and "10.79.0." in str(on_net["addresses"])
    on_port = member.json(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--nic", f"port-id={own_port['id']}",
        "--wait", "on-port",
    )  # fmt: skip
    assert on_port["status"] == "ACTIVE", on_port
    assert "10.79.0.50" in str(on_port["addresses"])
    assert [p["ID"] for p in member.json("port", "list", "--server", "on-port")] == [own_port["id"]]
    shown = member.json("port", "show", own_port["id"])
    assert shown["device_id"] == on_port["id"] and shown["device_owner"].startswith("compute:")

    # A NIC more and a NIC less, on the running server.
    member.ok("server", "add", "port", "on-net", "spare")
    assert {p["ID"] for p in member.json("port", "list", "--server", "on-net")} >= {spare["id"]}
    assert "10.79.0." in str(member.json("server", "show", "on-net")["addresses"])
    member.ok("server", "remove", "port", "on-net", "spare")
    assert spare["id"] not in {p["ID"] for p in member.json("port", "list", "--server", "on-net")}
    assert Port.objects.get(pk=spare["id"]).device_id == ""  # the user's port stays, free

    # The network cannot go while its ports are in use; once the servers and ports are gone, it can.
    refused = member.fails("network", "delete", "green")
    assert "in use" in refused.lower(), refused
    member.ok("server", "delete", "--wait", "on-net", "on-port")
    assert member.json("port", "show", own_port["id"])["device_id"] == ""  # a user's port outlives its server
    assert not Port.objects.filter(device_owner__startswith="compute:").exists()
    member.ok("port", "delete", "mine", "spare")
    member.ok("network", "delete", "green")
    assert "green" not in {n["Name"] for n in member.json("network", "list")}
