"""A server's ports: made or taken when it is created, bound to whichever host it is on, released when it
is gone, and what the server shows of them (``addresses``, the config drive's ``network_data.json``).

A port follows its server: the binding host is always the server's host, and while a move is under way
the other host of the move has the server's networks too (``network_sync`` plans them), so the guest
finds its bridge wherever it lands.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from compute_tasks import rpc
from portal.auth.context import RequestContext
from portal.ids import is_uuid
from portal.models import FloatingIP, Instance, Migration, Network, Port, SecurityGroup
from portal.selectors import networks as network_selectors
from portal.selectors import security_groups as group_selectors
from portal.states import VmState

from . import lifecycle, network_sync, networks
from . import ports as ports_service
from . import security_groups as group_services
from .network_errors import NetworkError


class NetworkRequestError(Exception):
    """A server's networks cannot be had as asked: ``status`` is the compute API's answer (400 or 409)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NetworkRequest:
    """One entry of a create request's ``networks``: a network (with an address on it, perhaps) or a port."""

    network_id: str = ""
    port_id: str = ""
    fixed_ip: str = ""
    tag: str = ""


AUTO_NETWORK_NAME = "auto_allocated_network"


def device_owner(instance: Instance) -> str:
    return (
        f"{Port.OWNER_COMPUTE}{instance.availability_zone or settings.CLOUD.get('DEFAULT_AVAILABILITY_ZONE', 'nova')}"
    )


def instance_ports(instance: Instance):
    """The server's ports, oldest first (the order of its NICs)."""
    return (
        Port.objects.filter(device_id=str(instance.uuid))
        .exclude(device_owner=Port.OWNER_DHCP)
        .select_related("network")
        .prefetch_related("fixed_ips")
        .order_by("created_at", "id")
    )


def ports_allocate(
    *,
    ctx: RequestContext,
    instance: Instance,
    requests: list[NetworkRequest] | str,
    security_groups: tuple[SecurityGroup, ...] | None = None,
) -> None:
    """Give a new server its ports (inside its create transaction): one per request, in order; ``auto``
    is the project's network, made on first use. The ports it makes are in ``security_groups`` (None: the
    project's default group); ports the request names keep theirs."""
    if requests == "auto":
        requests = [NetworkRequest(network_id=str(auto_network(ctx=ctx).pk))]
    for request in requests:
        if request.port_id:
            _port_take(ctx=ctx, instance=instance, port_id=request.port_id)
        else:
            _port_make(
                ctx=ctx,
                instance=instance,
                network_id=request.network_id,
                fixed_ip=request.fixed_ip,
                security_groups=security_groups,
            )
    addresses_refresh(instance)


def _usable_network(ctx: RequestContext, network_id: str) -> Network:
    """A network the caller may put a server on: its project's, a shared one, or any for an admin."""
    network = network_selectors.network_get(ctx, network_id)
    if network is None or not (ctx.is_admin or network.shared or network.project_id == ctx.project.pk):
        raise NetworkRequestError(f"Network {str(network_id)[:64]} could not be found.")
    return network


def _port_make(
    *,
    ctx: RequestContext,
    instance: Instance,
    network_id: str,
    fixed_ip: str,
    security_groups: tuple[SecurityGroup, ...] | None = None,
) -> Port:
    network = _usable_network(ctx, network_id)
    try:
        return ports_service.port_create(
            project=ctx.project,
            user_is_admin=ctx.is_admin,
            network=network,
            fixed_ips=[{"ip_address": fixed_ip}] if fixed_ip else None,
            device_id=str(instance.uuid),
            device_owner=device_owner(instance),
            auto_delete=True,
            security_groups=list(security_groups) if security_groups is not None else None,
        )
    except NetworkError as exc:
        raise _request_error(exc, network) from None


def _request_error(exc: NetworkError, network: Network) -> NetworkRequestError:
    """The networking API's refusal, in the words the compute API answers with."""
    if exc.type == "IpAddressGenerationFailure":
        return NetworkRequestError(f"No more IP addresses available on network {network.pk}.", 409)
    if exc.type == "IpAddressAlreadyAllocated":
        return NetworkRequestError(str(exc), 409)
    if exc.type == "OverQuota":
        return NetworkRequestError(f"Maximum number of ports exceeded: {exc}", 403)
    return NetworkRequestError(str(exc), 400)


