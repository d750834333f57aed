"""The ``same_host`` and ``different_host`` scheduler hints: next to, or away from, named instances."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec

SAME_HOST = "same_host"
DIFFERENT_HOST = "different_host"


class SameHostFilter(BaseHostFilter):
    """With a ``same_host`` hint (instance uuids), passes only hosts holding at least one of them."""

    name = "SameHostFilter"
    reason = "holds none of the same_host instances"

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return bool(spec.hint_values(SAME_HOST))

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        wanted = spec.hint_values(SAME_HOST)
        return not wanted or not host.instance_uuids.isdisjoint(wanted)

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        wanted = frozenset(spec.hint_values(SAME_HOST))
        return [host for host in hosts if not host.instance_uuids.isdisjoint(wanted)]


class DifferentHostFilter(BaseHostFilter):
    """With a ``different_host`` hint (instance uuids), passes only hosts holding none of them."""

    name = "DifferentHostFilter"
    reason = "holds a different_host instance"

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return bool(spec.hint_values(DIFFERENT_HOST))

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return host.instance_uuids.isdisjoint(spec.hint_values(DIFFERENT_HOST))

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        avoid = frozenset(spec.hint_values(DIFFERENT_HOST))
        return [host for host in hosts if host.instance_uuids.isdisjoint(avoid)]
