"""Ports and the addresses they hold: create, update, bind to a host, delete (see ``networks`` for the
policy every function here enforces and the signatures).

Addresses are exact under concurrency: whoever allocates on a subnet first locks the subnet's row
(``select_for_update``), so the "lowest free address" it reads cannot be taken by anyone before it
commits; the (subnet, address) unique constraint stands behind the lock.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import uuid

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from portal.models import ComputeHost, FloatingIP, IPAllocation, Network, Port, Project, Router, Subnet
from portal.services import network_sync
from portal.services import quotas as quota_services

from . import network_addresses as addresses
from . import security_groups as group_services
from .network_errors import (
    BadRequest,
    InvalidInput,
    InvalidIpForNetwork,
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    MacAddressInUse,
    NetworkNotFound,
    OverQuota,
    PolicyNotAuthorized,
    PortSecurityAndIPRequiredForSecurityGroups,
)

log = logging.getLogger(__name__)

MAC_PREFIX = "fa:16:3e"  # the prefix Neutron gives the ports it makes
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
VIF_TYPE_BOUND = "bridge"
VIF_TYPE_UNBOUND = "unbound"


def _policy(rule: str) -> PolicyNotAuthorized:
    return PolicyNotAuthorized(f"({rule}) is disallowed by policy")


def check_text(value, field: str = "name") -> str:
    if not isinstance(value, str) or len(value) > 255:
        raise InvalidInput(
            f"Invalid input for {field}. Reason: must be a string of at most 255 characters.", field=field
        )
    return value


def check_bool(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(
            f"Invalid input for {field}. Reason: '{str(value)[:32]}' is not a valid boolean.", field=field
        )
    return value


def _mac(value) -> str:
    if not isinstance(value, str) or not MAC_RE.match(value.strip().lower()):
        raise InvalidInput(
            f"Invalid input for mac_address. Reason: '{str(value)[:32]}' is not a valid MAC address.",
            field="mac_address",
        )
    mac = value.strip().lower()
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        raise InvalidInput(
            f"Invalid input for mac_address. Reason: '{mac}' is not a valid unicast MAC address.", field="mac_address"
        )
    return mac


def random_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def _fixed_ip_requests(fixed_ips) -> list[tuple[str | None, str | None]]:
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


def _lock_subnet(subnet: Subnet) -> Subnet:
    return Subnet.objects.select_for_update().get(pk=subnet.pk)


def _take(port: Port, subnet: Subnet, ip: str) -> IPAllocation:
    try:
        with transaction.atomic():
            return IPAllocation.objects.create(port=port, subnet=subnet, ip_address=ip)
    except IntegrityError:
        raise IpAddressAlreadyAllocated(ip, subnet.pk) from None


def _take_lowest(port: Port, subnet: Subnet) -> IPAllocation | None:
    """The lowest free address of the subnet's pools, taken under the subnet's row lock; None when full."""
    subnet = _lock_subnet(subnet)
    if connection.vendor == "postgresql":
        ip = _lowest_free_in_database(subnet)
    else:
        taken = IPAllocation.objects.filter(subnet=subnet).values_list("ip_address", flat=True)
        ip = addresses.lowest_free(subnet.allocation_pools, taken)
    return None if ip is None else _take(port, subnet, ip)


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


def _take_given(port: Port, subnet: Subnet, ip: str) -> IPAllocation:
    subnet = _lock_subnet(subnet)
    address = ipaddress.ip_address(ip)
    if not addresses.is_host_address(ipaddress.ip_network(subnet.cidr), address):
        raise InvalidIpForSubnet(ip)
    if subnet.gateway_ip and address == ipaddress.ip_address(subnet.gateway_ip):
        raise IpAddressAlreadyAllocated(ip, subnet.pk)  # the gateway's, kept for a router
    return _take(port, subnet, ip)


def _allocate(port: Port, network: Network, requests: list[tuple[str | None, str | None]] | None) -> None:
    subnets = list(Subnet.objects.filter(network=network).order_by("created_at", "id"))
    if requests is None:
        if not subnets:
            return
        for subnet in subnets:
            if _take_lowest(port, subnet) is not None:
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
            _take_given(port, subnet, ip)
        elif _take_lowest(port, subnet) is None:
            raise IpAddressGenerationFailure(network.pk)


def _hold_network(network: Network) -> None:
    """Keep the network from being deleted until this transaction ends, without keeping anyone else from
    adding ports to it: ``FOR KEY SHARE``, the lock PostgreSQL's own foreign-key checks take (they take it
    at commit here, the constraints being deferred, which would be too late to answer 404)."""
    if connection.vendor != "postgresql":
        return  # SQLite runs one writing transaction at a time
    with connection.cursor() as cursor:
        cursor.execute('SELECT 1 FROM "portal_network" WHERE "id" = %s FOR KEY SHARE', [network.pk])
        if cursor.fetchone() is None:
            raise NetworkNotFound(network.pk)


def _insert_port(fields: dict, mac_address: str | None) -> Port:
    """The port row with the MAC asked for, or a generated one unique on its network."""
    network = fields["network"]
    for _attempt in range(10):
        mac = mac_address or random_mac()
        try:
            with transaction.atomic():
                return Port.objects.create(**fields, mac_address=mac)
        except IntegrityError as exc:
            if "one_mac_per_network" not in str(exc):
                raise
            if mac_address:
                raise MacAddressInUse(network.pk, mac_address) from None
    raise MacAddressInUse(network.pk, mac)


def port_create(
    *,
    project: Project,
    user_is_admin: bool,
    network: Network,
    fixed_ips: list | None = None,
    mac_address: str | None = None,
    device_id: str = "",
    device_owner: str = "",
    name: str = "",
    description: str = "",
    admin_state_up: bool = True,
    port_security_enabled: bool | None = None,
    host: ComputeHost | None = None,
    auto_delete: bool = False,
    security_groups: list | None = None,
) -> Port:
    """A port of ``project`` on ``network`` with the addresses ``fixed_ips`` asks for (none asked: one from
    the first subnet with room), bound to ``host`` when given (admins and the cloud itself only)."""
    network_owner = user_is_admin or network.project_id == project.pk
    if not (network_owner or network.shared):
        if network.external:
            raise _policy("rule:create_port")
        raise NetworkNotFound(network.pk)
    requests = None if fixed_ips is None else _fixed_ip_requests(fixed_ips)
    if not network_owner:
        if mac_address is not None:
            raise _policy("rule:create_port:mac_address")
        if requests and any(ip is not None for _, ip in requests):
            raise _policy("rule:create_port:fixed_ips:ip_address")
        if device_owner.startswith("network:"):
            raise _policy("rule:create_port:device_owner")
    if host is not None and not user_is_admin:
        raise _policy("rule:create_port:binding:host_id")
    fields = dict(
        network=network,
        project=project,
        name=check_text(name, "name"),
        description=check_text(description, "description"),
        device_id=check_text(device_id, "device_id"),
        device_owner=check_text(device_owner, "device_owner"),
        admin_state_up=check_bool(admin_state_up, "admin_state_up"),
        port_security_enabled=network.port_security_enabled
        if port_security_enabled is None
        else check_bool(port_security_enabled, "port_security_enabled"),
        host=host,
        vif_type=VIF_TYPE_BOUND if host is not None else VIF_TYPE_UNBOUND,
        auto_delete=auto_delete,
    )
    mac = None if mac_address is None else _mac(mac_address)
    with transaction.atomic():
        _hold_network(network)
        if device_owner != Port.OWNER_DHCP:
            try:
                quota_services.network_quota_check(project=project, resource="port")
            except quota_services.QuotaExceeded:
                raise OverQuota("port") from None
        groups = group_services.groups_for_new_port(
            project=project,
            port_security_enabled=fields["port_security_enabled"],
            groups=security_groups,
            device_owner=device_owner,
        )
        port = _insert_port(fields, mac)
        _allocate(port, network, requests)
        if groups:
            port.security_groups.set(groups)
            group_services.membership_changed([g.pk for g in groups])
        network_sync.network_changed(network.pk)
    return port


PORT_UPDATABLE = (
    "name",
    "description",
    "admin_state_up",
    "device_id",
    "device_owner",
    "port_security_enabled",
    "fixed_ips",
    "mac_address",
    "binding:host_id",
    "security_groups",
)


def port_update(*, port: Port, user_is_admin: bool, project: Project, changes: dict) -> Port:
    """Change what may change of a port (keys are the API's names; ``binding:host_id`` takes a ComputeHost
    or None). ``fixed_ips`` replaces the port's addresses: those it names again are kept."""
    for attr in changes:
        if attr not in PORT_UPDATABLE:
            raise BadRequest(f"Cannot update read-only attribute {attr[:64]}")
    with transaction.atomic():
        port = Port.objects.select_for_update().select_related("network").get(pk=port.pk)
        network = port.network
        network_owner = user_is_admin or network.project_id == project.pk
        if "binding:host_id" in changes and not user_is_admin:
            raise _policy("rule:update_port:binding:host_id")
        for attr in ("name", "description", "device_id", "device_owner"):
            if attr in changes:
                setattr(port, attr, check_text(changes[attr], attr))
        if "device_owner" in changes and changes["device_owner"].startswith("network:") and not network_owner:
            raise _policy("rule:update_port:device_owner")
        for attr in ("admin_state_up", "port_security_enabled"):
            if attr in changes:
                setattr(port, attr, check_bool(changes[attr], attr))
        if "mac_address" in changes:
            if not user_is_admin:
                raise _policy("rule:update_port:mac_address")
            mac = _mac(changes["mac_address"])
            if mac != port.mac_address:
                if port.host_id is not None:
                    raise BadRequest("Cannot change the MAC address of a port that is bound to a host.")
                if Port.objects.filter(network=network, mac_address=mac).exists():
                    raise MacAddressInUse(network.pk, mac)
                port.mac_address = mac
        groups = changes.get("security_groups")
        group_services.check_port_security(port, port.port_security_enabled, groups)
        if groups is not None and groups and not port.port_security_enabled:
            raise PortSecurityAndIPRequiredForSecurityGroups()
        if groups is not None:
            before = set(port.security_groups.values_list("pk", flat=True))
            port.security_groups.set(groups)
            group_services.membership_changed(before | {g.pk for g in groups})
        elif "fixed_ips" in changes:
            group_services.membership_changed(port.security_groups.values_list("pk", flat=True))
        if "fixed_ips" in changes:
            _replace_fixed_ips(port, network, changes["fixed_ips"], network_owner)
        old_host = port.host_id
        if "binding:host_id" in changes:
            port.host = changes["binding:host_id"]
            port.vif_type = VIF_TYPE_BOUND if port.host is not None else VIF_TYPE_UNBOUND
            if port.host_id != old_host:
                port.status = Port.Status.DOWN
        port.revision_number = F("revision_number") + 1
        try:
            with transaction.atomic():
                port.save()
        except IntegrityError:
            raise MacAddressInUse(network.pk, port.mac_address) from None
        port.refresh_from_db()
        _replan(network.pk, old_host)
    return port


