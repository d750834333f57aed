"""The plan -> desired state of a host's data plane: names, dnsmasq's files and command line, nftables."""

import uuid

import pytest

from compute_tasks.dataplane.desired import PlanError, Settings, desired_state, hostname, network_state
from compute_tasks.rpc import HostNetworkPlan, Neighbour, NetworkPlan, PortPlan, SubnetPlan

pytestmark = pytest.mark.unit

NET = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
SETTINGS = Settings(tunnel_address="10.0.0.1", namespace="hv1", physical_networks={"public": "br-public"})


def port(n, ip, **kw):
    port_id = str(uuid.UUID(int=n))
    return PortPlan(port_id=port_id, mac=f"fa:16:3e:00:00:{n:02x}", device=f"tap{port_id[:11]}", ips=[ip], **kw)


def vxlan_plan(**kw):
    mine, theirs = port(1, "10.1.0.11", hostname="Web_01"), port(2, "10.1.0.12")
    values = {
        "network_id": NET,
        "network_type": "vxlan",
        "mtu": 1450,
        "segmentation_id": 4242,
        "subnets": [
            SubnetPlan(
                subnet_id="sub-1",
                cidr="10.1.0.0/24",
                gateway_ip="10.1.0.1",
                dns_nameservers=["10.9.9.9"],
                host_routes=[{"destination": "10.2.0.0/16", "nexthop": "10.1.0.254"}],
            )
        ],
        "ports": [mine],
        "dhcp_mac": "FA:16:3E:AA:00:01",
        "dhcp_ips": ["10.1.0.2"],
        "leases": [mine, theirs],
        "remotes": ["10.0.0.2", "10.0.0.1"],
        "neighbours": [Neighbour(mac=theirs.mac, ip="10.1.0.12", remote="10.0.0.2")],
    }
    values.update(kw)
    return NetworkPlan(**values)


def test_a_vxlan_network_becomes_a_bridge_a_vxlan_device_and_pushed_fdb_entries():
    state = desired_state(HostNetworkPlan(host="hv1", generation=3, networks=[vxlan_plan()]), SETTINGS)
    (net,) = state.networks
    assert net.bridge == "brq3f2a9c1e-5b" and len(net.bridge) <= 15
    assert net.vxlan == "vxlan-4242" and net.vni == 4242
    assert net.flood == ("10.0.0.2",)  # never to itself
    assert net.pinned == (("fa:16:3e:00:00:02", "10.0.0.2"),)
    assert state.devices == {net.ports[0].device: net.bridge}


def test_dhcp_serves_static_leases_of_this_hosts_ports_and_names_every_port():
    (net,) = desired_state(HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan()]), SETTINGS).networks
    dhcp = net.dhcp
    assert dhcp.namespace == f"hv1-qdhcp-{NET}" and dhcp.mac == "fa:16:3e:aa:00:01"
    # The metadata proxy's address is on the DHCP leg too.
    assert dhcp.addresses == ("10.1.0.2/24", "169.254.169.254/32")
    assert "--dhcp-range=set:subnet-sub-1,10.1.0.0,static,255.255.255.0,86400s" in dhcp.args
    assert "--no-resolv" in dhcp.args and "--bind-interfaces" in dhcp.args
    assert not any(a.startswith("--server") for a in dhcp.args)  # nothing upstream
    assert dhcp.hosts == "fa:16:3e:00:00:01,web-01,10.1.0.11\n"  # only this host's port
    assert dhcp.addn_hosts == "10.1.0.11\tweb-01\n10.1.0.12\thost-10-1-0-12\n"
    assert dhcp.options.splitlines() == [
        "tag:subnet-sub-1,option:router,10.1.0.1",
        "tag:subnet-sub-1,option:dns-server,10.1.0.2,10.9.9.9",
        # The metadata address through the DHCP port first, then the host routes and the default route;
        # option 249 the same for older clients.
        "tag:subnet-sub-1,option:classless-static-route,169.254.169.254/32,10.1.0.2,10.2.0.0/16,10.1.0.254,"
        "0.0.0.0/0,10.1.0.1",
        "tag:subnet-sub-1,249,169.254.169.254/32,10.1.0.2,10.2.0.0/16,10.1.0.254,0.0.0.0/0,10.1.0.1",
        "tag:subnet-sub-1,option:mtu,1450",
    ]


def test_no_gateway_means_no_router_and_no_dhcp_subnet_means_no_server():
    subnet = SubnetPlan(subnet_id="s", cidr="10.1.0.0/24", gateway_ip=None)
    (net,) = desired_state(
        HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan(subnets=[subnet])]), SETTINGS
    ).networks
    assert "tag:subnet-s,option:router\n" in net.dhcp.options
    # With no router the metadata route is the only classless route (no default route next to it).
    assert "tag:subnet-s,option:classless-static-route,169.254.169.254/32,10.1.0.2\n" in net.dhcp.options
    off = SubnetPlan(subnet_id="s", cidr="10.1.0.0/24", enable_dhcp=False)
    (net,) = desired_state(
        HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan(subnets=[off])]), SETTINGS
    ).networks
    assert net.dhcp is None


