"""Address arithmetic of IPv4 subnets: CIDRs, gateways, allocation pools, DNS servers and host routes.

Pure functions over ``ipaddress`` values; they raise the networking API's errors for bad input, so a
caller only needs to let them propagate.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from .network_errors import (
    BadRequest,
    GatewayConflictWithAllocationPools,
    InvalidInput,
    OverlappingAllocationPools,
)

MAX_DNS_NAMESERVERS = 5
MAX_HOST_ROUTES = 20
MIN_PREFIX, MAX_PREFIX = 8, 30  # room for a gateway and at least one more address; at most 16M of them


def parse_cidr(value) -> ipaddress.IPv4Network:
    """A subnet's CIDR, normalised (host bits cleared). IPv4 only."""
    if not isinstance(value, str) or "/" not in value:
        raise InvalidInput(
            f"Invalid input for cidr. Reason: '{str(value)[:64]}' is not a valid IP subnet.", field="cidr"
        )
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise InvalidInput(
            f"Invalid input for cidr. Reason: '{value[:64]}' is not a valid IP subnet.", field="cidr"
        ) from None
    if network.version != 4:
        raise BadRequest("Invalid input for cidr. Reason: only IPv4 subnets are supported by this cloud.", field="cidr")
    if not MIN_PREFIX <= network.prefixlen <= MAX_PREFIX:
        raise BadRequest(
            f"Invalid input for cidr. Reason: the prefix length must be between {MIN_PREFIX} and {MAX_PREFIX}.",
            field="cidr",
        )
    return network


def parse_ip(value, field: str) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise InvalidInput(
            f"Invalid input for {field}. Reason: '{str(value)[:64]}' is not a valid IP address.", field=field
        )
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidInput(
            f"Invalid input for {field}. Reason: '{value[:64]}' is not a valid IP address.", field=field
        ) from None
    if address.version != 4:
        raise InvalidInput(f"Invalid input for {field}. Reason: '{value[:64]}' is not an IPv4 address.", field=field)
    return address


def is_host_address(network: ipaddress.IPv4Network, address: ipaddress.IPv4Address) -> bool:
    """Inside the subnet and neither its network nor its broadcast address."""
    return address in network and address not in (network.network_address, network.broadcast_address)


def gateway_for(network: ipaddress.IPv4Network, gateway) -> str | None:
    """``gateway`` checked (``None``: no gateway), or the subnet's first host address when it is ``...``."""
    if gateway is ...:
        return str(network.network_address + 1)
    if gateway is None:
        return None
    address = parse_ip(gateway, "gateway_ip")
    if not is_host_address(network, address):
        raise BadRequest(
            f"Invalid input for operation: Gateway ip {address} conflicts with the subnet {network}.",
            field="gateway_ip",
        )
    return str(address)


def _range(start, end) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    return ipaddress.ip_address(start), ipaddress.ip_address(end)


def default_pools(network: ipaddress.IPv4Network, gateway: str | None) -> list[dict]:
    """The whole subnet but its network and broadcast addresses and its gateway."""
    first, last = network.network_address + 1, network.broadcast_address - 1
    pools = []
    gw = ipaddress.ip_address(gateway) if gateway else None
    if gw is not None and first <= gw <= last:
        if first < gw:
            pools.append((first, gw - 1))
        if gw < last:
            pools.append((gw + 1, last))
    else:
        pools.append((first, last))
    return [{"start": str(s), "end": str(e)} for s, e in pools]