def _replace_fixed_ips(port: Port, network: Network, fixed_ips, network_owner: bool) -> None:
    requests = _fixed_ip_requests(fixed_ips)
    if not network_owner and any(ip is not None for _, ip in requests):
        # Naming the addresses a port already holds is how clients keep them; naming new ones is the owner's.
        held = set(port.fixed_ips.values_list("ip_address", flat=True))
        if any(ip is not None and ip not in held for _, ip in requests):
            raise _policy("rule:update_port:fixed_ips:ip_address")
    current = list(port.fixed_ips.all())
    keep, new = [], []
    for subnet_id, ip in requests:
        match = next(
            (a for a in current if ip is not None and a.ip_address == ip and subnet_id in (None, str(a.subnet_id))),
            None,
        )
        (keep if match else new).append(match or (subnet_id, ip))
    IPAllocation.objects.filter(port=port).exclude(pk__in=[a.pk for a in keep]).delete()
    if new:
        _allocate(port, network, new)


def port_bind(*, port: Port, host: ComputeHost) -> Port:
    """Bind the port to ``host``: that host's data plane plugs it (status DOWN until the host says it did)."""
    with transaction.atomic():
        port = Port.objects.select_for_update().get(pk=port.pk)
        old_host = port.host_id
        if old_host == host.pk:
            return port
        Port.objects.filter(pk=port.pk).update(
            host=host, vif_type=VIF_TYPE_BOUND, status=Port.Status.DOWN, revision_number=F("revision_number") + 1
        )
        _replan(port.network_id, old_host)
        port.refresh_from_db()
    return port


