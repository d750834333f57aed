"""Weighing hosts by their free RAM."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.types import HostState, RequestSpec
from scheduler.weighers.base import BaseHostWeigher


class RAMWeigher(BaseHostWeigher):
    """Scores a host by its free RAM under the allocation ratio.

    With a positive multiplier instances spread to the emptiest hosts; with a negative one they stack
    onto the fullest hosts that still fit, leaving whole hosts free for large flavors.
    """

    name = "RAMWeigher"
    attribute = "free_ram_mb"

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_ram_mb

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        return [host.free_ram_mb for host in hosts]