def _port_take(*, ctx: RequestContext, instance: Instance, port_id: str) -> Port:
    found = network_selectors.port_get(ctx, port_id)
    port = Port.objects.select_for_update().filter(pk=found.pk).first() if found is not None else None
    if port is None:
        raise NetworkRequestError(f"Port {str(port_id)[:64]} could not be found.")
    if port.device_id or port.device_owner == Port.OWNER_DHCP:
        raise NetworkRequestError(f"Port {port.pk} is still in use.", 409)
    Port.objects.filter(pk=port.pk).update(device_id=str(instance.uuid), device_owner=device_owner(instance))
    port.refresh_from_db()
    return port


def auto_network(*, ctx: RequestContext) -> Network:
    """The network ``networks: auto`` puts a server on: the only network the project can use, or the
    one it was given automatically, made now (with a subnet of ``AUTO_CIDR``) when it has none."""
    usable = list(
        Network.objects.filter(Q(project=ctx.project) | Q(shared=True, external=False)).order_by("created_at")
    )
    made = [n for n in usable if n.auto_allocated and n.project_id == ctx.project.pk]
    if made:
        return made[0]
    if len(usable) == 1:
        return usable[0]
    if usable:
        raise NetworkRequestError("Multiple possible networks found, use a Network ID to be more specific.", 409)
    try:
        with transaction.atomic():
            network = networks.network_create(
                project=ctx.project, user_is_admin=False, name=AUTO_NETWORK_NAME, auto_allocated=True
            )
            networks.subnet_create(
                project=ctx.project,
                user_is_admin=False,
                network=network,
                name=AUTO_NETWORK_NAME,
                cidr=settings.CLOUD["NETWORK"]["AUTO_CIDR"],
            )
    except IntegrityError:  # another request of the project made it first
        return Network.objects.get(project=ctx.project, auto_allocated=True)
    except NetworkError as exc:
        raise NetworkRequestError(f"Unable to automatically allocate a network for project: {exc}", 400) from None
    return network


def addresses_refresh(instance: Instance) -> None:
    """Write the server's ``addresses`` (what its list and detail views show) from its ports: each
    port's fixed addresses, then the floating addresses associated with it (``type: floating``, under
    the port's network and with its MAC, as Nova shows them)."""
    ports = list(instance_ports(instance))
    floating: dict = {}
    for port_id, address in (
        FloatingIP.objects.filter(port__in=ports)
        .order_by("created_at", "id")
        .values_list("port_id", "floating_ip_address")
    ):
        floating.setdefault(port_id, []).append(address)
    addresses = []
    for port in ports:
        network = port.network.name or str(port.network_id)
        for allocation in port.fixed_ips.all():
            addresses.append(
                {
                    "addr": allocation.ip_address,
                    "version": 4 if "." in allocation.ip_address else 6,
                    "mac": port.mac_address,
                    "network": network,
                }
            )
        for address in floating.get(port.pk, []):
            addresses.append(
                {"addr": address, "version": 4, "mac": port.mac_address, "network": network, "type": "floating"}
            )
    Instance.objects.filter(pk=instance.pk).update(addresses=addresses)
    instance.addresses = addresses


def ports_follow(instance: Instance) -> None:
    """The server's host (or a move of it) changed: its ports are bound to its host now, and every host
    that had or has them gets its plan again."""
    ports = Port.objects.filter(device_id=str(instance.uuid)).exclude(device_owner=Port.OWNER_DHCP)
    before = set(ports.values_list("host_id", flat=True))
    host_id = instance.host_id if instance.vm_state != VmState.DELETED else None
    moved = ports.exclude(host_id=host_id) if host_id is not None else ports.filter(host_id__isnull=False)
    moved.update(host_id=host_id, vif_type="bridge" if host_id else "unbound", status=Port.Status.DOWN)
    network_sync.hosts_changed(before | {host_id} | moving_hosts(instance))


def moving_hosts(instance: Instance) -> set[int]:
    """The hosts of the server's move under way, if any: both need its networks until it ends."""
    hosts: set[int] = set()
    for source, dest in Migration.objects.filter(instance=instance, status__in=Migration.ACTIVE_STATUSES).values_list(
        "source_host_id", "dest_host_id"
    ):
        hosts.update(h for h in (source, dest) if h is not None)
    return hosts


def ports_release(instance: Instance) -> None:
    """The server is gone: the ports made for it go, those the user brought stay, unbound and free; the
    floating IPs of either are disassociated."""
    ports = Port.objects.filter(device_id=str(instance.uuid)).exclude(device_owner=Port.OWNER_DHCP)
    hosts = set(ports.values_list("host_id", flat=True)) | moving_hosts(instance)
    networks_touched = set(ports.values_list("network_id", flat=True))
    ports_service.floating_ips_let_go(ports.values_list("pk", flat=True))
    for port in ports.filter(auto_delete=True):
        ports_service.port_delete(port=port)
    ports.update(device_id="", device_owner="", host=None, vif_type="unbound", status=Port.Status.DOWN)
    for network_id in networks_touched:
        network_sync.network_changed(network_id)
    network_sync.hosts_changed(hosts)


