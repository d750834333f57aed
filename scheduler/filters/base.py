"""The contract every host filter follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from scheduler.types import FilterContext, HostState, RequestSpec


class BaseHostFilter:
    """Decides, host by host, whether a host can take one instance of a request.

    Subclasses set ``name`` (the key in the registry and in explanations) and ``reason`` (why a host
    was removed, a few words: "down", "not enough RAM"), and implement ``host_passes``.

    The engine calls ``filter_all`` once per decision with every remaining host. The default loops
    over ``host_passes``; a filter on the hot path overrides it with an inlined comprehension that
    must give exactly the same answer, keeping the hosts' order.

    A filter that only matters for some requests (a zone, a hint, a server group) says so in
    ``applies``; for every other request the engine does not call it at all, so it costs nothing.

    A filter that rejects for more than one reason sets ``detailed_reasons`` and overrides
    ``rejection_reason``; the engine then asks it only about the hosts it removed.

    A forced host (``RequestSpec.force_host``) bypasses every filter but those that set
    ``runs_for_forced_host``: what a claim must never break (a host taking builds, capacity under the
    allocation ratios, a hard server-group policy).
    """

    name: ClassVar[str]
    reason: ClassVar[str]
    detailed_reasons: ClassVar[bool] = False
    runs_for_forced_host: ClassVar[bool] = False

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        """False when every host would pass for this request, so the engine can skip the filter."""
        return True

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        raise NotImplementedError

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        host_passes = self.host_passes
        return [host for host in hosts if host_passes(host, spec, ctx)]

    def rejection_reason(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> str:
        return self.reason