def port_unbind(*, port: Port) -> Port:
    """The port leaves its host (its device is unplugged there); it keeps its addresses."""
    with transaction.atomic():
        port = Port.objects.select_for_update().get(pk=port.pk)
        old_host = port.host_id
        if old_host is None:
            return port
        Port.objects.filter(pk=port.pk).update(
            host=None,
            vif_type=VIF_TYPE_UNBOUND,
            status=Port.Status.DOWN,
            revision_number=F("revision_number") + 1,
        )
        _replan(port.network_id, old_host)
        port.refresh_from_db()
    return port


def _replan(network_id, old_host_id) -> None:
    """Every host with ports on the network gets a new plan, and the port's old host too (once each)."""
    network_sync.network_changed(network_id)
    if old_host_id is not None and not Port.objects.filter(network_id=network_id, host_id=old_host_id).exists():
        network_sync.hosts_changed([old_host_id])


def port_delete(*, port: Port) -> None:
    """Delete the port and free its addresses; its host unplugs it. Floating IPs it had let go of it."""
    with transaction.atomic():
        port = Port.objects.select_for_update().get(pk=port.pk)
        floating_ips_let_go([port.pk])
        network_sync.network_changed(port.network_id)  # every host with ports on the network, its own included
        group_services.membership_changed(port.security_groups.values_list("pk", flat=True))
        IPAllocation.objects.filter(port=port).delete()
        port.delete()


