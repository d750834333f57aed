"""What of the network controller a caller may see.

- networks: the caller's project's, every shared one and every external one (``router:external``, as
  Neutron shows those to everyone); admins see all;
- subnets: those of the caller's project, of networks the project owns and of shared networks;
- ports: the caller's project's only.

A row outside these is, for the caller, not there (the API answers 404).
"""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from portal.models import Network, Port, Subnet


def _uuid(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


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
    rows = Port.objects.select_related("network", "host").prefetch_related("fixed_ips")
    if ctx.is_admin:
        return rows
    return rows.filter(project=ctx.project)


def network_get(ctx, network_id) -> Network | None:
    pk = _uuid(network_id)
    return None if pk is None else networks_visible(ctx).filter(pk=pk).first()


def subnet_get(ctx, subnet_id) -> Subnet | None:
    pk = _uuid(subnet_id)
    return None if pk is None else subnets_visible(ctx).filter(pk=pk).first()


def port_get(ctx, port_id) -> Port | None:
    pk = _uuid(port_id)
    return None if pk is None else ports_visible(ctx).filter(pk=pk).first()
