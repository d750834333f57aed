"""The contract every host weigher follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from scheduler.types import HostState, RequestSpec


class BaseHostWeigher:
    """Gives each host that passed the filters a raw score; larger means better at multiplier +1.

    Raw scores can be in any unit: the engine scales each weigher's scores to 0..1 across the hosts
    of one decision, multiplies by the configured multiplier and sums. Weighers never normalise.

    ``weigh_all`` is what the engine calls; a weigher on the hot path overrides it with an inlined
    comprehension that gives the same values as ``weigh`` (or names its ``attribute``). A weigher that
    has nothing to say about some requests (the soft server-group weighers without a soft group) returns False from
    ``applies`` and is not called for them.
    """

    name: ClassVar[str]
    # A weigher whose raw score is one attribute of the host (negated when ``negate``) names it here, and
    # the engine reads it for all hosts at C speed instead of calling ``weigh_all``.
    attribute: ClassVar[str | None] = None
    negate: ClassVar[bool] = False

    def applies(self, spec: RequestSpec) -> bool:
        return True

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        raise NotImplementedError

    def weigh_all(self, hosts: Sequence[HostState], spec: RequestSpec) -> list[float]:
        weigh = self.weigh
        return [weigh(host, spec) for host in hosts]
