"""Subnet address arithmetic: CIDRs, gateways, pools and the lowest free address."""

import ipaddress

import pytest

from portal.services import network_addresses as addresses
from portal.services.network_errors import (
    BadRequest,
    GatewayConflictWithAllocationPools,
    InvalidInput,
    OverlappingAllocationPools,
)

pytestmark = pytest.mark.unit
NET = ipaddress.ip_network("10.0.0.0/24")


def test_cidrs_are_normalised_and_bounded():
    assert str(addresses.parse_cidr("10.0.0.77/24")) == "10.0.0.0/24"
    for bad in ("10.0.0.0", "nope/24", "fd00::/64", "10.0.0.0/31", "10.0.0.0/7", 24, None):
        with pytest.raises((InvalidInput, BadRequest)):
            addresses.parse_cidr(bad)


def test_gateway_default_none_and_checked():
    assert addresses.gateway_for(NET, ...) == "10.0.0.1"
    assert addresses.gateway_for(NET, None) is None
    assert addresses.gateway_for(NET, "10.0.0.254") == "10.0.0.254"
    for bad in ("10.0.0.0", "10.0.0.255", "10.0.1.1", "x"):
        with pytest.raises((InvalidInput, BadRequest)):
            addresses.gateway_for(NET, bad)


def test_default_pools_leave_out_network_broadcast_and_gateway():
    assert addresses.default_pools(NET, "10.0.0.1") == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert addresses.default_pools(NET, None) == [{"start": "10.0.0.1", "end": "10.0.0.254"}]
    assert addresses.default_pools(NET, "10.0.0.100") == [
        {"start": "10.0.0.1", "end": "10.0.0.99"},
        {"start": "10.0.0.101", "end": "10.0.0.254"},
    ]
    assert addresses.default_pools(NET, "10.0.0.254") == [{"start": "10.0.0.1", "end": "10.0.0.253"}]


def test_given_pools_are_checked_and_sorted():
    pools = [{"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.10", "end": "10.0.0.20"}]
    assert [p["start"] for p in addresses.validate_pools(NET, pools, "10.0.0.1")] == ["10.0.0.10", "10.0.0.50"]
    with pytest.raises(OverlappingAllocationPools):
        addresses.validate_pools(NET, [*pools, {"start": "10.0.0.60", "end": "10.0.0.70"}], None)
    with pytest.raises(GatewayConflictWithAllocationPools):
        addresses.validate_pools(NET, pools, "10.0.0.55")
    with pytest.raises(BadRequest):
        addresses.validate_pools(NET, [{"start": "10.0.0.0", "end": "10.0.0.5"}], None)
    with pytest.raises(BadRequest):
        addresses.validate_pools(NET, [{"start": "10.0.0.9", "end": "10.0.0.5"}], None)
    with pytest.raises(InvalidInput):
        addresses.validate_pools(NET, {"start": "10.0.0.1"}, None)


def test_lowest_free_steps_over_taken_addresses_and_pools():
    pools = [{"start": "10.0.0.10", "end": "10.0.0.12"}, {"start": "10.0.0.2", "end": "10.0.0.3"}]
    assert addresses.lowest_free(pools, []) == "10.0.0.2"
    assert addresses.lowest_free(pools, ["10.0.0.2", "10.0.0.200"]) == "10.0.0.3"
    assert addresses.lowest_free(pools, ["10.0.0.3", "10.0.0.2", "10.0.0.10"]) == "10.0.0.11"
    assert addresses.lowest_free(pools, ["10.0.0.11", "10.0.0.2", "10.0.0.3"]) == "10.0.0.10"
    full = ["10.0.0.2", "10.0.0.3", "10.0.0.10", "10.0.0.11", "10.0.0.12"]
    assert addresses.lowest_free(pools, full) is None
    assert addresses.lowest_free([], []) is None


def test_dns_and_routes():
    assert addresses.validate_dns(["10.0.0.53", " 10.0.0.54"]) == ["10.0.0.53", "10.0.0.54"]
    for bad in (["10.0.0.1"] * 2, ["x"], ["10.0.0.1"] * 6, "10.0.0.1"):
        with pytest.raises((InvalidInput, BadRequest)):
            addresses.validate_dns(bad)
    route = {"destination": "192.168.0.0/16", "nexthop": "10.0.0.1"}
    assert addresses.validate_routes([route]) == [route]
    for bad in ([route, route], [{"destination": "192.168.0.1/16", "nexthop": "10.0.0.1"}], [{"nexthop": "x"}]):
        with pytest.raises(InvalidInput):
            addresses.validate_routes(bad)