def floating_ips_let_go(port_ids) -> None:
    """The floating IPs associated with these ports (being deleted, or their server gone) are
    disassociated (DOWN), and their routers' hosts stop translating them."""
    held = FloatingIP.objects.select_for_update().filter(port_id__in=list(port_ids))
    router_ids = set(held.values_list("router_id", flat=True))
    if not router_ids:
        return
    held.update(
        port=None,
        fixed_ip_address=None,
        router=None,
        status=FloatingIP.Status.DOWN,
        revision_number=F("revision_number") + 1,
    )
    network_sync.hosts_changed(Router.objects.filter(pk__in=router_ids).values_list("host_id", flat=True))


# --- the cloud's own ports: routers' and floating IPs' ---------------------------------------------------


def network_port_create(
    *, network: Network, project: Project | None, device_owner: str, device_id: str, fixed_ips: list | None = None
) -> Port:
    """A port the network controller makes for itself (a router's leg, a floating IP's address): no
    policy, quota or security group, no port security; its addresses as ``fixed_ips`` asks (none asked:
    one from the first subnet with room). Call inside the transaction that needs it."""
    requests = None if fixed_ips is None else _fixed_ip_requests(fixed_ips)
    port = _insert_port(
        dict(
            network=network,
            project=project,
            device_owner=device_owner,
            device_id=device_id,
            port_security_enabled=False,
        ),
        None,
    )
    _allocate(port, network, requests)
    return port


def port_take_gateway(*, port: Port, subnet: Subnet) -> IPAllocation:
    """The port takes its subnet's gateway address (a router's interface there); 409 when held."""
    subnet = _lock_subnet(subnet)
    return _take(port, subnet, subnet.gateway_ip)


# --- the network's DHCP port --------------------------------------------------------------------------


def dhcp_device_id(network: Network) -> str:
    """The DHCP port's device_id, stable per network."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_URL, f'dhcp:{network.pk}')}"


def dhcp_port_add_address(*, network: Network, subnet: Subnet) -> None:
    """The network's DHCP port (made on first need, one per network) takes an address on ``subnet``."""
    port = Port.objects.filter(network=network, device_owner=Port.OWNER_DHCP).first()
    if port is None:
        port = _insert_port(
            dict(
                network=network,
                project=network.project,
                device_owner=Port.OWNER_DHCP,
                device_id=dhcp_device_id(network),
                port_security_enabled=False,
            ),
            None,
        )
    if port.fixed_ips.filter(subnet=subnet).exists():
        return
    if _take_lowest(port, subnet) is None:
        log.warning("subnet %s has no free address for its network's DHCP server", subnet.pk)


def dhcp_port_remove_address(*, network: Network, subnet: Subnet) -> None:
    """The DHCP port gives up its address on ``subnet``; with none left, it goes."""
    port = Port.objects.filter(network=network, device_owner=Port.OWNER_DHCP).first()
    if port is None:
        return
    IPAllocation.objects.filter(port=port, subnet=subnet).delete()
    if not port.fixed_ips.exists():
        port.delete()