def test_the_ruleset_keeps_guests_off_the_host_and_dhcp_frames_off_the_overlay():
    state = desired_state(HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan()]), SETTINGS)
    rules = state.ruleset
    tap = state.networks[0].ports[0].device
    assert "type filter hook input" in rules and "iifname @guest_ifaces drop" in rules
    assert f'set guest_ifaces {{ type ifname; elements = {{ "brq3f2a9c1e-5b", "{tap}", "vxlan-4242" }} }}' in rules
    assert '"brq3f2a9c1e-5b" . "brq3f2a9c1e-5b"' in rules  # a bridge's traffic stays on it
    assert "iifname @guest_bridges iifname . oifname != @same_bridge drop" in rules
    assert f'set local_ports {{ type ifname; elements = {{ "dhq3f2a9c1e-5b", "{tap}" }} }}' in rules
    assert "set dhcp_macs { type ether_addr; elements = { fa:16:3e:aa:00:01 } }" in rules
    assert "ether saddr @dhcp_macs oifname != @local_ports drop" in rules
    assert f'"{tap}" . fa:16:3e:00:00:01' in rules
    assert f'"{tap}" . 0.0.0.0, "{tap}" . 10.1.0.11' in rules
    assert f'"{tap}" . ::, "{tap}" . fe80::/10' in rules
    unsecured = vxlan_plan(ports=[port(1, "10.1.0.11", port_security_enabled=False)])
    rules = desired_state(HostNetworkPlan(host="hv1", generation=1, networks=[unsecured]), SETTINGS).ruleset
    assert "set secured { type ifname; }" in rules and "fa:16:3e:00:00:01" not in rules
    assert desired_state(HostNetworkPlan(host="hv1", generation=1), SETTINGS).ruleset == ""


def test_flat_networks_use_the_configured_bridge_or_enslave_the_interface():
    flat = vxlan_plan(network_type="flat", segmentation_id=None, physical_network="public", remotes=[], neighbours=[])
    plan = HostNetworkPlan(host="hv1", generation=1, networks=[flat])
    (on_bridge,) = desired_state(
        plan, Settings(physical_networks={"public": "br-public"}, bridges=frozenset({"br-public"}))
    ).networks
    assert (on_bridge.bridge, on_bridge.owns_bridge, on_bridge.uplink) == ("br-public", False, "")
    (on_iface,) = desired_state(plan, Settings(physical_networks={"public": "eth1"})).networks
    assert (on_iface.bridge, on_iface.owns_bridge, on_iface.uplink) == ("brq3f2a9c1e-5b", True, "eth1")


@pytest.mark.parametrize(
    ("change", "settings", "message"),
    [
        ({"network_type": "flat", "physical_network": "nowhere"}, SETTINGS, "does not carry"),
        ({"segmentation_id": None}, SETTINGS, "no valid VNI"),
        ({"network_type": "vlan"}, SETTINGS, "knows vxlan and flat"),
        ({}, Settings(), "no tunnel address"),
        ({"network_id": "../../etc"}, SETTINGS, "not a UUID"),
    ],
)
def test_what_the_host_cannot_have_is_refused_clearly_and_the_rest_applied(change, settings, message):
    good = vxlan_plan(network_id="9" * 8 + NET[8:], segmentation_id=5)
    state = desired_state(HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan(**change), good]), settings)
    assert message in state.problems[0]
    if settings.tunnel_address:
        assert [n.network_id for n in state.networks] == [good.network_id]


def test_networks_whose_device_names_would_clash_are_refused():
    twin = vxlan_plan(network_id=NET[:11] + "0" * 8 + NET[19:], segmentation_id=5)
    state = desired_state(HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan(), twin]), SETTINGS)
    assert len(state.networks) == 1 and "same 11 characters" in state.problems[0]


def test_a_network_id_that_is_not_a_uuid_is_refused():
    with pytest.raises(PlanError, match="not a UUID"):
        network_state(vxlan_plan(network_id="x"), SETTINGS)


def test_devices_and_macs_that_are_not_a_ports_are_ignored():
    bad = PortPlan(port_id="x", mac="fa:16:3e:00:00:09", device="eth0; rm -rf /", ips=["10.1.0.9"])
    (net,) = desired_state(
        HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan(ports=[bad])]), SETTINGS
    ).networks
    assert net.ports == ()


