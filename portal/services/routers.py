"""Routers: create, update (the external gateway above all), delete, and their interfaces on subnets.

A router's ports are ordinary ports with ``device_id`` the router's id: an interface
(``network:router_interface``, the router's project) holding the gateway address of each subnet it
routes, and with ``external_gateway_info`` a gateway port (``network:router_gateway``, no project) on the
external network. Every change holds the router's row lock and ends with ``router_hosts.place``: the
router's host is chosen (or kept), its ports bound there, and every host the change touches replanned.

Neutron's rules: the gateway network must be external; ``enable_snat`` off and ``external_fixed_ips``
are the admins'; an interface by subnet takes the subnet's gateway address (400 without one), by port
takes a port nobody uses with one address; a router has one interface per subnet and none on subnets that
overlap its others (400); a router with interfaces is not deleted (409 RouterInUse); the interface and
the gateway floating IPs go through are not removed (409).
"""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

from django.db import transaction
from django.db.models import F

from portal.ids import as_uuid
from portal.models import FloatingIP, IPAllocation, Port, Project, Router, Subnet
from portal.selectors import networks as network_selectors
from portal.services import network_sync, router_hosts
from portal.services import quotas as quota_services

from .network_errors import (
    BadRequest,
    InvalidInput,
    NetworkNotFound,
    OverQuota,
    PolicyNotAuthorized,
    PortInUse,
    PortNotFound,
    RouterExternalGatewayInUseByFloatingIp,
    RouterInterfaceInUseByFloatingIP,
    RouterInterfaceNotFound,
    RouterInterfaceNotFoundForSubnet,
    RouterInUse,
    SubnetNotFound,
)
from .ports import check_bool, check_text, network_port_create, port_delete, port_take_gateway

GATEWAY_KEYS = {"network_id", "enable_snat", "external_fixed_ips", "qos_policy_id"}
ROUTER_UPDATABLE = ("name", "description", "admin_state_up", "external_gateway_info")


def _viewer(project: Project, user_is_admin: bool) -> SimpleNamespace:
    """The caller as the selectors take it, so a router sees only what its caller may see."""
    return SimpleNamespace(project=project, is_admin=user_is_admin)


def _lock(router: Router) -> Router:
    return Router.objects.select_for_update().get(pk=router.pk)


def _bump(router: Router) -> None:
    Router.objects.filter(pk=router.pk).update(revision_number=F("revision_number") + 1)


def interfaces(router: Router):
    return router_hosts.router_ports(router).filter(device_owner=Port.OWNER_ROUTER_INTERFACE)


def gateway_port(router: Router) -> Port | None:
    return router_hosts.router_ports(router).filter(device_owner=Port.OWNER_ROUTER_GATEWAY).first()


# --- the gateway --------------------------------------------------------------------------------------


def _gateway_request(info, *, project: Project, user_is_admin: bool):
    """``external_gateway_info`` checked: None to clear it, else (network, enable_snat or None, fixed_ips
    or None)."""
    if info is None or info == {}:
        return None
    if not isinstance(info, dict):
        raise InvalidInput("Invalid input for external_gateway_info. Reason: must be a dictionary.")
    unknown = sorted(set(info) - GATEWAY_KEYS)
    if unknown:
        raise InvalidInput(
            f"Invalid input for external_gateway_info. Reason: unexpected keys {', '.join(u[:32] for u in unknown)}."
        )
    if info.get("qos_policy_id") is not None:
        raise BadRequest("Invalid input for external_gateway_info: this cloud has no QoS policies.")
    network_id = info.get("network_id")
    if not isinstance(network_id, str):
        raise InvalidInput("Invalid input for external_gateway_info. Reason: network_id is required.")
    network = network_selectors.network_get(_viewer(project, user_is_admin), network_id)
    if network is None:
        raise NetworkNotFound(network_id[:64])
    if not network.external:
        raise BadRequest(f"Bad router request: Network {network.pk} is not an external network.")
    snat = info.get("enable_snat")
    if snat is not None:
        check_bool(snat, "enable_snat")
        if not snat and not user_is_admin:
            raise PolicyNotAuthorized("(rule:update_router:external_gateway_info:enable_snat) is disallowed by policy")
    fixed_ips = info.get("external_fixed_ips")
    if fixed_ips is not None:
        if fixed_ips and not user_is_admin:
            raise PolicyNotAuthorized(
                "(rule:update_router:external_gateway_info:external_fixed_ips) is disallowed by policy"
            )
        if not isinstance(fixed_ips, list):
            raise InvalidInput("Invalid input for external_fixed_ips. Reason: must be a list.")
        fixed_ips = fixed_ips or None
    return network, snat, fixed_ips


