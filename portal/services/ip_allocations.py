"""Addresses for ports: the fixed IPs a request asks for, and taking them on a subnet.

Addresses are exact under concurrency: whoever allocates on a subnet first locks the subnet's row
(``lock_subnet``), so the "lowest free address" it reads cannot be taken by anyone before it commits; the
(subnet, address) unique constraint stands behind the lock.
"""

from __future__ import annotations

import ipaddress

from django.db import IntegrityError, connection, transaction

from portal.models import IPAllocation, Network, Port, Subnet

from . import network_addresses as addresses
from .network_errors import (
    InvalidInput,
    InvalidIpForNetwork,
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
)


def fixed_ip_requests(fixed_ips) -> list[tuple[str | None, str | None]]:
    """``fixed_ips`` as the API takes them: a list of ``{"subnet_id"}``, ``{"ip_address"}`` or both."""
    if not isinstance(fixed_ips, list):
        raise InvalidInput("Invalid input for fixed_ips. Reason: must be a list.", field="fixed_ips")
    requests = []
    for entry in fixed_ips:
        if not isinstance(entry, dict) or not entry or set(entry) - {"subnet_id", "ip_address"}:
            raise InvalidInput(
                "Invalid input for fixed_ips. Reason: each entry takes 'subnet_id' and/or 'ip_address' only.",
                field="fixed_ips",
            )
        subnet_id, ip = entry.get("subnet_id"), entry.get("ip_address")
        if ip is not None:
            ip = str(addresses.parse_ip(ip, "fixed_ips"))
        if subnet_id is not None and not isinstance(subnet_id, str):
            raise InvalidInput("Invalid input for fixed_ips. Reason: subnet_id must be a string.", field="fixed_ips")
        requests.append((subnet_id, ip))
    return requests


def lock_subnet(subnet: Subnet) -> Subnet:
    return Subnet.objects.select_for_update().get(pk=subnet.pk)


def take(port: Port, subnet: Subnet, ip: str) -> IPAllocation:
    try:
        with transaction.atomic():
            return IPAllocation.objects.create(port=port, subnet=subnet, ip_address=ip)
    except IntegrityError:
        raise IpAddressAlreadyAllocated(ip, subnet.pk) from None


def take_lowest(port: Port, subnet: Subnet) -> IPAllocation | None:
    """The lowest free address of the subnet's pools, taken under the subnet's row lock; None when full."""
    subnet = lock_subnet(subnet)
    if connection.vendor == "postgresql":
        ip = _lowest_free_in_database(subnet)
    else:
        taken = IPAllocation.objects.filter(subnet=subnet).values_list("ip_address", flat=True)
        ip = addresses.lowest_free(subnet.allocation_pools, taken)
    return None if ip is None else take(port, subnet, ip)


# The lowest free address of the pools: a pool's first address if it is free, else the smallest address
# after a held one (inside a pool) that is free. PostgreSQL walks the (subnet, address) index for it, so a
# subnet's many addresses never travel to Python.
_LOWEST_FREE_SQL = """
WITH pools (first, last) AS (SELECT unnest(%(firsts)s::inet[]), unnest(%(lasts)s::inet[]))
SELECT host(candidate) FROM (
    SELECT p.first AS candidate FROM pools p
    WHERE NOT EXISTS (
        SELECT 1 FROM portal_ipallocation b WHERE b.subnet_id = %(subnet)s AND b.ip_address = p.first)
    UNION ALL
    SELECT a.ip_address + 1 FROM pools p
    JOIN portal_ipallocation a ON a.subnet_id = %(subnet)s AND a.ip_address >= p.first AND a.ip_address < p.last
    WHERE NOT EXISTS (
        SELECT 1 FROM portal_ipallocation b WHERE b.subnet_id = %(subnet)s AND b.ip_address = a.ip_address + 1)
) gaps
ORDER BY candidate LIMIT 1
"""


def _lowest_free_in_database(subnet: Subnet) -> str | None:
    pools = subnet.allocation_pools
    if not pools:
        return None
    params = {
        "firsts": [p["start"] for p in pools],
        "lasts": [p["end"] for p in pools],
        "subnet": subnet.pk,
    }
    with connection.cursor() as cursor:
        cursor.execute(_LOWEST_FREE_SQL, params)
        row = cursor.fetchone()
    return row[0] if row else None


def take_given(port: Port, subnet: Subnet, ip: str) -> IPAllocation:
    subnet = lock_subnet(subnet)
    address = ipaddress.ip_address(ip)
    if not addresses.is_host_address(ipaddress.ip_network(subnet.cidr), address):
        raise InvalidIpForSubnet(ip)
    if subnet.gateway_ip and address == ipaddress.ip_address(subnet.gateway_ip):
        raise IpAddressAlreadyAllocated(ip, subnet.pk)  # the gateway's, kept for a router
    return take(port, subnet, ip)


def allocate(port: Port, network: Network, requests: list[tuple[str | None, str | None]] | None) -> None:
    subnets = list(Subnet.objects.filter(network=network).order_by("created_at", "id"))
    if requests is None:
        if not subnets:
            return
        for subnet in subnets:
            if take_lowest(port, subnet) is not None:
                return
        raise IpAddressGenerationFailure(network.pk)
    by_id = {str(s.pk): s for s in subnets}
    for subnet_id, ip in requests:
        if subnet_id is not None:
            subnet = by_id.get(subnet_id)
            if subnet is None:
                raise InvalidInput(
                    f"Failed to create port on network {network.pk}, because fixed_ips included invalid subnet "
                    f"{subnet_id[:64]}.",
                    field="fixed_ips",
                )
        else:
            subnet = next((s for s in subnets if ipaddress.ip_address(ip) in ipaddress.ip_network(s.cidr)), None)
            if subnet is None:
                raise InvalidIpForNetwork(ip)
        if ip is not None:
            take_given(port, subnet, ip)
        elif take_lowest(port, subnet) is None:
            raise IpAddressGenerationFailure(network.pk)
