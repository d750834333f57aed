"""Filters on the compute service itself: is the host switched on and alive."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec


class ComputeFilter(BaseHostFilter):
    """Passes hosts that an operator has not disabled and that sent a heartbeat recently enough.

    A host is up while its last heartbeat is no older than ``service_down_time`` seconds before the
    decision's ``now``; a host that never reported is down. A heartbeat from the future (clock skew)
    counts as up.
    """

    name = "ComputeFilter"
    reason = "down"
    detailed_reasons = True
    # Nova refuses a disabled forced host too (placement's COMPUTE_STATUS_DISABLED trait), and a host
    # that is down would never build what is forced onto it.
    runs_for_forced_host = True

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return host.enabled and host.last_heartbeat is not None and host.last_heartbeat >= ctx.heartbeat_cutoff

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        cutoff = ctx.heartbeat_cutoff
        return [
            host for host in hosts if host.enabled and host.last_heartbeat is not None and host.last_heartbeat >= cutoff
        ]

    def rejection_reason(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> str:
        # The operator's decision is the more useful answer when a host is both disabled and down.
        return "disabled" if not host.enabled else "down"
