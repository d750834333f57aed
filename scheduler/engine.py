"""One scheduling decision: filter the hosts, weigh the survivors, rank them, explain the outcome.

The cost is linear in hosts plus one partial sort of the survivors. Each filter runs over the whole
remaining list at once as a single comprehension (so hosts that fail early are never looked at again
and no per-host objects are made), filters and weighers that do not apply to a request are not run at
all, and each weigher produces one list of raw scores that the engine scales once.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from scheduler.explain import REQUESTED_HOST_REASON, REQUESTED_HOST_STEP, Explanation, FilterStep
from scheduler.filters import FILTERS, BaseHostFilter
from scheduler.types import FilterContext, HostState, NoValidHost, RequestSpec, SchedulerConfig
from scheduler.weighers import WEIGHERS, BaseHostWeigher

IGNORE_HOSTS_STEP = "ignore_hosts"
IGNORE_HOSTS_REASON = "excluded by the request"


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome of ``select_hosts``.

    ``hosts`` holds the hosts that passed the filters, best first (only the best ``limit`` when the
    caller gave one); ``weights`` holds their combined normalised weights in the same order (all zero
    when no weigher could tell them apart). Hosts with equal weight keep the order they were given in.
    """

    hosts: list[HostState]
    weights: list[float]
    explanation: Explanation

    def best(self) -> HostState:
        """The chosen host, or ``NoValidHost`` carrying the explanation."""
        if not self.hosts:
            raise NoValidHost(self.explanation)
        return self.hosts[0]

    def alternates(self, count: int) -> list[HostState]:
        """Up to ``count`` next-best hosts, for rescheduling a failed build without a new decision."""
        return self.hosts[1 : 1 + count]


@dataclass(frozen=True, slots=True)
class BatchSelection:
    """The outcome of ``select_hosts_for_batch``: one ``Selection`` per instance placed, in order.

    ``failed`` is None when every instance found a host; otherwise it is the ``Selection`` (with no
    hosts) of the first instance that found none, and ``selections`` holds those placed before it.
    """

    selections: list[Selection]
    failed: Selection | None = None

    @property
    def chosen(self) -> list[HostState]:
        return [selection.hosts[0] for selection in self.selections]


def check_config(config: SchedulerConfig) -> None:
    """Raise ``ValueError`` naming any filter or weigher the registries do not know.

    ``select_hosts`` does the same check, but calling this at start-up fails fast on a typo.
    """
    _build_filters(config)
    _build_weighers(config)


def _build_filters(config: SchedulerConfig) -> list[BaseHostFilter]:
    unknown = [name for name in config.enabled_filters if name not in FILTERS]
    if unknown:
        raise ValueError(f"unknown scheduler filters: {', '.join(unknown)}; known: {', '.join(sorted(FILTERS))}")
    return [FILTERS[name]() for name in config.enabled_filters]


def _build_weighers(config: SchedulerConfig) -> list[tuple[BaseHostWeigher, float]]:
    unknown = [name for name in config.weighers if name not in WEIGHERS]
    if unknown:
        raise ValueError(f"unknown scheduler weighers: {', '.join(unknown)}; known: {', '.join(sorted(WEIGHERS))}")
    return [(WEIGHERS[name](), float(multiplier)) for name, multiplier in config.weighers.items() if multiplier]


def _count_reasons(
    host_filter: BaseHostFilter,
    before: list[HostState],
    kept: list[HostState],
    spec: RequestSpec,
    ctx: FilterContext,
) -> tuple[tuple[str, int], ...]:
    removed = len(before) - len(kept)
    if not host_filter.detailed_reasons:
        return ((host_filter.reason, removed),)
    # ``kept`` is an ordered subsequence of ``before``, so one walk finds the removed hosts.
    counts: dict[str, int] = {}
    survivors = iter(kept)
    next_survivor = next(survivors, None)
    for host in before:
        if host is next_survivor:
            next_survivor = next(survivors, None)
            continue
        reason = host_filter.rejection_reason(host, spec, ctx)
        counts[reason] = counts.get(reason, 0) + 1
    return tuple(sorted(counts.items(), key=lambda item: -item[1]))