def _gateway_set(router: Router, request, user_is_admin: bool) -> None:
    """Give the router the gateway ``request`` asks for (None: none), under its row lock."""
    current = gateway_port(router)
    if request is None:
        if router.external_network_id is None:
            return
        if FloatingIP.objects.filter(router=router).exists():
            raise RouterExternalGatewayInUseByFloatingIp(router.pk, router.external_network_id)
        if current is not None:
            port_delete(port=current)
        router.external_network = None
        router.enable_snat = True
        router.save(update_fields=["external_network", "enable_snat", "updated_at"])
        return
    network, snat, fixed_ips = request
    if network.pk == router.external_network_id and current is not None and fixed_ips is None:
        if snat is not None and snat != router.enable_snat:
            router.enable_snat = snat
            router.save(update_fields=["enable_snat", "updated_at"])
        return
    if router.external_network_id not in (None, network.pk) and FloatingIP.objects.filter(router=router).exists():
        raise RouterExternalGatewayInUseByFloatingIp(router.pk, router.external_network_id)
    if not Subnet.objects.filter(network=network).exists():
        raise BadRequest(f"Bad router request: No subnets on external network {network.pk}.")
    if current is not None:
        port_delete(port=current)
    port = network_port_create(
        network=network,
        project=None,
        device_owner=Port.OWNER_ROUTER_GATEWAY,
        device_id=str(router.pk),
        fixed_ips=fixed_ips,
    )
    for allocation in port.fixed_ips.select_related("subnet"):
        _check_no_overlap(router, allocation.subnet, exclude_port=port)
    router.external_network = network
    router.enable_snat = True if snat is None else snat
    router.save(update_fields=["external_network", "enable_snat", "updated_at"])


# --- routers ------------------------------------------------------------------------------------------


def router_create(
    *,
    project: Project,
    user_is_admin: bool,
    name: str = "",
    description: str = "",
    admin_state_up: bool = True,
    external_gateway_info: dict | None = None,
) -> Router:
    """A router of ``project``; with ``external_gateway_info``, its gateway on that external network."""
    name = check_text(name, "name")
    description = check_text(description, "description")
    check_bool(admin_state_up, "admin_state_up")
    gateway = _gateway_request(external_gateway_info, project=project, user_is_admin=user_is_admin)
    with transaction.atomic():
        try:
            quota_services.network_quota_check(project=project, resource="router")
        except quota_services.QuotaExceeded:
            raise OverQuota("router") from None
        router = Router.objects.create(
            project=project, name=name, description=description, admin_state_up=admin_state_up
        )
        if gateway is not None:
            router = _lock(router)
            _gateway_set(router, gateway, user_is_admin)
            router_hosts.place(router)
    return router


def router_update(*, router: Router, project: Project, user_is_admin: bool, changes: dict) -> Router:
    """Change a router's name, description, admin state or gateway (``external_gateway_info`` ``{}`` or
    None clears it; 409 while floating IPs go through it)."""
    for attr in changes:
        if attr not in ROUTER_UPDATABLE:
            raise BadRequest(f"Cannot update read-only attribute {attr[:64]}")
    fields = {}
    for attr in ("name", "description"):
        if attr in changes:
            fields[attr] = check_text(changes[attr], attr)
    if "admin_state_up" in changes:
        fields["admin_state_up"] = check_bool(changes["admin_state_up"], "admin_state_up")
    gateway = ...
    if "external_gateway_info" in changes:
        gateway = _gateway_request(changes["external_gateway_info"], project=project, user_is_admin=user_is_admin)
    with transaction.atomic():
        router = _lock(router)
        for attr, value in fields.items():
            setattr(router, attr, value)
        router.save()
        if gateway is not ...:
            _gateway_set(router, gateway, user_is_admin)
        _bump(router)
        router_hosts.place(router)  # replans its host: a router that is down is in no plan
    router.refresh_from_db()
    return router


def router_delete(*, router: Router) -> None:
    """Delete a router without interfaces (409 RouterInUse otherwise), and its gateway port."""
    with transaction.atomic():
        router = Router.objects.select_for_update().filter(pk=router.pk).first()
        if router is None:
            return
        if interfaces(router).exists():
            raise RouterInUse(router.pk)
        current = gateway_port(router)
        if current is not None:
            port_delete(port=current)
        host_id = router.host_id
        router.delete()
        network_sync.hosts_changed([host_id])


# --- interfaces ---------------------------------------------------------------------------------------


def _check_no_overlap(router: Router, subnet: Subnet, *, exclude_port: Port | None = None) -> None:
    """400 when the router already has a port on ``subnet`` or on a subnet that overlaps it."""
    cidr = ipaddress.ip_network(subnet.cidr)
    held = IPAllocation.objects.filter(port__in=router_hosts.router_ports(router)).select_related("subnet")
    if exclude_port is not None:
        held = held.exclude(port=exclude_port)
    for allocation in held:
        other = allocation.subnet
        if other.pk == subnet.pk:
            raise BadRequest(f"Bad router request: Router already has a port on subnet {subnet.pk}.")
        if ipaddress.ip_network(other.cidr).overlaps(cidr):
            raise BadRequest(
                f"Bad router request: Cidr {subnet.cidr} of subnet {subnet.pk} overlaps with cidr {other.cidr} "
                f"of subnet {other.pk}."
            )


