"""Filters on what host aggregates say: extra specs the flavor must find, and projects a host is kept for."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler import extra_specs_ops
from scheduler.filters.base import BaseHostFilter
from scheduler.types import FilterContext, HostState, RequestSpec

EXTRA_SPECS_SCOPE = "aggregate_instance_extra_specs"


def aggregate_requirements(spec: RequestSpec) -> list[tuple[str, str]]:
    """The flavor's extra specs this filter reads: unscoped keys, and keys in its own scope (unprefixed).

    Any other scope (``hw:``, ``capabilities:``, ``quota:`` ...) belongs to someone else.
    """
    wanted = []
    for key, value in spec.flavor_extra_specs.items():
        scope, sep, rest = key.partition(":")
        if not sep:
            wanted.append((key, str(value)))
        elif scope == EXTRA_SPECS_SCOPE and rest:
            wanted.append((rest, str(value)))
    return wanted


class AggregateInstanceExtraSpecsFilter(BaseHostFilter):
    """Passes hosts whose aggregates' metadata satisfies each of the flavor's extra specs it reads.

    For every such spec some aggregate of the host must carry the key with a value that matches (the
    extra-spec operators apply: ``ssd: <or> true <or> yes``). A host in no aggregate with the key fails.
    """

    name = "AggregateInstanceExtraSpecsFilter"
    reason = "aggregate metadata does not match the flavor"

    def applies(self, spec: RequestSpec, ctx: FilterContext) -> bool:
        return bool(aggregate_requirements(spec))

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return self._passes(host, aggregate_requirements(spec))

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        wanted = aggregate_requirements(spec)
        return [host for host in hosts if self._passes(host, wanted)]

    @staticmethod
    def _passes(host: HostState, wanted: list[tuple[str, str]]) -> bool:
        metadata = host.aggregate_metadata
        for key, requirement in wanted:
            values = metadata.get(key)
            if not values or not any(extra_specs_ops.matches(value, requirement) for value in values):
                return False
        return True


class AggregateMultiTenancyIsolation(BaseHostFilter):
    """Keeps hosts reserved for some projects to those projects.

    A host whose aggregates carry ``filter_tenant_id`` (or any ``filter_tenant_id*`` key, each value a
    comma-separated list of project ids) takes only instances of those projects; other hosts take any.
    It runs for every request; ``HostState.tenant_ids`` is read from the metadata once per snapshot.
    """

    name = "AggregateMultiTenancyIsolation"
    reason = "reserved for other projects"

    def host_passes(self, host: HostState, spec: RequestSpec, ctx: FilterContext) -> bool:
        return not host.tenant_ids or spec.project_id in host.tenant_ids

    def filter_all(self, hosts: Sequence[HostState], spec: RequestSpec, ctx: FilterContext) -> list[HostState]:
        project = spec.project_id
        return [host for host in hosts if not host.tenant_ids or project in host.tenant_ids]
