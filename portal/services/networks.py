"""Every write of the network controller: networks, subnets, ports and the addresses ports hold.

Callers pass the caller's ``project`` and whether they are an admin (``user_is_admin``); each function
enforces the networking API's policy on what is asked (provider attributes and bindings are admin-only;
a shared network is usable by everyone, another project's private one by admins only) and raises a
``network_errors.NetworkError`` (type and status included) otherwise. Visibility (who may *see* a
network, a 404) is the selectors' business: pass only rows the caller may see.

Networks and subnets::

    network_create(*, project, user_is_admin, name="", description="", shared=False, external=False,
                   network_type=None, physical_network=None, segmentation_id=None, mtu=None,
                   admin_state_up=True, port_security_enabled=True, auto_allocated=False) -> Network
    network_update(*, network, user_is_admin, **changes) -> Network       # name, description, shared, ...
    network_delete(*, network) -> None          # 409 NetworkInUse while it has ports but its DHCP port
    subnet_create(*, project, user_is_admin, network, cidr, name="", description="", gateway_ip=...,
                  allocation_pools=None, dns_nameservers=None, host_routes=None, enable_dhcp=True) -> Subnet
    subnet_update(*, subnet, **changes) -> Subnet
    subnet_delete(*, subnet) -> None            # 409 SubnetInUse while ports hold addresses on it

Ports are ``portal.services.ports``' (for the compute side as much as for the API)::

    port_create(*, project, user_is_admin, network, fixed_ips=None, mac_address=None, device_id="",
                device_owner="", name="", description="", admin_state_up=True, port_security_enabled=None,
                host=None, auto_delete=False) -> Port
    port_update(*, port, user_is_admin, **changes) -> Port
    port_bind(*, port, host) -> Port / port_unbind(*, port) -> Port
    port_delete(*, port) -> None

IP allocation is exact under concurrency: the allocating transaction locks the subnet's row while it
picks the lowest free address of the pools, and the (subnet, address) unique constraint stands behind it.
Quotas (``network``, ``subnet``, ``port``) are checked under the project's row lock, as compute quotas are.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from portal.models import IPAllocation, Network, Port, Project, Subnet
from portal.services import network_sync
from portal.services import quotas as quota_services

from . import network_addresses as addresses
from .network_errors import (
    BadRequest,
    FlatNetworkInUse,
    InvalidInput,
    InvalidSharedSetting,
    NetworkInUse,
    NoNetworkAvailable,
    OverQuota,
    PolicyNotAuthorized,
    SubnetInUse,
    TunnelIdInUse,
)
from .ports import check_bool, check_text, dhcp_port_add_address, dhcp_port_remove_address

MAX_VNI = 2**24 - 1
NETWORK_TYPES = (Network.Type.VXLAN, Network.Type.FLAT)


def _conf() -> dict:
    return settings.CLOUD["NETWORK"]


def max_mtu(network_type: str) -> int:
    underlay = _conf()["UNDERLAY_MTU"]
    return underlay - 50 if network_type == Network.Type.VXLAN else underlay


def _quota(project: Project, resource: str) -> None:
    try:
        quota_services.network_quota_check(project=project, resource=resource)
    except quota_services.QuotaExceeded:
        raise OverQuota(resource) from None


def _policy(rule: str) -> PolicyNotAuthorized:
    return PolicyNotAuthorized(f"({rule}) is disallowed by policy")


def _check_mtu(mtu, network_type: str) -> int:
    if isinstance(mtu, bool) or not isinstance(mtu, int):
        raise InvalidInput("Invalid input for mtu. Reason: must be an integer.", field="mtu")
    ceiling = max_mtu(network_type)
    if not 68 <= mtu <= ceiling:
        raise InvalidInput(f"Invalid input for mtu. Reason: must be between 68 and {ceiling}.", field="mtu")
    return mtu


# --- networks -----------------------------------------------------------------------------------------


def network_create(
    *,
    project: Project,
    user_is_admin: bool,
    name: str = "",
    description: str = "",
    shared: bool = False,
    external: bool = False,
    network_type: str | None = None,
    physical_network: str | None = None,
    segmentation_id: int | None = None,
    mtu: int | None = None,
    admin_state_up: bool = True,
    port_security_enabled: bool = True,
    auto_allocated: bool = False,
) -> Network:
    """A network in ``project``. A VXLAN network gets the lowest free VNI of the configured range unless
    an admin names one; a flat network needs its physical network (one network per physical network)."""
    if not user_is_admin:
        for attr, value, default in (
            ("shared", shared, False),
            ("router:external", external, False),
            ("provider:network_type", network_type, None),
            ("provider:physical_network", physical_network, None),
            ("provider:segmentation_id", segmentation_id, None),
        ):
            if value != default:
                raise _policy(f"rule:create_network:{attr}")
    check_text(name)
    check_text(description, "description")
    for attr, value in (("shared", shared), ("router:external", external), ("admin_state_up", admin_state_up)):
        check_bool(value, attr)
    check_bool(port_security_enabled, "port_security_enabled")
    network_type = network_type or Network.Type.VXLAN
    if network_type not in NETWORK_TYPES:
        raise InvalidInput(
            f"Invalid input for operation: network_type value '{str(network_type)[:32]}' not supported.",
            field="provider:network_type",
        )
    if network_type == Network.Type.FLAT:
        if not physical_network or not isinstance(physical_network, str) or len(physical_network) > 64:
            raise InvalidInput(
                "Invalid input for operation: physical_network required for flat provider network.",
                field="provider:physical_network",
            )
        if segmentation_id is not None:
            raise InvalidInput(
                "Invalid input for operation: segmentation_id specified for flat provider network.",
                field="provider:segmentation_id",
            )
    else:
        if physical_network is not None:
            raise InvalidInput(
                "Invalid input for operation: provider:physical_network specified for vxlan network.",
                field="provider:physical_network",
            )
        if segmentation_id is not None and (
            isinstance(segmentation_id, bool)
            or not isinstance(segmentation_id, int)
            or not 1 <= segmentation_id <= MAX_VNI
        ):
            raise InvalidInput(
                f"Invalid input for operation: segmentation_id must be between 1 and {MAX_VNI}.",
                field="provider:segmentation_id",
            )
    mtu = max_mtu(network_type) if mtu is None else _check_mtu(mtu, network_type)
    with transaction.atomic():
        _quota(project, "network")
        fields = dict(
            project=project,
            name=name,
            description=description,
            shared=shared,
            external=external,
            network_type=network_type,
            physical_network=physical_network if network_type == Network.Type.FLAT else None,
            mtu=mtu,
            admin_state_up=admin_state_up,
            port_security_enabled=port_security_enabled,
            auto_allocated=auto_allocated,
        )
        if network_type == Network.Type.FLAT or segmentation_id is not None:
            try:
                with transaction.atomic():
                    return Network.objects.create(**fields, segmentation_id=segmentation_id)
            except IntegrityError as exc:
                if "one_auto_network_per_project" in str(exc):
                    raise
                if network_type == Network.Type.FLAT:
                    raise FlatNetworkInUse(physical_network) from None
                raise TunnelIdInUse(segmentation_id) from None
        return _create_with_free_vni(fields)


def _create_with_free_vni(fields: dict) -> Network:
    """Insert with the lowest VNI of the range no network holds. Two creators that pick the same VNI at once
    collide on the unique constraint: the loser looks again (it then sees the winner's row)."""
    low, high = _conf()["VNI_MIN"], _conf()["VNI_MAX"]
    for _attempt in range(20):
        taken = set(
            Network.objects.filter(
                network_type=Network.Type.VXLAN, segmentation_id__gte=low, segmentation_id__lte=high
            ).values_list("segmentation_id", flat=True)
        )
        vni = next((v for v in range(low, high + 1) if v not in taken), None)
        if vni is None:
            raise NoNetworkAvailable()
        try:
            with transaction.atomic():
                return Network.objects.create(**fields, segmentation_id=vni)
        except IntegrityError as exc:
            if "one_network_per_vni" not in str(exc):
                raise
    raise NoNetworkAvailable()


ADMIN_NETWORK_ATTRS = {"shared": "shared", "router:external": "external"}
NETWORK_UPDATABLE = {
    "name": "name",
    "description": "description",
    "admin_state_up": "admin_state_up",
    "port_security_enabled": "port_security_enabled",
    "mtu": "mtu",
    **ADMIN_NETWORK_ATTRS,
}
NETWORK_PROVIDER_ATTRS = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


def network_update(*, network: Network, user_is_admin: bool, changes: dict) -> Network:
    """Change what may change of a network (keys are the API's attribute names)."""
    for attr in changes:
        if attr in NETWORK_PROVIDER_ATTRS:
            raise BadRequest("Invalid input for operation: Plugin does not support updating provider attributes.")
        if attr not in NETWORK_UPDATABLE:
            raise BadRequest(f"Cannot update read-only attribute {attr[:64]}")
        if (
            attr in ADMIN_NETWORK_ATTRS
            and not user_is_admin
            and changes[attr] != getattr(network, NETWORK_UPDATABLE[attr])
        ):
            raise _policy(f"rule:update_network:{attr}")
    with transaction.atomic():
        network = Network.objects.select_for_update().get(pk=network.pk)
        for attr, value in changes.items():
            if attr in ("name", "description"):
                check_text(value, attr)
            elif attr == "mtu":
                _check_mtu(value, network.network_type)
            else:
                check_bool(value, attr)
            setattr(network, NETWORK_UPDATABLE[attr], value)
        if network.shared is False and changes.get("shared") is False:
            others = (
                Port.objects.filter(network=network)
                .exclude(project=network.project)
                .exclude(device_owner=Port.OWNER_DHCP)
            )
            if others.exists():
                raise InvalidSharedSetting(network.name or network.pk)
        network.revision_number = F("revision_number") + 1
        network.save()
        network.refresh_from_db()
        network_sync.network_changed(network.pk)
    return network


def network_delete(*, network: Network) -> None:
    """Delete a network with its subnets and the cloud's DHCP port; 409 while any other port is on it."""
    with transaction.atomic():
        network = Network.objects.select_for_update().get(pk=network.pk)
        if Port.objects.filter(network=network).exclude(device_owner=Port.OWNER_DHCP).exists():
            raise NetworkInUse(network.pk)
        network_sync.network_changed(network.pk)
        IPAllocation.objects.filter(port__network=network).delete()
        Port.objects.filter(network=network).delete()
        Subnet.objects.filter(network=network).delete()
        network.delete()


# --- subnets ------------------------------------------------------------------------------------------


def _owner_or_admin(network: Network, project: Project, user_is_admin: bool, action: str) -> None:
    if not user_is_admin and network.project_id != project.pk:
        raise _policy(f"rule:{action}")


def subnet_create(
    *,
    project: Project,
    user_is_admin: bool,
    network: Network,
    cidr: str,
    name: str = "",
    description: str = "",
    ip_version: int = 4,
    gateway_ip=...,
    allocation_pools: list | None = None,
    dns_nameservers: list | None = None,
    host_routes: list | None = None,
    enable_dhcp: bool = True,
) -> Subnet:
    """An IPv4 subnet of ``network``: ``gateway_ip`` ``...`` is the first host address, ``None`` none;
    without ``allocation_pools`` the whole subnet but network, broadcast and gateway addresses. With DHCP
    the network's DHCP port takes an address on it."""
    _owner_or_admin(network, project, user_is_admin, "create_subnet")
    if ip_version != 4:
        raise BadRequest("Invalid input for ip_version. Reason: only IPv4 subnets are supported by this cloud.")
    check_text(name)
    check_text(description, "description")
    check_bool(enable_dhcp, "enable_dhcp")
    net = addresses.parse_cidr(cidr)
    gateway = addresses.gateway_for(net, gateway_ip)
    if allocation_pools is None:
        pools = addresses.default_pools(net, gateway)
    else:
        pools = addresses.validate_pools(net, allocation_pools, gateway)
    dns = addresses.validate_dns(dns_nameservers if dns_nameservers is not None else list(_conf()["DNS_NAMESERVERS"]))
    routes = addresses.validate_routes(host_routes or [])
    with transaction.atomic():
        _quota(project, "subnet")
        network = Network.objects.select_for_update().get(pk=network.pk)
        for other in Subnet.objects.filter(network=network):
            if addresses.parse_cidr(other.cidr).overlaps(net):
                raise BadRequest(
                    f"Invalid input for operation: Requested subnet with cidr: {net} for network: {network.pk} "
                    "overlaps with another subnet."
                )
        subnet = Subnet.objects.create(
            network=network,
            project=project,
            name=name,
            description=description,
            ip_version=4,
            cidr=str(net),
            gateway_ip=gateway,
            allocation_pools=pools,
            dns_nameservers=dns,
            host_routes=routes,
            enable_dhcp=enable_dhcp,
        )
        if enable_dhcp:
            dhcp_port_add_address(network=network, subnet=subnet)
        network_sync.network_changed(network.pk)
    return subnet


SUBNET_UPDATABLE = (
    "name",
    "description",
    "gateway_ip",
    "allocation_pools",
    "dns_nameservers",
    "host_routes",
    "enable_dhcp",
)


def subnet_update(*, subnet: Subnet, changes: dict) -> Subnet:
    for attr in changes:
        if attr not in SUBNET_UPDATABLE:
            raise BadRequest(f"Cannot update read-only attribute {attr[:64]}")
    with transaction.atomic():
        subnet = Subnet.objects.select_for_update().select_related("network").get(pk=subnet.pk)
        net = addresses.parse_cidr(subnet.cidr)
        if "name" in changes:
            subnet.name = check_text(changes["name"])
        if "description" in changes:
            subnet.description = check_text(changes["description"], "description")
        if "gateway_ip" in changes:
            gateway = addresses.gateway_for(net, changes["gateway_ip"])
            if gateway and subnet.allocations.filter(ip_address=gateway).exists():
                raise BadRequest(f"Gateway ip {gateway} is in use by a port of subnet {subnet.pk}.", field="gateway_ip")
            subnet.gateway_ip = gateway
        if "allocation_pools" in changes or "gateway_ip" in changes:
            pools = changes.get("allocation_pools", subnet.allocation_pools)
            subnet.allocation_pools = addresses.validate_pools(net, pools, subnet.gateway_ip)
        if "dns_nameservers" in changes:
            subnet.dns_nameservers = addresses.validate_dns(changes["dns_nameservers"])
        if "host_routes" in changes:
            subnet.host_routes = addresses.validate_routes(changes["host_routes"])
        if "enable_dhcp" in changes and check_bool(changes["enable_dhcp"], "enable_dhcp") != subnet.enable_dhcp:
            subnet.enable_dhcp = changes["enable_dhcp"]
            subnet.save(update_fields=["enable_dhcp"])
            if subnet.enable_dhcp:
                dhcp_port_add_address(network=subnet.network, subnet=subnet)
            else:
                dhcp_port_remove_address(network=subnet.network, subnet=subnet)
        subnet.revision_number = F("revision_number") + 1
        subnet.save()
        subnet.refresh_from_db()
        network_sync.network_changed(subnet.network_id)
    return subnet


def subnet_delete(*, subnet: Subnet) -> None:
    """Delete a subnet; 409 while any port but the cloud's DHCP port holds an address on it."""
    with transaction.atomic():
        subnet = Subnet.objects.select_for_update().select_related("network").get(pk=subnet.pk)
        if subnet.allocations.exclude(port__device_owner=Port.OWNER_DHCP).exists():
            raise SubnetInUse(subnet.pk)
        dhcp_port_remove_address(network=subnet.network, subnet=subnet)
        network_sync.network_changed(subnet.network_id)
        subnet.delete()