def validate_pools(network: ipaddress.IPv4Network, pools, gateway: str | None) -> list[dict]:
    """Allocation pools as given: each a start and end inside the subnet, none overlapping, none holding
    the gateway. Returned sorted by start."""
    if not isinstance(pools, list):
        raise InvalidInput(
            "Invalid input for allocation_pools. Reason: must be a list of pools.", field="allocation_pools"
        )
    ranges = []
    for pool in pools:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise InvalidInput(
                "Invalid input for allocation_pools. Reason: each pool must have exactly 'start' and 'end'.",
                field="allocation_pools",
            )
        start, end = parse_ip(pool["start"], "allocation_pools"), parse_ip(pool["end"], "allocation_pools")
        if start > end:
            raise BadRequest(f"The allocation pool {start}-{end} is not valid.", field="allocation_pools")
        if not (is_host_address(network, start) and is_host_address(network, end)):
            raise BadRequest(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {network}.", field="allocation_pools"
            )
        ranges.append((start, end))
    ranges.sort()
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:], strict=False):
        if s2 <= e1:
            raise OverlappingAllocationPools(
                f"Found overlapping allocation pools: {s1}-{e1} and {s2}-{e2} for subnet {network}.",
                field="allocation_pools",
            )
    if gateway:
        gw = ipaddress.ip_address(gateway)
        for start, end in ranges:
            if start <= gw <= end:
                raise GatewayConflictWithAllocationPools(
                    f"Gateway ip {gw} conflicts with allocation pool {start}-{end}.", field="gateway_ip"
                )
    return [{"start": str(s), "end": str(e)} for s, e in ranges]


def in_pools(pools: list[dict], address: ipaddress.IPv4Address) -> bool:
    return any(s <= address <= e for s, e in (_range(p["start"], p["end"]) for p in pools))


def lowest_free(pools: list[dict], taken: Iterable[str]) -> str | None:
    """The lowest address of the pools that is not taken, or None when they are full."""
    used = sorted({int(ipaddress.ip_address(t)) for t in taken})
    for pool in sorted(pools, key=lambda p: int(ipaddress.ip_address(p["start"]))):
        candidate, end = (int(a) for a in _range(pool["start"], pool["end"]))
        for u in used:  # ascending: step over the taken ones at the front of the pool
            if u == candidate:
                candidate += 1
            elif u > candidate:
                break
        if candidate <= end:
            return str(ipaddress.ip_address(candidate))
    return None


def validate_dns(nameservers) -> list[str]:
    if not isinstance(nameservers, list):
        raise InvalidInput("Invalid input for dns_nameservers. Reason: must be a list.", field="dns_nameservers")
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        raise BadRequest(f"Number of DNS nameservers exceeds the limit {MAX_DNS_NAMESERVERS}.", field="dns_nameservers")
    clean = [str(parse_ip(n, "dns_nameservers")) for n in nameservers]
    if len(set(clean)) != len(clean):
        raise InvalidInput("Invalid input for dns_nameservers. Reason: duplicate nameserver.", field="dns_nameservers")
    return clean


def validate_routes(routes) -> list[dict]:
    if not isinstance(routes, list):
        raise InvalidInput("Invalid input for host_routes. Reason: must be a list.", field="host_routes")
    if len(routes) > MAX_HOST_ROUTES:
        raise BadRequest(f"Number of host routes exceeds the limit {MAX_HOST_ROUTES}.", field="host_routes")
    clean = []
    for route in routes:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise InvalidInput(
                "Invalid input for host_routes. Reason: each route must have exactly 'destination' and 'nexthop'.",
                field="host_routes",
            )
        try:
            destination = ipaddress.ip_network(str(route["destination"]), strict=True)
        except ValueError:
            raise InvalidInput(
                f"Invalid input for host_routes. Reason: '{str(route['destination'])[:64]}' is not a valid CIDR.",
                field="host_routes",
            ) from None
        if destination.version != 4:
            raise InvalidInput("Invalid input for host_routes. Reason: only IPv4 routes.", field="host_routes")
        clean.append({"destination": str(destination), "nexthop": str(parse_ip(route["nexthop"], "host_routes"))})
    if len({(r["destination"], r["nexthop"]) for r in clean}) != len(clean):
        raise InvalidInput("Invalid input for host_routes. Reason: duplicate route.", field="host_routes")
    return clean
