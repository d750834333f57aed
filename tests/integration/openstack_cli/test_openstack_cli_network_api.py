"""The real ``openstack`` CLI against the networking API, found through the built-in identity's catalog:
networks, subnets and ports made, listed, shown and deleted as a person would type it."""

from __future__ import annotations

import pytest

from portal.models import Network, Port

pytestmark = pytest.mark.integration

CLI_IDENTITIES = ("builtin",)


def test_networks_subnets_and_ports_with_the_cli(cli):
    member, admin, other = cli.member, cli.admin, cli.other
    catalog = {entry["Name"]: entry for entry in member.json("catalog", "list")}
    assert "neutron" in catalog and "/networking" in str(catalog["neutron"]["Endpoints"])

    net = member.json("network", "create", "blue")
    assert net["name"] == "blue" and net["status"] == "ACTIVE" and net["mtu"] == 1450
    assert net["provider:network_type"] is None  # hidden from members
    sub = member.json("subnet", "create", "--network", "blue", "--subnet-range", "10.77.0.0/24", "blue-sub")
    assert sub["cidr"] == "10.77.0.0/24" and sub["gateway_ip"] == "10.77.0.1"
    assert sub["allocation_pools"] == [{"start": "10.77.0.2", "end": "10.77.0.254"}]
    made = member.json(
        "port", "create", "--network", "blue", "--fixed-ip", "subnet=blue-sub,ip-address=10.77.0.40", "blue-port"
    )
    assert made["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.77.0.40"}]
    auto = member.json("port", "create", "--network", "blue", "auto-port")
    assert auto["fixed_ips"][0]["ip_address"] == "10.77.0.3"  # .2 is the network's DHCP port

    quiet = member.json(
        "subnet", "create", "--network", "blue", "--subnet-range", "10.78.0.0/24", "--no-dhcp", "--gateway", "none",
        "--allocation-pool", "start=10.78.0.100,end=10.78.0.110", "--dns-nameserver", "10.78.0.53", "quiet-sub",
    )  # fmt: skip
    assert quiet["enable_dhcp"] is False and quiet["gateway_ip"] is None and quiet["dns_nameservers"] == ["10.78.0.53"]
    assert quiet["allocation_pools"] == [{"start": "10.78.0.100", "end": "10.78.0.110"}]
    member.ok("subnet", "set", "--name", "calm-sub", "quiet-sub")
    member.ok("port", "set", "--name", "auto-renamed", "auto-port")
    assert member.json("port", "show", "auto-renamed")["id"] == auto["id"]
    assert {p["Name"] for p in member.json("port", "list", "--network", "blue")} >= {"blue-port", "auto-renamed"}
    member.ok("port", "set", "--name", "auto-port", "auto-renamed")
    member.ok("subnet", "delete", "calm-sub")

    ports = {p["Name"]: p for p in member.json("port", "list")}
    assert {"blue-port", "auto-port"} <= set(ports)
    assert "10.77.0.40" in str(ports["blue-port"]["Fixed IP Addresses"])
    assert [p["Name"] for p in member.json("port", "list", "--fixed-ip", "ip-address=10.77.0.40")] == ["blue-port"]
    listed = {n["Name"]: n for n in member.json("network", "list")}
    assert sub["id"] in str(listed["blue"]["Subnets"])
    # Another project sees none of it.
    assert "blue" not in {n["Name"] for n in other.json("network", "list")}
    assert "No Network found" in other.fails("network", "show", net["id"])

    # The admin sees the provider attributes.
    shown = admin.json("network", "show", net["id"])
    assert shown["provider:network_type"] == "vxlan" and shown["provider:segmentation_id"] >= 1
    shared = admin.json("network", "create", "--share", "--provider-network-type", "flat",
                        "--provider-physical-network", "public", "public")  # fmt: skip
    assert shared["shared"] is True and shared["provider:physical_network"] == "public" and shared["mtu"] == 1500

    # A network with ports on it is not deleted (409), then is once they are gone.
    error = member.fails("network", "delete", "blue")
    assert "409" in error or "in use" in error.lower(), error
    assert Network.objects.filter(pk=net["id"]).exists()
    member.ok("port", "delete", "blue-port", "auto-port")
    member.ok("network", "delete", "blue")
    assert not Network.objects.filter(pk=net["id"]).exists()
    assert not Port.objects.filter(network_id=net["id"]).exists()  # the DHCP port went with it


def test_network_quotas_with_the_cli(cli):
    shown = {row["Resource"]: row["Limit"] for row in cli.member.json("quota", "show")}
    assert shown["networks"] == 100 and shown["ports"] == 500 and shown["subnets"] == 100
    cli.admin.ok("quota", "set", "--networks", "3", cli.member.project)
    shown = {row["Resource"]: row["Limit"] for row in cli.member.json("quota", "show")}
    assert shown["networks"] == 3
