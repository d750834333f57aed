"""What a host is: its hypervisor, architecture and size, against the flavor's ``capabilities:`` specs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scheduler import extra_specs_ops
from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec

SCOPE = "capabilities"

# What a ``capabilities:<name>`` extra spec can ask about. ``cpu_info:arch`` is Nova's spelling of the
# architecture and is accepted as well.
CAPABILITIES: dict[str, Callable[[HostState], object]] = {
    "host": lambda h: h.host,
    "hypervisor_type": lambda h: h.hypervisor_type,
    "hypervisor_version": lambda h: h.hypervisor_version,
    "cpu_arch": lambda h: h.cpu_arch,
    "cpu_info:arch": lambda h: h.cpu_arch,
    "availability_zone": lambda h: h.availability_zone,
    "vcpus_total": lambda h: h.vcpus_total,
    "vcpus_used": lambda h: h.vcpus_used,
    "memory_mb": lambda h: h.memory_mb_total,
    "memory_mb_total": lambda h: h.memory_mb_total,
    "free_ram_mb": lambda h: h.free_ram_mb,
    "disk_gb": lambda h: h.disk_gb_total,
    "free_disk_gb": lambda h: h.free_disk_gb,
    "num_instances": lambda h: h.num_instances,
}


def capability_requirements(spec: RequestSpec) -> list[tuple[str, str]]:
    """The flavor's ``capabilities:<name>`` extra specs as (name, requirement) pairs."""
    prefix = SCOPE + ":"
    return [
        (key[len(prefix) :], str(value)) for key, value in spec.flavor_extra_specs.items() if key.startswith(prefix)
    ]


class ComputeCapabilitiesFilter(BaseHostFilter):
    """Passes hosts whose capabilities satisfy every ``capabilities:<name>`` extra spec of the flavor.

    Requirements use the extra-spec operators (``capabilities:hypervisor_version: >= 8000000``,
    ``capabilities:cpu_arch: <or> x86_64 <or> aarch64``). A capability the scheduler does not know
    is never satisfied. Unscoped extra specs are left to ``AggregateInstanceExtraSpecsFilter``.
    """

    name = "ComputeCapabilitiesFilter"
    reason = "lacks a capability the flavor requires"

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return any(key.startswith(SCOPE + ":") for key in spec.flavor_extra_specs)

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return self._passes(host, capability_requirements(spec))

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        wanted = capability_requirements(spec)
        return [host for host in hosts if self._passes(host, wanted)]

    @staticmethod
    def _passes(host: HostState, wanted: list[tuple[str, str]]) -> bool:
        for name, requirement in wanted:
            read = CAPABILITIES.get(name)
            if read is None or not extra_specs_ops.matches(read(host), requirement):
                return False
        return True
