"""Weighing hosts by free vCPUs and free disk (free RAM has its own module, it came first)."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.types import HostState, RequestSpec
from scheduler.weighers.base import BaseHostWeigher


class CPUWeigher(BaseHostWeigher):
    """Scores a host by its free vCPUs under the allocation ratio; positive spreads, negative packs."""

    name = "CPUWeigher"
    attribute = "free_vcpus"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_vcpus

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        return [host.free_vcpus for host in hosts]


class DiskWeigher(BaseHostWeigher):
    """Scores a host by its free local disk under the allocation ratio; positive spreads, negative packs."""

    name = "DiskWeigher"
    attribute = "free_disk_gb"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_disk_gb

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        return [host.free_disk_gb for host in hosts]


class NumInstancesWeigher(BaseHostWeigher):
    """Scores a host by how many instances it holds: a positive multiplier packs, a negative one spreads."""

    name = "NumInstancesWeigher"
    attribute = "num_instances"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.num_instances

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        return [host.num_instances for host in hosts]
