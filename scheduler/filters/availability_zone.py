"""The zone a request asked for."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec


class AvailabilityZoneFilter(BaseHostFilter):
    """Passes hosts in the requested availability zone; a request that names no zone may go anywhere.

    A host's zone comes from the ``availability_zone`` metadata of its aggregates, or is the cloud's
    default zone (see ``scheduler.aggregates.availability_zone``).
    """

    name = "AvailabilityZoneFilter"
    reason = "in another availability zone"

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return bool(spec.availability_zone)

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return not spec.availability_zone or host.availability_zone == spec.availability_zone

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        zone = spec.availability_zone
        return [host for host in hosts if host.availability_zone == zone]
