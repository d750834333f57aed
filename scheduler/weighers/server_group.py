"""Soft server-group policies: prefer, but do not require, hosts with (or without) the group's members."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.types import SOFT_AFFINITY, SOFT_ANTI_AFFINITY, HostState, RequestSpec
from scheduler.weighers.base import BaseHostWeigher


class ServerGroupSoftAffinityWeigher(BaseHostWeigher):
    """For a ``soft-affinity`` group, scores a host by the members it already holds."""

    name = "ServerGroupSoftAffinityWeigher"

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group is not None and spec.group.policy == SOFT_AFFINITY and bool(spec.group.members)

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return spec.group.members.get(host.host, 0) if spec.group is not None else 0

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        members = spec.group.members if spec.group is not None else {}
        return [members.get(host.host, 0) for host in hosts]


class ServerGroupSoftAntiAffinityWeigher(BaseHostWeigher):
    """For a ``soft-anti-affinity`` group, scores a host lower the more members it already holds."""

    name = "ServerGroupSoftAntiAffinityWeigher"

    def applies(self, spec: RequestSpec) -> bool:
        return spec.group is not None and spec.group.policy == SOFT_ANTI_AFFINITY and bool(spec.group.members)

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return -spec.group.members.get(host.host, 0) if spec.group is not None else 0

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        members = spec.group.members if spec.group is not None else {}
        return [-members.get(host.host, 0) for host in hosts]