def _combine(columns: list[list[float]], coefficients: list[float]) -> list[float]:
    """``sum(column[i] * coefficient)`` for every host i, in as few passes over the hosts as possible."""
    while len(columns) > 4:
        # Fold the last two columns into one until four are left (more than four weighers is rare).
        b, a = columns.pop(), columns.pop()
        cb, ca = coefficients.pop(), coefficients.pop()
        columns.append([x * ca + y * cb for x, y in zip(a, b, strict=True)])
        coefficients.append(1.0)
    if len(columns) == 1:
        (a,), (ca,) = columns, coefficients
        return [x * ca for x in a]
    if len(columns) == 2:
        (a, b), (ca, cb) = columns, coefficients
        return [x * ca + y * cb for x, y in zip(a, b, strict=True)]
    if len(columns) == 3:
        (a, b, c), (ca, cb, cc) = columns, coefficients
        return [x * ca + y * cb + z * cc for x, y, z in zip(a, b, c, strict=True)]
    (a, b, c, d), (ca, cb, cc, cd) = columns, coefficients
    return [w * ca + x * cb + y * cc + z * cd for w, x, y, z in zip(a, b, c, d, strict=True)]


def _weigh(
    hosts: list[HostState], spec: RequestSpec, weighers: list[tuple[BaseHostWeigher, float]]
) -> tuple[list[float], float] | None:
    """Combined weights: each weigher's raw scores scaled to 0..1, times its multiplier, summed.

    Returned as ``(totals, offset)``: ``totals[i] + offset`` is host i's weight. Scaling a weigher's
    score ``v`` is ``(v - low) * scale``; the ``- low * scale`` part is the same for every host, so it
    is summed once into ``offset`` instead of being subtracted host by host, and all weighers are
    combined in one pass over the hosts. ``None`` means no weigher separates the hosts.
    """
    columns: list[list[float]] = []
    coefficients: list[float] = []
    offset = 0.0
    for weigher, multiplier in weighers:
        if not weigher.applies(spec):
            continue
        if weigher.attribute is not None:
            raw = list(map(attrgetter(weigher.attribute), hosts))
        else:
            raw = weigher.weigh_all(hosts, spec)
        low = min(raw)
        high = max(raw)
        if high == low:
            continue  # every host scores the same: 0 for all, and no division by zero
        scale = multiplier / (high - low)
        if weigher.negate:
            # The score is -raw, whose low is -high: (-raw + high) * scale.
            coefficients.append(-scale)
            offset += high * scale
        else:
            coefficients.append(scale)
            offset -= low * scale
        columns.append(raw)
    if not columns:
        return None
    return _combine(columns, coefficients), offset


