"""What of a project's routers and floating IPs its portal pages list (what any caller may see of them, for the
API, is in ``routers.py``):

- routers: the project's own, each with its interface and gateway ports (one query for all of them);
- floating IPs: the project's own, with the port, network and instance each stands for;
- what a router may be plugged into (the project's subnets and the shared networks' ones, never an
  external network's: that one is the gateway), and where a floating IP may point (the fixed addresses
  of the project's instances).

A row outside these is, for the page, not there (404).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from portal.ids import as_uuid
from portal.models import FloatingIP, Instance, Network, Port, Router, Subnet

from .instances import instances_visible

ROUTER_OWNERS = (Port.OWNER_ROUTER_INTERFACE, Port.OWNER_ROUTER_GATEWAY)


def routers_of_project(project) -> QuerySet[Router]:
    return Router.objects.select_related("external_network").filter(project=project).order_by("created_at", "id")


def router_of_project(project, router_id) -> Router | None:
    pk = as_uuid(router_id)
    return None if pk is None else routers_of_project(project).filter(pk=pk).first()


def router_ports(routers: list[Router]) -> dict[str, list[Port]]:
    """Each router's interface and gateway ports (by router id, as ``device_id`` holds it), with their
    addresses and subnets, oldest first."""
    ports = (
        Port.objects.filter(device_id__in=[str(r.pk) for r in routers], device_owner__in=ROUTER_OWNERS)
        .select_related("network")
        .prefetch_related("fixed_ips__subnet")
        .order_by("created_at", "id")
    )
    by_router: dict[str, list[Port]] = defaultdict(list)
    for port in ports:
        by_router[port.device_id].append(port)
    return by_router


def external_networks() -> QuerySet[Network]:
    """The networks a router's gateway and floating IPs come from (every project sees them)."""
    return Network.objects.filter(external=True).order_by("name", "created_at", "id")


def interface_subnets(project) -> QuerySet[Subnet]:
    """The subnets a project's router may have an interface on: of the project's networks, of the shared
    ones, and its own on others' networks; never on an external network."""
    return (
        Subnet.objects.select_related("network")
        .filter(Q(project=project) | Q(network__project=project) | Q(network__shared=True))
        .filter(network__external=False)
        .order_by("network__name", "cidr", "id")
    )


def floating_ips_of_project(project) -> QuerySet[FloatingIP]:
    return (
        FloatingIP.objects.select_related("floating_network", "port__network", "router")
        .filter(project=project)
        .order_by("created_at", "id")
    )


def floating_ip_of_project(project, floating_ip_id) -> FloatingIP | None:
    pk = as_uuid(floating_ip_id)
    return None if pk is None else floating_ips_of_project(project).filter(pk=pk).first()


def instances_of_ports(ctx, ports) -> dict[str, Instance]:
    """The instances (the caller may see) that the ports are plugged into, by uuid as ``device_id`` holds it."""
    keys = {p.device_id for p in ports if p is not None and p.device_owner.startswith(Port.OWNER_COMPUTE)}
    keys = {k for k in keys if as_uuid(k) is not None}
    if not keys:
        return {}
    return {str(i.uuid): i for i in instances_visible(ctx, all_tenants=True).filter(uuid__in=keys)}


@dataclass(frozen=True)
class FixedAddress:
    """One fixed address of an instance's port: where a floating IP may point."""

    instance: Instance
    port: Port
    ip_address: str

    @property
    def key(self) -> str:
        return f"{self.port.pk}/{self.ip_address}"


def fixed_addresses(ctx, project, instance: Instance | None = None) -> list[FixedAddress]:
    """The IPv4 fixed addresses of the project's instances' ports (of one instance, when given) that no
    floating IP points at yet, by instance name and then in the order of the ports."""
    instances = instances_visible(ctx, all_tenants=True).filter(project=project)
    if instance is not None:
        instances = instances.filter(pk=instance.pk)
    by_uuid = {str(i.uuid): i for i in instances}
    if not by_uuid:
        return []
    ports = (
        Port.objects.filter(device_id__in=by_uuid, device_owner__startswith=Port.OWNER_COMPUTE)
        .select_related("network")
        .prefetch_related("fixed_ips")
        .order_by("created_at", "id")
    )
    taken = set(FloatingIP.objects.filter(port__device_id__in=by_uuid).values_list("port_id", "fixed_ip_address"))
    found = [
        FixedAddress(instance=by_uuid[port.device_id], port=port, ip_address=allocation.ip_address)
        for port in ports
        for allocation in port.fixed_ips.all()
        if "." in allocation.ip_address and (port.pk, allocation.ip_address) not in taken
    ]
    return sorted(found, key=lambda a: (a.instance.name, str(a.instance.uuid)))


def instance_floating_ips(instance: Instance) -> list[FloatingIP]:
    """The floating IPs that stand for one of the instance's ports."""
    return list(
        FloatingIP.objects.select_related("floating_network", "port__network")
        .filter(port__device_id=str(instance.uuid))
        .order_by("created_at", "id")
    )
