"""Hard server-group policies: members together on one host, or spread over hosts."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.filters.base import BaseHostFilter
from scheduler.types import AFFINITY, ANTI_AFFINITY, FilterContext, HostState, RequestSpec


class ServerGroupAntiAffinityFilter(BaseHostFilter):
    """For an ``anti-affinity`` group, passes hosts holding fewer than ``max_server_per_host`` members."""

    name = "ServerGroupAntiAffinityFilter"
    reason = "holds a member of the anti-affinity group"
    runs_for_forced_host = True

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return spec.group is not None and spec.group.policy == ANTI_AFFINITY

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        group = spec.group
        return group is None or group.members.get(host.host, 0) < group.max_server_per_host

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        assert spec.group is not None
        members = spec.group.members
        limit = spec.group.max_server_per_host
        return [host for host in hosts if members.get(host.host, 0) < limit]


class ServerGroupAffinityFilter(BaseHostFilter):
    """For an ``affinity`` group that already has members, passes only the host(s) holding them.

    The group's first member may go anywhere.
    """

    name = "ServerGroupAffinityFilter"
    reason = "not the affinity group's host"
    runs_for_forced_host = True

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return spec.group is not None and spec.group.policy == AFFINITY and bool(spec.group.members)

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        group = spec.group
        return group is None or not group.members or host.host in group.members

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        assert spec.group is not None
        members = spec.group.members
        return [host for host in hosts if host.host in members]
