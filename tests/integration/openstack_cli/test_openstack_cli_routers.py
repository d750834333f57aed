"""The real ``openstack`` CLI with routers and floating IPs, as a person would type it: a router on a
project's subnet with its gateway on ``public``, a floating IP given to a server and taken back, and
everything removed again; another project sees none of it."""

from __future__ import annotations

import pytest

from portal.models import FloatingIP, Port, Router

pytestmark = pytest.mark.integration

CLI_IDENTITIES = ("builtin",)


def test_routers_and_floating_ips_with_the_cli(cli, host_up, tiny_flavor, demo_image):
    admin, member, other = cli.admin, cli.member, cli.other
    # The operator's external network (its physical network is on no host here: nothing is plugged).
    public = admin.json(
        "network", "create", "--external", "--provider-network-type", "flat",
        "--provider-physical-network", "cli-ext", "public",
    )  # fmt: skip
    assert public["router:external"] is True
    admin.json("subnet", "create", "--network", "public", "--subnet-range", "198.51.100.0/24", "--no-dhcp", "pub-sub")

    member.json("network", "create", "amber")
    sub = member.json("subnet", "create", "--network", "amber", "--subnet-range", "10.82.0.0/24", "amber-sub")
    made = member.json("router", "create", "edge")
    assert made["name"] == "edge" and made["status"] == "ACTIVE"
    member.ok("router", "add", "subnet", "edge", "amber-sub")
    member.ok("router", "set", "--external-gateway", "public", "edge")
    shown = member.json("router", "show", "edge")
    assert shown["external_gateway_info"]["network_id"] == public["id"], shown
    assert shown["external_gateway_info"]["enable_snat"] is True
    assert [(i["subnet_id"], i["ip_address"]) for i in shown["interfaces_info"]] == [(sub["id"], "10.82.0.1")]
    assert "edge" in {r["Name"] for r in member.json("router", "list")}
    # SNAT off is the admins' to choose.
    refused = member.fails("router", "set", "--external-gateway", "public", "--disable-snat", "edge")
    assert "policy" in refused.lower() or "403" in refused, refused

    server = member.json(
        "server", "create", "--image", "demo", "--flavor", "m1.tiny", "--network", "amber", "--wait", "lit"
    )
    assert server["status"] == "ACTIVE", server
    fip = member.json("floating", "ip", "create", "public")
    address = fip["floating_ip_address"]
    assert address.startswith("198.51.100.") and fip["status"] == "DOWN"
    member.ok("server", "add", "floating", "ip", "lit", address)
    (port,) = Port.objects.filter(device_id=server["id"])
    assert FloatingIP.objects.get(pk=fip["id"]).port_id == port.pk
    addresses = member.json("server", "show", "lit")["addresses"]
    assert address in str(addresses) and "10.82.0." in str(addresses), addresses
    listed = member.json("floating", "ip", "list")
    assert [(f["Floating IP Address"], f["Port"]) for f in listed] == [(address, str(port.pk))]
    # Another project lists nothing of it, and cannot take it.
    assert other.json("floating", "ip", "list") == []
    assert "edge" not in {r["Name"] for r in other.json("router", "list")}
    assert other.fails("floating", "ip", "delete", fip["id"])

    # While the floating IP goes through it, the router keeps its interface.
    assert "floating" in member.fails("router", "remove", "subnet", "edge", "amber-sub").lower()
    member.ok("server", "remove", "floating", "ip", "lit", address)
    assert address not in str(member.json("server", "show", "lit")["addresses"])
    assert member.json("floating", "ip", "show", address)["status"] == "DOWN"
    member.ok("floating", "ip", "delete", address)
    assert member.json("floating", "ip", "list") == []

    member.ok("server", "delete", "--wait", "lit")
    member.ok("router", "remove", "subnet", "edge", "amber-sub")
    member.ok("router", "delete", "edge")
    assert not Router.objects.exists()
    assert not Port.objects.filter(device_owner__startswith="network:router").exists()
