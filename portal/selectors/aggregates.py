"""Aggregate reads (admins only reach them): with their hosts' names in one extra query."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from portal.models import Aggregate, ComputeHost


def aggregates_all() -> QuerySet:
    return Aggregate.objects.prefetch_related(Prefetch("hosts", queryset=ComputeHost.objects.order_by("name")))


def aggregate_get(aggregate_id: int) -> Aggregate | None:
    return aggregates_all().filter(pk=aggregate_id).first()


def aggregate_host_names(aggregate: Aggregate) -> list[str]:
    return [host.name for host in aggregate.hosts.all()]
