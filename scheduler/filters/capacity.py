"""Filters on free capacity: RAM, vCPUs and local disk, under each host's allocation ratios.

Each reads the ``free_*`` values ``HostState`` derives at construction, so an exact fit passes and one
unit more fails.
"""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec


class RamFilter(BaseHostFilter):
    """Passes hosts with at least the requested RAM free (``total * ratio - used - reserved``)."""

    name = "RamFilter"
    reason = "not enough RAM"
    runs_for_forced_host = True

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return host.free_ram_mb >= spec.memory_mb

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        wanted = spec.memory_mb
        return [host for host in hosts if host.free_ram_mb >= wanted]


class CoreFilter(BaseHostFilter):
    """Passes hosts with at least the requested vCPUs free (``total * ratio - used``).

    Overcommit shares physical CPUs between instances, never inside one: an instance may not have more
    vCPUs than the host has, whatever the ratio.
    """

    name = "CoreFilter"
    reason = "not enough vCPUs"
    runs_for_forced_host = True

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return host.free_vcpus >= spec.vcpus and host.vcpus_total >= spec.vcpus

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        wanted = spec.vcpus
        return [host for host in hosts if host.free_vcpus >= wanted and host.vcpus_total >= wanted]


class DiskFilter(BaseHostFilter):
    """Passes hosts with room for the instance's root, ephemeral and swap disks (``total * ratio - used``)."""

    name = "DiskFilter"
    reason = "not enough disk"
    runs_for_forced_host = True

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return host.free_disk_gb >= spec.disk_gb

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        wanted = spec.disk_gb
        return [host for host in hosts if host.free_disk_gb >= wanted]


class NumInstancesFilter(BaseHostFilter):
    """Passes hosts holding fewer instances than allowed.

    The limit is the smallest ``max_instances_per_host`` of the host's aggregates (``HostState.max_instances``),
    else ``SchedulerConfig.max_instances_per_host``.
    """

    name = "NumInstancesFilter"
    reason = "too many instances"

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        limit = host.max_instances if host.max_instances is not None else ctx.config.max_instances_per_host
        return host.num_instances < limit

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        default = ctx.config.max_instances_per_host
        return [
            host
            for host in hosts
            if host.num_instances < (default if host.max_instances is None else host.max_instances)
        ]
