"""Availability zones, as the compute API derives them: a host is in the zone its aggregates name in
their ``availability_zone`` metadata, else in the default zone. A zone exists while a host is in it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings

from portal.models import AVAILABILITY_ZONE_KEY, Aggregate, ComputeHost


def default_zone() -> str:
    return settings.CLOUD["DEFAULT_AVAILABILITY_ZONE"]


def host_zone_names(host_ids=None) -> dict[int, str]:
    """Each host's zone by host id (one query for the aggregates that name a zone)."""
    named: dict[int, set[str]] = defaultdict(set)
    aggregates = Aggregate.objects.filter(metadata__has_key=AVAILABILITY_ZONE_KEY).prefetch_related("hosts")
    for aggregate in aggregates:
        for host in aggregate.hosts.all():
            named[host.pk].add(aggregate.metadata[AVAILABILITY_ZONE_KEY])
    hosts = ComputeHost.objects.all() if host_ids is None else ComputeHost.objects.filter(pk__in=host_ids)
    # A host is in one zone at most (the aggregate rules keep it so); a sorted join shows any anomaly.
    return {
        pk: ",".join(sorted(named[pk])) if named[pk] else default_zone() for pk in hosts.values_list("pk", flat=True)
    }


def host_zone(host: ComputeHost) -> str:
    return host_zone_names([host.pk]).get(host.pk, default_zone())


@dataclass
class Zone:
    name: str
    available: bool  # some host in it takes new servers (its service is enabled)
    hosts: list[ComputeHost] = field(default_factory=list)  # the enabled hosts, by name


def zones() -> list[Zone]:
    """Zones with an enabled host first (sorted), then zones whose hosts are all disabled (sorted)."""
    zone_of = host_zone_names()
    enabled: dict[str, list[ComputeHost]] = defaultdict(list)
    disabled: set[str] = set()
    for host in ComputeHost.objects.order_by("name"):
        zone = zone_of[host.pk]
        if host.enabled:
            enabled[zone].append(host)
        else:
            disabled.add(zone)
    return [Zone(name, True, enabled[name]) for name in sorted(enabled)] + [
        Zone(name, False) for name in sorted(disabled - enabled.keys())
    ]


def available_zone_names() -> set[str]:
    """The zones a server may be asked for: those with at least one enabled host."""
    return {zone.name for zone in zones() if zone.available}
