"""Floating IPs: an address of an external network a project holds, and the fixed address of one of its
ports it stands for.

The address is held by a port of the cloud's own on the external network (``network:floatingip``,
``device_id`` the floating IP's id, no project, never bound). Associating it finds the router that joins
the two: one of the port's project, with an interface on the fixed address's subnet and its gateway on
the floating IP's network (404 ExternalGatewayForFloatingIPNotFound without one); that router's host
then translates the address both ways. Every change holds the floating IP's row lock, then its router's,
replans the router's host, and refreshes the server's ``addresses``.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.db.models import F

from portal.ids import as_uuid
from portal.models import FloatingIP, Instance, Network, Port, Project, Router, Subnet
from portal.services import network_sync
from portal.services import quotas as quota_services

from . import instance_ports
from .network_addresses import parse_ip
from .network_errors import (
    BadRequest,
    Conflict,
    ExternalGatewayForFloatingIPNotFound,
    FloatingIPPortAlreadyAssociated,
    IpAddressGenerationFailure,
    NetworkError,
    NotFound,
    OverQuota,
    PolicyNotAuthorized,
    PortNotFound,
)
from .ports import check_text, network_port_create, port_delete

FLOATING_IP_UPDATABLE = ("port_id", "fixed_ip_address", "description")


def _lock(floating_ip: FloatingIP) -> FloatingIP:
    return FloatingIP.objects.select_for_update().get(pk=floating_ip.pk)


def floating_ip_create(
    *,
    project: Project,
    user_is_admin: bool,
    floating_network: Network,
    floating_ip_address: str | None = None,
    subnet_id: str | None = None,
    port: Port | None = None,
    fixed_ip_address: str | None = None,
    description: str = "",
) -> FloatingIP:
    """A floating IP of ``project`` on the external ``floating_network`` (the lowest free address, on
    ``subnet_id`` when given; a given ``floating_ip_address`` is the admins'), associated with ``port``
    when given."""
    description = check_text(description, "description")
    if not floating_network.external:
        raise BadRequest(f"Bad floatingip request: Network {floating_network.pk} is not a valid external network.")
    if floating_ip_address is not None and not user_is_admin:
        raise PolicyNotAuthorized("(rule:create_floatingip:floating_ip_address) is disallowed by policy")
    if fixed_ip_address is not None and port is None:
        raise BadRequest("fixed_ip_address cannot be specified without a port_id.")
    request: dict = {}
    if subnet_id is not None:
        subnet = (
            Subnet.objects.filter(pk=as_uuid(subnet_id), network=floating_network).first()
            if as_uuid(subnet_id)
            else None
        )
        if subnet is None:
            raise BadRequest(
                f"Bad floatingip request: Subnet {str(subnet_id)[:64]} is not on network {floating_network.pk}."
            )
        request["subnet_id"] = str(subnet.pk)
    if floating_ip_address is not None:
        request["ip_address"] = str(parse_ip(floating_ip_address, "floating_ip_address"))
    with transaction.atomic():
        try:
            quota_services.network_quota_check(project=project, resource="floatingip")
        except quota_services.QuotaExceeded:
            raise OverQuota("floatingip") from None
        floating_ip_id = uuid.uuid4()
        held = network_port_create(
            network=floating_network,
            project=None,
            device_owner=Port.OWNER_FLOATING_IP,
            device_id=str(floating_ip_id),
            fixed_ips=[request] if request else None,
        )
        address = held.fixed_ips.first()
        if address is None:
            raise IpAddressGenerationFailure(floating_network.pk)
        floating_ip = FloatingIP.objects.create(
            id=floating_ip_id,
            project=project,
            floating_network=floating_network,
            floating_port=held,
            floating_ip_address=address.ip_address,
            description=description,
        )
        if port is not None:
            _associate(floating_ip, project, user_is_admin, port, fixed_ip_address)
    return floating_ip


def _router_for(floating_ip: FloatingIP, port: Port, subnet_id) -> Router | None:
    """The router (of the port's project, oldest first) with an interface on the subnet and its gateway
    on the floating IP's network, locked."""
    router_ids = [
        as_uuid(device_id)
        for device_id in Port.objects.filter(
            device_owner=Port.OWNER_ROUTER_INTERFACE, fixed_ips__subnet_id=subnet_id
        ).values_list("device_id", flat=True)
    ]
    return (
        Router.objects.select_for_update()
        .filter(
            pk__in=[r for r in router_ids if r is not None],
            project_id=port.project_id,
            external_network_id=floating_ip.floating_network_id,
        )
        .order_by("created_at", "id")
        .first()
    )


def _refresh_servers(*device_ids: str) -> None:
    """The ``addresses`` of the servers these ports belong to."""
    for instance in Instance.objects.filter(uuid__in=[d for d in {as_uuid(d) for d in device_ids} if d is not None]):
        instance_ports.addresses_refresh(instance)


def _associate(
    floating_ip: FloatingIP, project: Project, user_is_admin: bool, port: Port, fixed_ip_address
) -> FloatingIP:
    """Associate the (locked) floating IP with one of ``port``'s fixed addresses."""
    port = Port.objects.filter(pk=port.pk).first()
    if port is None or not (user_is_admin or (port.project_id == project.pk == floating_ip.project_id)):
        raise PortNotFound(getattr(port, "pk", ""))
    if port.device_owner.startswith("network:"):
        raise BadRequest(
            f"Bad floatingip request: Port {port.pk} has owner {port.device_owner} and therefore cannot be "
            "associated with a floating IP."
        )
    allocations = list(port.fixed_ips.all())
    if fixed_ip_address is not None:
        wanted = str(parse_ip(fixed_ip_address, "fixed_ip_address"))
        allocation = next((a for a in allocations if a.ip_address == wanted), None)
        if allocation is None:
            raise BadRequest(f"Bad floatingip request: Port {port.pk} does not have fixed ip {wanted}.")
    elif not allocations:
        raise BadRequest(f"Bad floatingip request: Port {port.pk} does not have any IPv4 address.")
    elif len(allocations) > 1:
        raise BadRequest(
            f"Port {port.pk} has multiple fixed IPv4 addresses. Must provide a specific IPv4 address when "
            "assigning a floating IP."
        )
    else:
        allocation = allocations[0]
    router = _router_for(floating_ip, port, allocation.subnet_id)
    if router is None:
        raise ExternalGatewayForFloatingIPNotFound(allocation.subnet_id, floating_ip.floating_network_id, port.pk)
    taken = (
        FloatingIP.objects.filter(port=port, fixed_ip_address=allocation.ip_address).exclude(pk=floating_ip.pk).first()
    )
    if taken is not None:
        raise FloatingIPPortAlreadyAssociated(
            floating_ip.floating_ip_address, floating_ip.pk, port.pk, allocation.ip_address, taken.floating_network_id
        )
    before_host = Router.objects.filter(pk=floating_ip.router_id).values_list("host_id", flat=True).first()
    before_device = Port.objects.filter(pk=floating_ip.port_id).values_list("device_id", flat=True).first()
    try:
        with transaction.atomic():
            FloatingIP.objects.filter(pk=floating_ip.pk).update(
                port=port,
                fixed_ip_address=allocation.ip_address,
                router=router,
                status=FloatingIP.Status.ACTIVE,
                revision_number=F("revision_number") + 1,
            )
    except IntegrityError:  # another floating IP took the fixed address since we looked
        raise FloatingIPPortAlreadyAssociated(
            floating_ip.floating_ip_address,
            floating_ip.pk,
            port.pk,
            allocation.ip_address,
            floating_ip.floating_network_id,
        ) from None
    network_sync.hosts_changed([router.host_id, before_host])
    _refresh_servers(port.device_id, *([before_device] if before_device else []))
    floating_ip.refresh_from_db()
    return floating_ip


def _disassociate(floating_ip: FloatingIP) -> FloatingIP:
    if floating_ip.port_id is None and floating_ip.router_id is None:
        return floating_ip
    router = Router.objects.select_for_update().filter(pk=floating_ip.router_id).first()
    device_id = Port.objects.filter(pk=floating_ip.port_id).values_list("device_id", flat=True).first()
    FloatingIP.objects.filter(pk=floating_ip.pk).update(
        port=None,
        fixed_ip_address=None,
        router=None,
        status=FloatingIP.Status.DOWN,
        revision_number=F("revision_number") + 1,
    )
    if router is not None:
        network_sync.hosts_changed([router.host_id])
    if device_id:
        _refresh_servers(device_id)
    floating_ip.refresh_from_db()
    return floating_ip


def floating_ip_associate(
    *, floating_ip: FloatingIP, project: Project, user_is_admin: bool, port: Port, fixed_ip_address=None
) -> FloatingIP:
    """Associate the floating IP with ``port`` (the caller's; at ``fixed_ip_address``, or its only
    address), moving it from whatever it stood for before."""
    with transaction.atomic():
        return _associate(_lock(floating_ip), project, user_is_admin, port, fixed_ip_address)


def floating_ip_disassociate(*, floating_ip: FloatingIP) -> FloatingIP:
    with transaction.atomic():
        return _disassociate(_lock(floating_ip))


def _port_named(value, project: Project, user_is_admin: bool) -> Port:
    if isinstance(value, Port):
        return value
    port = Port.objects.filter(pk=as_uuid(value)).first() if as_uuid(value) else None
    if port is None or not (user_is_admin or port.project_id == project.pk):
        raise PortNotFound(str(value)[:64])
    return port


def floating_ip_update(*, floating_ip: FloatingIP, project: Project, user_is_admin: bool, changes: dict) -> FloatingIP:
    """Change the description, or the association: ``port_id`` (a Port, its id, or None to disassociate)
    and ``fixed_ip_address``."""
    for attr in changes:
        if attr not in FLOATING_IP_UPDATABLE:
            raise BadRequest(f"Cannot update read-only attribute {attr[:64]}")
    description = check_text(changes["description"], "description") if "description" in changes else None
    with transaction.atomic():
        floating_ip = _lock(floating_ip)
        if description is not None:
            FloatingIP.objects.filter(pk=floating_ip.pk).update(
                description=description, revision_number=F("revision_number") + 1
            )
        fixed = changes.get("fixed_ip_address")
        if "port_id" in changes:
            if changes["port_id"] is None:
                if fixed is not None:
                    raise BadRequest("fixed_ip_address cannot be specified without a port_id.")
                _disassociate(floating_ip)
            else:
                port = _port_named(changes["port_id"], project, user_is_admin)
                _associate(floating_ip, project, user_is_admin, port, fixed)
        elif "fixed_ip_address" in changes:
            if floating_ip.port is None:
                raise BadRequest("fixed_ip_address cannot be specified without a port_id.")
            _associate(floating_ip, project, user_is_admin, floating_ip.port, fixed)
        floating_ip.refresh_from_db()
    return floating_ip


def floating_ip_delete(*, floating_ip: FloatingIP) -> None:
    """Disassociate and delete the floating IP, and free its address."""
    with transaction.atomic():
        floating_ip = FloatingIP.objects.select_for_update().filter(pk=floating_ip.pk).first()
        if floating_ip is None:
            return
        _disassociate(floating_ip)
        held = floating_ip.floating_port
        floating_ip.delete()
        port_delete(port=held)


# --- the compute API's addFloatingIp / removeFloatingIp (until 2.44) -----------------------------------


def _by_address(project: Project, user_is_admin: bool, address) -> FloatingIP:
    if not isinstance(address, str) or not address:
        raise BadRequest("Invalid input: address must be a floating IP address.")
    rows = FloatingIP.objects.filter(floating_ip_address=str(parse_ip(address, "address")))
    found = (rows if user_is_admin else rows.filter(project=project)).first()
    if found is None:
        raise NotFound(f"floating IP {address[:64]} not found")
    return found


def server_floating_ip_add(
    *, project: Project, user_is_admin: bool, instance: Instance, address, fixed_address=None
) -> FloatingIP:
    """Associate the project's floating IP ``address`` with the server: with the port holding
    ``fixed_address``, else the first of its ports a router of its project can reach it from."""
    floating_ip = _by_address(project, user_is_admin, address)
    ports = list(instance_ports.instance_ports(instance))
    if not ports:
        raise BadRequest(f"Instance {instance.uuid} has no network ports to associate a floating IP with.")
    if fixed_address is not None:
        wanted = str(parse_ip(fixed_address, "fixed_address"))
        holder = next((p for p in ports if any(a.ip_address == wanted for a in p.fixed_ips.all())), None)
        if holder is None:
            raise BadRequest("Specified fixed address not assigned to instance")
        return floating_ip_associate(
            floating_ip=floating_ip, project=project, user_is_admin=user_is_admin, port=holder, fixed_ip_address=wanted
        )
    failure: NetworkError | None = None
    for candidate in ports:
        try:
            return floating_ip_associate(
                floating_ip=floating_ip, project=project, user_is_admin=user_is_admin, port=candidate
            )
        except ExternalGatewayForFloatingIPNotFound as exc:
            failure = exc
    raise failure


def server_floating_ip_remove(*, project: Project, user_is_admin: bool, instance: Instance, address) -> FloatingIP:
    """Disassociate the floating IP ``address`` from the server (409 when it is not the server's)."""
    floating_ip = _by_address(project, user_is_admin, address)
    port_device = Port.objects.filter(pk=floating_ip.port_id).values_list("device_id", flat=True).first()
    if port_device != str(instance.uuid):
        raise Conflict(f"Floating IP {address[:64]} is not associated with instance {instance.uuid}.")
    return floating_ip_disassociate(floating_ip=floating_ip)