def _interface_body(router: Router, port: Port, subnet_ids: list) -> dict:
    return {
        "id": str(router.pk),
        "tenant_id": router.project_id,
        "project_id": router.project_id,
        "port_id": str(port.pk),
        "network_id": str(port.network_id),
        "subnet_id": str(subnet_ids[0]) if subnet_ids else None,
        "subnet_ids": [str(s) for s in subnet_ids],
    }


def _interface_by_port(router: Router, project: Project, user_is_admin: bool, port_id) -> tuple[Port, Subnet]:
    found = network_selectors.port_get(_viewer(project, user_is_admin), port_id)
    port = Port.objects.select_for_update().filter(pk=found.pk).first() if found is not None else None
    if port is None:
        raise PortNotFound(str(port_id)[:64])
    if port.device_id or port.device_owner:
        raise PortInUse(port.network_id, port.pk, port.device_id or port.device_owner)
    allocations = list(port.fixed_ips.select_related("subnet"))
    if len(allocations) != 1:
        raise BadRequest(f"Bad router request: Router port {port.pk} must have exactly one fixed IPv4 address.")
    subnet = allocations[0].subnet
    _check_no_overlap(router, subnet)
    Port.objects.filter(pk=port.pk).update(
        device_id=str(router.pk),
        device_owner=Port.OWNER_ROUTER_INTERFACE,
        revision_number=F("revision_number") + 1,
    )
    return port, subnet


def _interface_by_subnet(router: Router, project: Project, user_is_admin: bool, subnet_id) -> tuple[Port, Subnet]:
    subnet = network_selectors.subnet_get(_viewer(project, user_is_admin), subnet_id)
    if subnet is None:
        raise SubnetNotFound(str(subnet_id)[:64])
    if not subnet.gateway_ip:
        raise BadRequest(f"Bad router request: Subnet {subnet.pk} for router interface must have a gateway IP.")
    _check_no_overlap(router, subnet)
    try:
        quota_services.network_quota_check(project=router.project, resource="port")
    except quota_services.QuotaExceeded:
        raise OverQuota("port") from None
    port = network_port_create(
        network=subnet.network,
        project=router.project,
        device_owner=Port.OWNER_ROUTER_INTERFACE,
        device_id=str(router.pk),
        fixed_ips=[],
    )
    port_take_gateway(port=port, subnet=subnet)
    network_sync.network_changed(subnet.network_id)
    return port, subnet


def router_add_interface(
    *, router: Router, project: Project, user_is_admin: bool, subnet_id=None, port_id=None
) -> dict:
    """An interface of the router on a subnet (a new port holding its gateway address) or on the caller's
    unused port; returns Neutron's interface body."""
    if subnet_id is None and port_id is None:
        raise BadRequest("Bad router request: Either subnet_id or port_id must be specified.")
    if subnet_id is not None and port_id is not None:
        raise BadRequest("Bad router request: Cannot specify both subnet-id and port-id.")
    for value, field in ((subnet_id, "subnet_id"), (port_id, "port_id")):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"Invalid input for {field}. Reason: must be an id.")
    with transaction.atomic():
        router = _lock(router)
        if port_id is not None:
            port, subnet = _interface_by_port(router, project, user_is_admin, port_id)
        else:
            port, subnet = _interface_by_subnet(router, project, user_is_admin, subnet_id)
        _bump(router)
        router_hosts.place(router)
    return _interface_body(router, port, [subnet.pk])


def router_remove_interface(
    *, router: Router, project: Project, user_is_admin: bool, subnet_id=None, port_id=None
) -> dict:
    """Remove the router's interface on a subnet or by its port (the port goes); 409 while floating IPs
    reach their fixed addresses through it."""
    if subnet_id is None and port_id is None:
        raise BadRequest("Bad router request: Either subnet_id or port_id must be specified.")
    with transaction.atomic():
        router = _lock(router)
        if port_id is not None:
            port = interfaces(router).filter(pk=as_uuid(port_id)).first() if as_uuid(port_id) else None
            if port is None:
                raise RouterInterfaceNotFound(router.pk, str(port_id)[:64])
            if subnet_id is not None and not port.fixed_ips.filter(subnet_id=as_uuid(subnet_id)).exists():
                raise BadRequest(f"Subnet {str(subnet_id)[:64]} does not match the interface port {port.pk}.")
        else:
            pk = as_uuid(subnet_id)
            port = interfaces(router).filter(fixed_ips__subnet_id=pk).first() if pk else None
            if port is None:
                raise RouterInterfaceNotFoundForSubnet(router.pk, str(subnet_id)[:64])
        subnets = list(Subnet.objects.filter(allocations__port=port))
        cidrs = [(s, ipaddress.ip_network(s.cidr)) for s in subnets]
        for fixed in FloatingIP.objects.filter(router=router).values_list("fixed_ip_address", flat=True):
            for subnet, cidr in cidrs:
                if fixed and ipaddress.ip_address(fixed) in cidr:
                    raise RouterInterfaceInUseByFloatingIP(router.pk, subnet.pk)
        body = _interface_body(router, port, [s.pk for s in subnets])
        port_delete(port=port)
        _bump(router)
        router_hosts.place(router)
    return body
