"""Ports and the addresses they hold: create, update, bind to a host, delete (see ``networks`` for the
policy every function here enforces and the signatures). Their addresses are taken in ``ip_allocations``.
"""

from __future__ import annotations

import logging
import re
import secrets
import uuid

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from portal.models import ComputeHost, FloatingIP, IPAllocation, Network, Port, Project, Router, Subnet
from portal.services import network_sync
from portal.services import quotas as quota_services

from . import ip_allocations as allocations
from . import security_groups as group_services
from .network_errors import (
    BadRequest,
    InvalidInput,
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
    requests = None if fixed_ips is None else allocations.fixed_ip_requests(fixed_ips)
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
        allocations.allocate(port, network, requests)
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
    requests = allocations.fixed_ip_requests(fixed_ips)
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
        allocations.allocate(port, network, new)


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
    requests = None if fixed_ips is None else allocations.fixed_ip_requests(fixed_ips)
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
    allocations.allocate(port, network, requests)
    return port


def port_take_gateway(*, port: Port, subnet: Subnet) -> IPAllocation:
    """The port takes its subnet's gateway address (a router's interface there); 409 when held."""
    subnet = allocations.lock_subnet(subnet)
    return allocations.take(port, subnet, subnet.gateway_ip)


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
    if allocations.take_lowest(port, subnet) is None:
        log.warning("subnet %s has no free address for its network's DHCP server", subnet.pk)


def dhcp_port_remove_address(*, network: Network, subnet: Subnet) -> None:
    """The DHCP port gives up its address on ``subnet``; with none left, it goes."""
    port = Port.objects.filter(network=network, device_owner=Port.OWNER_DHCP).first()
    if port is None:
        return
    IPAllocation.objects.filter(port=port, subnet=subnet).delete()
    if not port.fixed_ips.exists():
        port.delete()