def network_data(instance: Instance) -> dict:
    """OpenStack's ``network_data.json`` for the server's config drive: its links, networks (static, as the
    control plane allocated them) and DNS services."""
    links, nets, services = [], [], []
    for port in instance_ports(instance):
        link_id = f"tap{str(port.pk)[:11]}"
        links.append(
            {
                "id": link_id,
                "vif_id": str(port.pk),
                "type": "bridge",
                "mtu": port.network.mtu,
                "ethernet_mac_address": port.mac_address,
            }
        )
        subnets = {s.pk: s for s in port.network.subnets.all()}
        for allocation in port.fixed_ips.all():
            subnet = subnets.get(allocation.subnet_id)
            if subnet is None:
                continue
            prefix = subnet.cidr.split("/")[1]
            routes = [
                {
                    "network": r["destination"].split("/")[0],
                    "netmask": _netmask(r["destination"]),
                    "gateway": r["nexthop"],
                }
                for r in subnet.host_routes
            ]
            if subnet.gateway_ip:
                default = "0.0.0.0"  # noqa: S104 - the default route's destination, not a listening address
                routes.insert(0, {"network": default, "netmask": default, "gateway": subnet.gateway_ip})
            nets.append(
                {
                    "id": f"network{len(nets)}",
                    "type": "ipv4",
                    "link": link_id,
                    "ip_address": allocation.ip_address,
                    "netmask": _netmask(f"0.0.0.0/{prefix}"),
                    "routes": routes,
                    "network_id": str(port.network_id),
                    "services": [{"type": "dns", "address": a} for a in subnet.dns_nameservers],
                }
            )
            services.extend({"type": "dns", "address": a} for a in subnet.dns_nameservers)
    return {"links": links, "networks": nets, "services": services}


def _netmask(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False).netmask)


# --- os-interface ---------------------------------------------------------------------------------------

# Nova's states for interface attach and detach: the guest runs, is paused, or is off.
INTERFACE_VM_STATES = frozenset({VmState.ACTIVE, VmState.PAUSED, VmState.STOPPED})


def _interface_instance(ctx: RequestContext, instance: Instance, verb: str) -> Instance:
    """The instance, locked, if it may have a NIC plugged or unplugged now."""
    locked = Instance.objects.for_change().select_related("host").get(pk=instance.pk)
    if locked.locked and not ctx.is_admin:
        raise lifecycle.InstanceLocked(f"Instance {locked.uuid} is locked")
    if locked.vm_state not in INTERFACE_VM_STATES or locked.task_state is not None:
        state = f"task_state {locked.task_state}" if locked.task_state else f"vm_state {locked.vm_state}"
        raise lifecycle.StateConflict(f"Cannot '{verb}' instance {locked.uuid} while it is in {state}")
    if locked.host_id is None:
        raise lifecycle.StateConflict(f"Cannot '{verb}' instance {locked.uuid}: it is on no host")
    if locked.networks == "auto":
        raise NetworkRequestError("This server's network is QEMU user-mode networking; it takes no ports.", 409)
    return locked


def interface_attach(
    *, ctx: RequestContext, instance: Instance, network_id: str = "", port_id: str = "", fixed_ip: str = ""
) -> Port:
    """Give the server one more port (a new one on ``network_id``, or the caller's ``port_id``) and ask its
    host to plug the NIC in; the port turns ACTIVE when the host's data plane has it on its bridge."""
    with transaction.atomic():
        locked = _interface_instance(ctx, instance, "attach_interface")
        if port_id:
            port = _port_take(ctx=ctx, instance=locked, port_id=port_id)
        else:
            network_id = network_id or str(auto_network(ctx=ctx).pk)
            port = _port_make(ctx=ctx, instance=locked, network_id=network_id, fixed_ip=fixed_ip)
        if locked.networks != "ports":
            Instance.objects.filter(pk=locked.pk).update(networks="ports")
            locked.networks = "ports"
        ports_follow(locked)
        addresses_refresh(locked)
        lifecycle.action_record(instance=locked, action="attach_interface", ctx=ctx)
        request = rpc.InterfaceRequest(
            instance_uuid=str(locked.uuid),
            domain_name=locked.domain_name,
            nic=port_nic(Port.objects.select_related("network").prefetch_related("fixed_ips").get(pk=port.pk)),
            request_id=ctx.request_id,
        )
        host = locked.host.name
        transaction.on_commit(lambda: rpc.attach_interface(host, request))
    return port


