"""A plan's routers -> their desired state on the host: names, addresses, routes, the router's nftables
table, the host's table around the legs, and what is refused."""

import uuid

import pytest

from compute_tasks.dataplane.base import NullDataplane
from compute_tasks.dataplane.desired import OWNED_PREFIXES, Settings, desired_state
from compute_tasks.dataplane.drift import Fixes
from compute_tasks.rpc import FloatingPlan, HostNetworkPlan, NetworkPlan, RouterLeg, RouterPlan

pytestmark = pytest.mark.unit

SETTINGS = Settings(
    tunnel_address="10.0.0.1",
    namespace="hv1",
    physical_networks={"public": "br-public"},
    bridges=frozenset({"br-public"}),
)
TENANT = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
OTHER = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
EXTERNAL = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
ROUTER = "5d0c9b8a-7f6e-4d5c-9b4a-3f2e1d0c9b8a"
FLOATING = FloatingPlan(floating_ip="203.0.113.50", fixed_ip="10.1.0.11")


def network(network_id, **kw):
    values = {"network_id": network_id, "network_type": "vxlan", "mtu": 1450, "segmentation_id": 100}
    values.update(kw)
    return NetworkPlan(**values)


def leg(n, network_id, address, mtu=1450, **kw):
    values = {"port_id": str(uuid.UUID(int=n << 96)), "network_id": network_id, "mac": f"FA:16:3E:F0:00:{n:02X}"}
    values.update(kw)
    return RouterLeg(addresses=[address], mtu=mtu, **values)


def router(**kw):
    values = {
        "router_id": ROUTER,
        "interfaces": [leg(1, TENANT, "10.1.0.1/24"), leg(2, OTHER, "10.2.0.1/24")],
        "gateway": leg(3, EXTERNAL, "203.0.113.10/24", mtu=1500),
        "gateway_nexthop": "203.0.113.1",
        "snat": True,
        "floating": [FLOATING],
    }
    values.update(kw)
    return RouterPlan(**values)


def plan(*routers, networks=None):
    if networks is None:
        networks = [
            network(TENANT),
            network(OTHER, segmentation_id=101),
            network(EXTERNAL, network_type="flat", physical_network="public", mtu=1500),
        ]
    return HostNetworkPlan(host="hv1", generation=1, networks=networks, routers=list(routers))


def test_a_router_is_a_namespace_with_a_veth_per_leg_on_its_networks_bridge():
    state = desired_state(plan(router()), SETTINGS)
    assert state.problems == ()
    (r,) = state.routers
    assert r.namespace == f"hv1-qrouter-{ROUTER}"
    qr1, qr2, qg = r.legs
    assert (qr1.veth, qr1.device, qr1.bridge) == ("rtr00000001-00", "qr-00000001-00", "brq3f2a9c1e-5b")
    assert all(len(name) <= 15 for leg_ in r.legs for name in (leg_.veth, leg_.device))
    assert qr1.mac == "fa:16:3e:f0:00:01" and qr1.addresses == ("10.1.0.1/24",) and qr1.mtu == 1450
    assert qr2.bridge == "brq7c1d2e3f-4a"
    # The gateway sits on the operator's bridge of the flat network, and holds the floating addresses.
    assert (qg.device, qg.bridge, qg.mtu) == ("qg-00000003-00", "br-public", 1500)
    assert qg.addresses == ("203.0.113.10/24", "203.0.113.50/32")
    assert (r.gateway_device, r.nexthop) == (qg.device, "203.0.113.1")
    assert "rtr" in OWNED_PREFIXES
    assert state.router_veths == {"rtr00000001-00": qr1.bridge, qr2.veth: qr2.bridge, qg.veth: "br-public"}
    bare = Settings(tunnel_address="10.0.0.1", physical_networks={"public": "br-public"})
    assert desired_state(plan(router()), bare).routers[0].namespace == f"qrouter-{ROUTER}"


def test_the_routers_table_translates_floating_addresses_both_ways_before_the_general_snat():
    (r,) = desired_state(plan(router()), SETTINGS).routers
    lines = [line.strip() for line in r.ruleset.splitlines()]
    assert lines[0] == "table ip compute_router {"
    assert "type nat hook prerouting priority dstnat; policy accept;" in lines
    assert "dnat to ip daddr map { 203.0.113.50 : 10.1.0.11 }" in lines
    floating = 'oifname "qg-00000003-00" snat to ip saddr map { 10.1.0.11 : 203.0.113.50 }'
    general = 'oifname "qg-00000003-00" ip saddr { 10.1.0.0/24, 10.2.0.0/24 } snat to 203.0.113.10'
    assert lines.index(floating) < lines.index(general)
    # Hairpin: a guest reaching a floating address on its own subnet comes from the router's address.
    assert 'oifname "qr-00000001-00" ip saddr 10.1.0.0/24 ct status dnat masquerade' in lines
    assert 'oifname "qr-00000002-00" ip saddr 10.2.0.0/24 ct status dnat masquerade' in lines
    assert 'oifname "qr-00000001-00" ip saddr 10.2.0.0/24 ct status dnat masquerade' not in lines


