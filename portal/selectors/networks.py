"""What of the network controller a caller may see.

- networks: the caller's project's, every shared one and every external one (``router:external``, as
  Neutron shows those to everyone); admins see all;
- subnets: those of the caller's project, of networks the project owns and of shared networks;
- ports: the caller's project's only.

A row outside these is, for the caller, not there (the API answers 404).
"""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from portal.ids import as_uuid
from portal.models import Network, Port, Subnet


def networks_visible(ctx) -> QuerySet[Network]:
    rows = Network.objects.select_related("project").prefetch_related("subnets")
    if ctx.is_admin:
        return rows
    return rows.filter(Q(project=ctx.project) | Q(shared=True) | Q(external=True))


def subnets_visible(ctx) -> QuerySet[Subnet]:
    rows = Subnet.objects.select_related("network")
    if ctx.is_admin:
        return rows
    return rows.filter(Q(project=ctx.project) | Q(network__project=ctx.project) | Q(network__shared=True))


def ports_visible(ctx) -> QuerySet[Port]:
    rows = Port.objects.select_related("network", "host").prefetch_related("fixed_ips", "security_groups")
    if ctx.is_admin:
        return rows
    return rows.filter(project=ctx.project)


def network_get(ctx, network_id) -> Network | None:
    pk = as_uuid(network_id)
    return None if pk is None else networks_visible(ctx).filter(pk=pk).first()


def subnet_get(ctx, subnet_id) -> Subnet | None:
    pk = as_uuid(subnet_id)
    return None if pk is None else subnets_visible(ctx).filter(pk=pk).first()


def port_get(ctx, port_id) -> Port | None:
    pk = as_uuid(port_id)
    return None if pk is None else ports_visible(ctx).filter(pk=pk).first()


def networks_usable(ctx) -> QuerySet[Network]:
    """The networks the caller's project may put a server on: its own and the shared ones that are not
    external, oldest first (admins get the same list; another project's network they name by id)."""
    return (
        Network.objects.select_related("project")
        .filter(Q(project=ctx.project) | Q(shared=True, external=False))
        .order_by("created_at", "id")
    )


def networks_of_project(ctx) -> QuerySet[Network]:
    """The networks a project's page lists: its own, and every shared one, with their subnets and how many
    ports are on each (the cloud's DHCP ports not counted; on another project's network only the
    project's own ports)."""
    not_dhcp = ~Q(ports__device_owner=Port.OWNER_DHCP)
    return (
        Network.objects.select_related("project")
        .prefetch_related("subnets")
        .filter(Q(project=ctx.project) | Q(shared=True))
        .annotate(
            ports_total=Count("ports", filter=not_dhcp, distinct=True),
            ports_of_project=Count("ports", filter=not_dhcp & Q(ports__project=ctx.project), distinct=True),
        )
        .order_by("created_at", "id")
    )