def interface_detach(*, ctx: RequestContext, instance: Instance, port_id: str) -> None:
    """Take a port out of the server: one made for it is deleted, the caller's own stays, unbound."""
    with transaction.atomic():
        locked = _interface_instance(ctx, instance, "detach_interface")
        port = instance_ports(locked).filter(pk=port_id).first() if is_uuid(port_id) else None
        if port is None:
            raise NetworkRequestError(f"Port {str(port_id)[:64]} is not attached", 404)
        request = rpc.InterfaceRequest(
            instance_uuid=str(locked.uuid),
            domain_name=locked.domain_name,
            nic=port_nic(port),
            request_id=ctx.request_id,
        )
        hosts = {port.host_id} | moving_hosts(locked)
        if port.auto_delete:
            ports_service.port_delete(port=port)
        else:
            Port.objects.filter(pk=port.pk).update(
                device_id="", device_owner="", host=None, vif_type="unbound", status=Port.Status.DOWN
            )
        network_sync.network_changed(port.network_id)
        network_sync.hosts_changed(hosts)
        addresses_refresh(locked)
        lifecycle.action_record(instance=locked, action="detach_interface", ctx=ctx)
        host = locked.host.name
        transaction.on_commit(lambda: rpc.detach_interface(host, request))


def port_nic(port: Port) -> rpc.NicSpec:
    return rpc.NicSpec(
        mac=port.mac_address,
        network="port",
        ip=next((a.ip_address for a in port.fixed_ips.all()), None),
        port_id=str(port.pk),
        device=port.device_name,
        mtu=port.network.mtu,
    )


# --- security groups -----------------------------------------------------------------------------------


class SecurityGroupRequestError(Exception):
    """A server's security group request the compute API refuses (``status``: 400 or 404)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def security_groups_named(ctx: RequestContext, names) -> tuple[SecurityGroup, ...]:
    """The caller's project's groups by name (or id), as ``security_groups`` on a server create names them;
    an unknown one is 400, as the compute API answers."""
    groups = []
    for name in dict.fromkeys(names):
        group = group_selectors.group_named(ctx, name)
        if group is None and name == group_services.DEFAULT_NAME:
            group = group_services.default_group(ctx.project)
        if group is None:
            raise SecurityGroupRequestError(f"Security group {str(name)[:64]} not found.")
        groups.append(group)
    return tuple(groups)


def server_security_group_add(*, ctx: RequestContext, instance: Instance, name) -> None:
    """``addSecurityGroup``: every port of the server joins the group (404 unknown group; 400 for a server
    without ports, a port without port security, or a group it is in already)."""
    group = _group_for_action(ctx, name)
    ports = list(instance_ports(instance))
    if not ports:
        raise SecurityGroupRequestError(f"Instance {instance.uuid} has no network ports to apply security group to.")
    with transaction.atomic():
        for port in ports:
            if not port.port_security_enabled:
                raise SecurityGroupRequestError(
                    f"Port {port.pk} does not have port security enabled: security group {name} cannot be applied."
                )
            current = list(port.security_groups.all())
            if group in current:
                raise SecurityGroupRequestError(
                    f"Security group {name} is already associated with the instance {instance.uuid}"
                )
            ports_service.port_update(
                port=port,
                user_is_admin=ctx.is_admin,
                project=ctx.project,
                changes={"security_groups": [*current, group]},
            )


def server_security_group_remove(*, ctx: RequestContext, instance: Instance, name) -> None:
    """``removeSecurityGroup``: every port of the server leaves the group (404 unknown group; 400 when the
    server is not in it)."""
    group = _group_for_action(ctx, name)
    ports = [p for p in instance_ports(instance) if group in p.security_groups.all()]
    if not ports:
        raise SecurityGroupRequestError(f"Security group {name} not associated with the instance {instance.uuid}")
    with transaction.atomic():
        for port in ports:
            remaining = [g for g in port.security_groups.all() if g.pk != group.pk]
            ports_service.port_update(
                port=port, user_is_admin=ctx.is_admin, project=ctx.project, changes={"security_groups": remaining}
            )


def _group_for_action(ctx: RequestContext, name) -> SecurityGroup:
    if not isinstance(name, str) or not name:
        raise SecurityGroupRequestError("Security group name must be a non-empty string.")
    group = group_selectors.group_named(ctx, name)
    if group is None and name == group_services.DEFAULT_NAME:
        group = group_services.default_group(ctx.project)
    if group is None:
        raise SecurityGroupRequestError(f"Security group {name[:64]} not found for project {ctx.project.pk}.", 404)
    return group
