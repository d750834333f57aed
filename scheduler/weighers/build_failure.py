"""Weighing hosts by the builds that failed on them lately."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.types import HostState, RequestSpec
from scheduler.weighers.base import BaseHostWeigher


class BuildFailureWeigher(BaseHostWeigher):
    """Scores a host by minus the builds that failed on it since its last successful one.

    A host whose builds keep failing (a broken disk, a misconfigured hypervisor) still passes every
    filter; with a large multiplier this keeps new builds away from it while any other host fits. The
    count is reset by the host's next successful build.
    """

    name = "BuildFailureWeigher"
    attribute = "failed_builds"
    negate = True

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return -host.failed_builds

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        return [-host.failed_builds for host in hosts]