def test_hostnames_are_dns_labels():
    assert hostname(PortPlan(port_id="p", mac="", device="", hostname="My Server!")) == "my-server"
    assert hostname(PortPlan(port_id="p", mac="", device="", ips=["10.0.0.5"])) == "host-10-0-0-5"


def test_a_port_an_admin_set_down_is_not_plugged():
    down = port(1, "10.1.0.11", admin_state_up=False)
    (net,) = desired_state(
        HostNetworkPlan(host="hv1", generation=1, networks=[vxlan_plan(ports=[down])]), SETTINGS
    ).networks
    assert net.ports == ()


def _sg_plan(ports):
    from compute_tasks.rpc import HostNetworkPlan, NetworkPlan

    network = NetworkPlan(
        network_id="6b3e4c36-9d5d-4a8e-9d6b-2ad1c6f0a1b2",
        network_type="vxlan",
        mtu=1450,
        segmentation_id=7,
        ports=ports,
    )
    return HostNetworkPlan(host="h", generation=1, networks=[network])


def test_security_group_rules_become_each_filtered_ports_chains():
    from compute_tasks.dataplane.desired import Settings, desired_state
    from compute_tasks.rpc import PortPlan, RulePlan

    rules = [
        RulePlan("egress", "IPv4"),
        RulePlan("ingress", "IPv4", protocol=6, port_min=80, port_max=80),
        RulePlan("ingress", "IPv4", protocol=17, port_min=5000, port_max=5010, remote=["10.0.0.9/32", "10.0.0.8/32"]),
        RulePlan("ingress", "IPv4", protocol=1, port_min=8, port_max=0),
        RulePlan("ingress", "IPv6", protocol=58, port_min=128),
        RulePlan("ingress", "IPv4", remote=[]),  # a remote group with no members: matches nothing
        RulePlan("ingress", "IPv4", remote=["fd00::/64"]),  # of the other family: matches nothing
    ]
    filtered = PortPlan(
        port_id="p1", mac="fa:16:3e:00:00:01", device="tapaaaaaaaa-01", ips=["10.0.0.5"], filtered=True, rules=rules
    )
    loose = PortPlan(
        port_id="p2", mac="fa:16:3e:00:00:02", device="tapaaaaaaaa-02", ips=["10.0.0.6"], port_security_enabled=False
    )
    unfiltered = PortPlan(port_id="p3", mac="fa:16:3e:00:00:03", device="tapaaaaaaaa-03", ips=["10.0.0.7"])
    ruleset = desired_state(_sg_plan([filtered, loose, unfiltered]), Settings(tunnel_address="10.0.0.1")).ruleset
    chain_in = ruleset.split("chain sg-in-1 {")[1].split("\n  }")[0].strip().splitlines()
    assert [line.strip() for line in chain_in] == [
        "ct state invalid drop",
        "ct state established,related return",
        "meta nfproto ipv4 udp sport 67 udp dport 68 return",
        "meta nfproto ipv4 meta l4proto 6 th dport 80 return",
        "meta nfproto ipv4 ip saddr { 10.0.0.8/32, 10.0.0.9/32 } meta l4proto 17 th dport 5000-5010 return",
        "meta nfproto ipv4 meta l4proto 1 icmp type 8 icmp code 0 return",
        "meta nfproto ipv6 meta l4proto 58 icmpv6 type 128 return",
        "drop",
    ]
    chain_out = ruleset.split("chain sg-out-1 {")[1].split("\n  }")[0].strip().splitlines()
    assert [line.strip() for line in chain_out][-3:] == [
        "udp sport 67 udp dport 68 drop",  # no DHCP server in a guest
        "meta nfproto ipv4 return",
        "drop",
    ]
    # Only the filtered port is marked and judged; a port without port security or filtering is not.
    assert "sg-in-2" not in ruleset and "sg-out-2" not in ruleset
    assert 'oifname "tapaaaaaaaa-01" meta mark set meta mark and 0xffff or 0x10000' in ruleset
    assert 'tapaaaaaaaa-02" meta mark' not in ruleset and 'tapaaaaaaaa-03" meta mark' not in ruleset
    assert "meta mark and 0xffff vmap { 1 : jump sg-out-1 }" in ruleset


def test_plans_carry_rules_through_json():
    from compute_tasks.rpc import HostNetworkPlan, PortPlan, RulePlan

    port = PortPlan(
        port_id="p1", mac="fa:16:3e:00:00:01", device="tapaaaaaaaa-01", filtered=True,
        rules=[RulePlan("ingress", "IPv4", protocol=6, port_min=22, port_max=22, remote=["10.0.0.0/24"])],
    )  # fmt: skip
    plan = _sg_plan([port])
    again = HostNetworkPlan.from_dict(plan.to_dict())
    assert again == plan and again.networks[0].ports[0].rules[0].remote == ["10.0.0.0/24"]
