"""What a host's aggregates say about it: its zone, its over-commit, its limits.

The conductor reads aggregates from its database and calls these helpers while it builds ``HostState``
snapshots, so the rules live here, next to the filters that rely on them, and are tested without a
database. Metadata values are strings, as operators type them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType

EMPTY_METADATA: Mapping[str, frozenset[str]] = MappingProxyType({})

AVAILABILITY_ZONE_KEY = "availability_zone"
MAX_INSTANCES_KEY = "max_instances_per_host"
TENANT_KEY_PREFIX = "filter_tenant_id"
RATIO_KEYS = ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio")


def merge_metadata(metadata: Iterable[Mapping[str, object]]) -> Mapping[str, frozenset[str]]:
    """The metadata of several aggregates as one mapping from each key to the set of its values."""
    merged: dict[str, set[str]] = {}
    for one in metadata:
        for key, value in one.items():
            merged.setdefault(str(key), set()).add(str(value).strip())
    if not merged:
        return EMPTY_METADATA
    return {key: frozenset(values) for key, values in merged.items()}


def availability_zone(metadata: Mapping[str, frozenset[str]], default_zone: str) -> str:
    """The host's zone: its aggregates' ``availability_zone``, else the cloud's default zone.

    A host should be in one zone only; if its aggregates disagree, the names are joined in sorted order
    (as the availability-zone API shows them), a zone no request names, so the anomaly is visible and
    the host takes no zoned request until an operator fixes it.
    """
    zones = metadata.get(AVAILABILITY_ZONE_KEY)
    if not zones:
        return default_zone
    return ",".join(sorted(zones))


def _positive_numbers(values: Iterable[str]) -> list[float]:
    numbers = []
    for value in values:
        try:
            number = float(value)
        except ValueError:
            continue  # a typo in one aggregate must not take the host out of service
        if math.isfinite(number) and number > 0:
            numbers.append(number)
    return numbers


def allocation_ratio(
    host_ratio: float | None, metadata: Mapping[str, frozenset[str]], key: str, default: float
) -> float:
    """The effective over-commit for one resource.

    The host's own ratio wins; else the smallest valid value its aggregates give ``key`` (the safest,
    as Nova's Aggregate*Filter took); else ``default``. Invalid metadata values are ignored.
    """
    if host_ratio is not None and host_ratio > 0:
        return float(host_ratio)
    numbers = _positive_numbers(metadata.get(key, ()))
    return min(numbers) if numbers else default


def max_instances(metadata: Mapping[str, frozenset[str]]) -> int | None:
    """The smallest ``max_instances_per_host`` the aggregates set, or None when none sets one."""
    numbers = _positive_numbers(metadata.get(MAX_INSTANCES_KEY, ()))
    return int(min(numbers)) if numbers else None


def tenant_ids(metadata: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """Projects the aggregates reserve the host for: ``filter_tenant_id`` and ``filter_tenant_id*`` keys,
    each value a comma-separated list. Empty means the host is open to every project."""
    found: set[str] = set()
    for key, values in metadata.items():
        if key.startswith(TENANT_KEY_PREFIX):
            for value in values:
                found.update(part.strip() for part in value.split(",") if part.strip())
    return frozenset(found)