class _Pipeline:
    """Filters and weighers made once for a config, so a batch does not rebuild them per instance."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.filters = _build_filters(config)
        self.forced_host_filters = [host_filter for host_filter in self.filters if host_filter.runs_for_forced_host]
        self.weighers = _build_weighers(config)

    def run(
        self,
        hosts: Sequence[HostState],
        spec: RequestSpec,
        *,
        now: float,
        rng: random.Random | None,
        limit: int | None,
    ) -> Selection:
        config = self.config
        ctx = FilterContext(now, config)
        candidates = list(hosts)
        total_hosts = len(candidates)
        steps: list[FilterStep] = []

        if spec.requested_host is not None and candidates:
            wanted = spec.requested_host
            kept = [host for host in candidates if host.host == wanted]
            removed = len(candidates) - len(kept)
            reasons = ((REQUESTED_HOST_REASON, removed),) if removed else ()
            steps.append(FilterStep(REQUESTED_HOST_STEP, len(candidates), removed, reasons))
            candidates = kept

        if spec.ignore_hosts and candidates:
            ignored = spec.ignore_hosts
            kept = [host for host in candidates if host.host not in ignored]
            removed = len(candidates) - len(kept)
            reasons = ((spec.ignore_reason or IGNORE_HOSTS_REASON, removed),) if removed else ()
            steps.append(FilterStep(IGNORE_HOSTS_STEP, len(candidates), removed, reasons))
            candidates = kept

        for host_filter in self.forced_host_filters if spec.force_host else self.filters:
            if not candidates:
                break
            if not host_filter.applies(spec, ctx):
                steps.append(FilterStep(host_filter.name, len(candidates), 0))
                continue
            kept = host_filter.filter_all(candidates, spec, ctx)
            removed = len(candidates) - len(kept)
            reasons = _count_reasons(host_filter, candidates, kept, spec, ctx) if removed else ()
            steps.append(FilterStep(host_filter.name, len(candidates), removed, reasons))
            candidates = kept

        subset = min(config.host_subset_size, len(candidates))
        if limit is not None:
            limit = max(limit, subset, 1)
        weighed = _weigh(candidates, spec, self.weighers) if len(candidates) > 1 else None
        if weighed is None:
            ranked = candidates if limit is None else candidates[:limit]
            weights = [0.0] * len(ranked)
        else:
            totals, offset = weighed
            indices = range(len(candidates))
            if limit is None or limit >= len(candidates):
                # A stable sort, reversed, keeps hosts of equal weight in their given order.
                order = sorted(indices, key=totals.__getitem__, reverse=True)
            else:
                # Same order as the sort above, cut to the first ``limit``, in O(n log limit).
                order = heapq.nlargest(limit, indices, key=totals.__getitem__)
            ranked = [candidates[index] for index in order]
            weights = [totals[index] + offset for index in order]

        if subset > 1:
            pick = (rng or random).randrange(subset)
            if pick:
                ranked.insert(0, ranked.pop(pick))
                weights.insert(0, weights.pop(pick))

        explanation = Explanation(
            total_hosts=total_hosts,
            steps=tuple(steps),
            remaining=len(candidates),
            requested_host=spec.requested_host,
            forced_host=spec.force_host,
        )
        return Selection(hosts=ranked, weights=weights, explanation=explanation)


def select_hosts(
    hosts: Sequence[HostState],
    spec: RequestSpec,
    *,
    now: float,
    config: SchedulerConfig,
    rng: random.Random | None = None,
    limit: int | None = None,
) -> Selection:
    """Rank every host that can take one instance of ``spec``, best first, and say why others could not.

    ``now`` is the decision's clock (unix time) against which heartbeats are judged. ``rng`` is used
    only when ``config.host_subset_size`` > 1, to pick the winner among the best few; pass a seeded
    ``random.Random`` for repeatable decisions. ``limit`` ranks only that many best hosts (the rest are
    counted in the explanation but not returned), which saves sorting thousands of hosts when the
    caller needs a winner and a few alternates. An empty ``Selection.hosts`` means no valid host;
    ``Selection.best()`` raises ``NoValidHost`` in that case.

    A request that names a host (``spec.requested_host``) is decided on that host alone, so it has no
    alternates; a forced one (``spec.force_host``) runs only the filters that set ``runs_for_forced_host``.
    """
    return _Pipeline(config).run(hosts, spec, now=now, rng=rng, limit=limit)


def select_hosts_for_batch(
    hosts: Sequence[HostState],
    specs: Sequence[RequestSpec],
    *,
    now: float,
    config: SchedulerConfig,
    rng: random.Random | None = None,
    limit: int | None = None,
) -> BatchSelection:
    """Place the instances of one multi-create request, one after another, each seeing the ones before.

    After each pick the chosen host's snapshot is replaced by a copy with the instance consumed on it,
    and the request's server group (if any) counts the new member there, so capacity, instance counts,
    hard and soft group policies and ``different_host`` hints all hold across the batch. Stops at the
    first instance no host can take: a batch is placed whole or not at all, as in Nova.
    """
    pipeline = _Pipeline(config)
    current = list(hosts)
    position = {host.host: index for index, host in enumerate(current)}
    selections: list[Selection] = []
    group = specs[0].group if specs else None
    for index, spec in enumerate(specs):
        if group is not None and spec.group is not None:
            spec = dataclasses.replace(spec, group=group)
        selection = pipeline.run(current, spec, now=now, rng=rng, limit=limit)
        if not selection.hosts:
            explanation = dataclasses.replace(selection.explanation, instance_index=index, batch_size=len(specs))
            return BatchSelection(selections, Selection(hosts=[], weights=[], explanation=explanation))
        chosen = selection.hosts[0]
        current[position[chosen.host]] = chosen.consume(spec)
        if group is not None:
            group = group.with_member_on(chosen.host)
        selections.append(selection)
    return BatchSelection(selections)


def recheck_placements(
    hosts: Sequence[HostState],
    specs: Sequence[RequestSpec],
    chosen: Sequence[str],
    *,
    now: float,
    config: SchedulerConfig,
) -> Selection | None:
    """Check a batch's decision again on fresh snapshots of the chosen hosts (taken under their locks).

    Each instance in turn must still pass every filter on its chosen host, with the instances before it
    consumed. Returns None when all do, else the (empty) ``Selection`` of the first that does not, whose
    explanation says why. Weighers do not matter here: the hosts are already chosen.
    """
    pipeline = _Pipeline(dataclasses.replace(config, weighers={}, host_subset_size=1))
    current = {host.host: host for host in hosts}
    group = specs[0].group if specs else None
    for index, (spec, name) in enumerate(zip(specs, chosen, strict=True)):
        if group is not None and spec.group is not None:
            spec = dataclasses.replace(spec, group=group)
        state = current.get(name)
        selection = pipeline.run([state] if state is not None else [], spec, now=now, rng=None, limit=1)
        if not selection.hosts:
            explanation = dataclasses.replace(selection.explanation, instance_index=index, batch_size=len(specs))
            return Selection(hosts=[], weights=[], explanation=explanation)
        current[name] = state.consume(spec)
        if group is not None:
            group = group.with_member_on(name)
    return None