def test_without_snat_only_the_floating_addresses_are_translated():
    (r,) = desired_state(plan(router(snat=False)), SETTINGS).routers
    assert "snat to 203.0.113.10" not in r.ruleset and "10.1.0.11 : 203.0.113.50" in r.ruleset
    (r,) = desired_state(plan(router(snat=False, floating=[])), SETTINGS).routers
    assert r.ruleset == ""
    (r,) = desired_state(plan(router(floating=[])), SETTINGS).routers
    assert "dnat" not in r.ruleset and "snat to 203.0.113.10" in r.ruleset


def test_a_router_without_gateway_only_routes():
    (r,) = desired_state(plan(router(gateway=None, floating=[])), SETTINGS).routers
    assert [leg_.device[:3] for leg_ in r.legs] == ["qr-", "qr-"]
    assert (r.gateway_device, r.nexthop, r.ruleset) == ("", "", "")


def test_router_legs_are_guest_interfaces_of_the_host_neither_secured_nor_local_ports():
    ruleset = desired_state(plan(router()), SETTINGS).ruleset
    guest_ifaces = ruleset.split("set guest_ifaces {")[1].split("}")[0]
    assert all(f'"rtr0000000{n}-00"' in guest_ifaces for n in (1, 2, 3))
    for bridge_set in ("secured", "local_ports"):
        assert "rtr" not in ruleset.split(f"set {bridge_set} {{")[1].split("}")[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"interfaces": [leg(1, "5" * 8 + TENANT[8:], "10.1.0.1/24")]}, "is not on this host"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.1/24", mac="fa:16:3e:zz:00:01")]}, "is not one"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.300/24")]}, "is not one"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.1/24", mtu=None)]}, "MTU None is not one"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.1/24", mtu=20)]}, "MTU 20 is not one"),
        ({"interfaces": [leg(1, TENANT, "fd00::1/64")]}, "not IPv4"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.1")]}, "prefix length"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.1/24", port_id="../../etc")]}, "not a UUID"),
        ({"interfaces": [leg(1, TENANT, "10.1.0.1/24"), leg(1, OTHER, "10.2.0.1/24")]}, "same 11 characters"),
    ],
)
def test_a_leg_the_host_cannot_have_is_left_out_and_said_so(change, message):
    state = desired_state(plan(router(**change)), SETTINGS)
    (problem,) = state.problems
    assert message in problem and ROUTER in problem
    (r,) = state.routers
    assert [leg_.device[:3] for leg_ in r.legs] == ["qr-"] * (len(change["interfaces"]) - 1) + ["qg-"]


@pytest.mark.parametrize(
    ("change", "message", "nexthop", "floating"),
    [
        ({"gateway_nexthop": "198.51.100.1"}, "not on the gateway's subnet", "", 1),
        ({"gateway_nexthop": "gw"}, "is no address", "", 1),
        ({"floating": [FLOATING, FloatingPlan("203.0.113.50", "10.1.0.12")]}, "clashes", "203.0.113.1", 1),
        ({"floating": [FLOATING, FloatingPlan("203.0.113.51", "10.1.0.11")]}, "clashes", "203.0.113.1", 1),
        ({"floating": [FloatingPlan("203.0.113.10", "10.1.0.11")]}, "clashes", "203.0.113.1", 0),
        ({"floating": [FloatingPlan("203.0.113.x", "10.1.0.11")]}, "left out", "203.0.113.1", 0),
    ],
)  # fmt: skip
def test_a_bad_next_hop_or_floating_address_is_left_out_and_said_so(change, message, nexthop, floating):
    state = desired_state(plan(router(**change)), SETTINGS)
    (problem,) = state.problems
    assert message in problem
    (r,) = state.routers
    assert r.nexthop == nexthop
    assert r.ruleset.count("dnat to") == floating
    assert len([a for a in r.legs[-1].addresses if a.endswith("/32")]) == floating


def test_a_router_with_a_bad_id_is_left_out():
    state = desired_state(plan(router(router_id="../x")), SETTINGS)
    assert state.routers == () and "not a UUID" in state.problems[0]


def test_a_changed_floating_address_is_the_plan_changing_not_drift():
    before = desired_state(plan(router()), SETTINGS)
    after = desired_state(plan(router(floating=[FloatingPlan("203.0.113.50", "10.2.0.11")])), SETTINGS)
    (r,) = after.routers
    fix = Fixes(before, after)
    fix.note(("routerns", r.namespace), "namespace mended")
    assert fix.drift == ["namespace mended"]
    moved = desired_state(plan(router(floating=[FloatingPlan("203.0.113.51", "10.1.0.11")])), SETTINGS)
    fix = Fixes(before, moved)
    fix.note(("routeraddr", r.legs[-1].veth), "gateway addresses set")
    assert fix.drift == []


def test_the_null_data_plane_reports_router_legs_plugged(tmp_path):
    r = router()
    report = NullDataplane("hv1", tmp_path).apply(plan(r))
    assert set(report.plugged_ports) == {leg_.port_id for leg_ in [*r.interfaces, r.gateway]}
