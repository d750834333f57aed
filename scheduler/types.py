"""Plain snapshots the scheduler decides on.

Everything here is a frozen value: the conductor builds ``HostState`` rows from its database and a
``RequestSpec`` from the instance, its flavor, image, hints and server group, and the scheduler never
mutates either. All dataclasses are keyword-only so fields can be added without breaking callers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from scheduler.aggregates import EMPTY_METADATA, tenant_ids

if TYPE_CHECKING:
    from scheduler.explain import Explanation

# Overcommit defaults, the same as Nova's ``initial_*_allocation_ratio`` options: vCPUs are shared
# fairly well by guests, RAM and disk are not, so only the CPU is overcommitted out of the box.
DEFAULT_CPU_ALLOCATION_RATIO = 4.0
DEFAULT_RAM_ALLOCATION_RATIO = 1.0
DEFAULT_DISK_ALLOCATION_RATIO = 1.0

# Cheapest and most selective first: a host that is down is rejected before any arithmetic, and the
# filters that only act on some requests cost nothing on the others.
DEFAULT_FILTERS: tuple[str, ...] = (
    "ComputeFilter",
    "AvailabilityZoneFilter",
    "RamFilter",
    "CoreFilter",
    "DiskFilter",
    "NumInstancesFilter",
    "ComputeCapabilitiesFilter",
    "ImagePropertiesFilter",
    "AggregateInstanceExtraSpecsFilter",
    "AggregateMultiTenancyIsolation",
    "SameHostFilter",
    "DifferentHostFilter",
    "ServerGroupAntiAffinityFilter",
    "ServerGroupAffinityFilter",
)
# Nova's multipliers: spread by free RAM, vCPUs and disk; a host that failed builds lately is avoided
# whenever any other host fits (the multiplier dwarfs the others once every weigher is scaled to 0..1).
DEFAULT_WEIGHERS: Mapping[str, float] = MappingProxyType(
    {
        "RAMWeigher": 1.0,
        "CPUWeigher": 1.0,
        "DiskWeigher": 1.0,
        "NumInstancesWeigher": 0.0,
        "ServerGroupSoftAffinityWeigher": 1.0,
        "ServerGroupSoftAntiAffinityWeigher": 1.0,
        "BuildFailureWeigher": 1_000_000.0,
    }
)
DEFAULT_SERVICE_DOWN_TIME = 60.0
DEFAULT_MAX_INSTANCES_PER_HOST = 50

AFFINITY = "affinity"
ANTI_AFFINITY = "anti-affinity"
SOFT_AFFINITY = "soft-affinity"
SOFT_ANTI_AFFINITY = "soft-anti-affinity"
GROUP_POLICIES = (AFFINITY, ANTI_AFFINITY, SOFT_AFFINITY, SOFT_ANTI_AFFINITY)

_EMPTY_COUNTS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class HostState:
    """What the control plane knows about one compute host at the moment of a decision.

    ``*_used`` counts what instances on the host have claimed; ``reserved_host_memory_mb`` is kept
    apart for the hypervisor itself and is never multiplied by the allocation ratio. The ratios are the
    effective ones (the host's own, else its aggregates', else the default; see ``scheduler.aggregates``).

    ``availability_zone`` is the host's zone, ``aggregates`` the names of the aggregates it is in and
    ``aggregate_metadata`` their metadata merged: every key maps to the set of values the aggregates
    give it. ``instance_uuids`` holds the instances on the host that the request may ask about (for
    ``same_host``/``different_host``); the conductor fills in at least those the request names.
    ``failed_builds`` counts builds that failed on the host since its last success.

    Derived at construction: ``tenant_ids`` from the metadata, and ``free_*`` (below).

    The ``free_*`` fields are derived once at construction: capacity left under the allocation
    ratios, ``total * ratio - used`` (RAM also minus the reserved memory). They may be negative when
    an operator lowers a ratio below what is already placed. Filters and weighers read them so that a
    decision over thousands of hosts does no repeated arithmetic.
    """

    host: str
    enabled: bool
    last_heartbeat: float | None
    disabled_reason: str = ""
    vcpus_total: int
    vcpus_used: int = 0
    memory_mb_total: int
    memory_mb_used: int = 0
    disk_gb_total: int
    disk_gb_used: int = 0
    cpu_allocation_ratio: float = DEFAULT_CPU_ALLOCATION_RATIO
    ram_allocation_ratio: float = DEFAULT_RAM_ALLOCATION_RATIO
    disk_allocation_ratio: float = DEFAULT_DISK_ALLOCATION_RATIO
    reserved_host_memory_mb: int = 0
    num_instances: int = 0
    availability_zone: str = ""
    aggregates: tuple[str, ...] = ()
    aggregate_metadata: Mapping[str, frozenset[str]] = field(default_factory=lambda: EMPTY_METADATA)
    hypervisor_type: str = ""
    hypervisor_version: int = 0
    cpu_arch: str = ""
    instance_uuids: frozenset[str] = frozenset()
    failed_builds: int = 0
    max_instances: int | None = None  # the aggregates' max_instances_per_host, if any names one

    free_vcpus: float = field(init=False, repr=False, compare=False)
    free_ram_mb: float = field(init=False, repr=False, compare=False)
    free_disk_gb: float = field(init=False, repr=False, compare=False)
    # The projects the host's aggregates reserve it for (``filter_tenant_id*``); empty means every project.
    tenant_ids: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "tenant_ids", tenant_ids(self.aggregate_metadata) if self.aggregate_metadata else frozenset())
        set_field(self, "free_vcpus", self.vcpus_total * self.cpu_allocation_ratio - self.vcpus_used)
        set_field(
            self,
            "free_ram_mb",
            self.memory_mb_total * self.ram_allocation_ratio - self.memory_mb_used - self.reserved_host_memory_mb,
        )
        set_field(self, "free_disk_gb", self.disk_gb_total * self.disk_allocation_ratio - self.disk_gb_used)

    def is_up(self, *, now: float, service_down_time: float) -> bool:
        """True if the host has sent a heartbeat within ``service_down_time`` seconds of ``now``."""
        return self.last_heartbeat is not None and self.last_heartbeat >= now - service_down_time

    def consume(self, spec: RequestSpec) -> HostState:
        """A copy of this state with one instance of ``spec`` placed on it.

        Used when several instances are placed in one batch, so the second pick sees the first one's
        claim. The original snapshot is left untouched.
        """
        return dataclasses.replace(
            self,
            vcpus_used=self.vcpus_used + spec.vcpus,
            memory_mb_used=self.memory_mb_used + spec.memory_mb,
            disk_gb_used=self.disk_gb_used + spec.disk_gb,
            num_instances=self.num_instances + 1,
            instance_uuids=self.instance_uuids | {spec.instance_uuid},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSpec:
    """The server group a request belongs to, as it stands before this request is placed.

    ``members`` maps each host to how many of the group's other members it holds. Hard policies are
    enforced by the ``ServerGroup*Filter``s, soft ones by the ``ServerGroupSoft*Weigher``s.
    ``max_server_per_host`` is the anti-affinity rule of the same name (1 unless the group's rules say).
    """

    uuid: str
    policy: str
    max_server_per_host: int = 1
    members: Mapping[str, int] = field(default_factory=lambda: _EMPTY_COUNTS)

    def __post_init__(self) -> None:
        if self.policy not in GROUP_POLICIES:
            raise ValueError(f"unknown server group policy {self.policy!r}; known: {', '.join(GROUP_POLICIES)}")
        if self.max_server_per_host < 1:
            raise ValueError(f"max_server_per_host must be at least 1, not {self.max_server_per_host!r}")
        object.__setattr__(self, "members", MappingProxyType({h: n for h, n in self.members.items() if n > 0}))

    @property
    def hosts(self) -> frozenset[str]:
        """Hosts holding at least one member."""
        return frozenset(self.members)

    def with_member_on(self, host: str) -> GroupSpec:
        """The group after one more member was placed on ``host`` (for the next pick of a batch)."""
        members = dict(self.members)
        members[host] = members.get(host, 0) + 1
        return dataclasses.replace(self, members=members)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSpec:
    """What one instance asks for, taken from its flavor, image and the boot request.

    ``num_instances`` is the size of a multi-create batch; every filter checks that one instance fits.
    ``ignore_hosts`` lists hosts that must not be chosen, e.g. hosts a failed build already tried, and
    ``ignore_reason`` says why in the explanation.
    ``scheduler_hints`` carries the request's ``os:scheduler_hints`` (``same_host``, ``different_host``
    ...). ``availability_zone`` is the zone asked for, None for any. ``flavor_extra_specs`` and
    ``image_properties`` are the flavor's extra specs and the image's properties as stored.

    ``requested_host`` is the only host the instance may go to (an admin's ``host`` or
    ``hypervisor_hostname`` from microversion 2.74, or ``zone:host``); every filter still runs on it.
    ``force_host`` (``zone:host``) bypasses the filters, as Nova does for a forced host, except those
    that guard what a claim must never break (``BaseHostFilter.runs_for_forced_host``).
    """

    instance_uuid: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0
    swap_mb: int = 0
    num_instances: int = 1
    ignore_hosts: frozenset[str] = frozenset()
    ignore_reason: str = "excluded by the request"
    scheduler_hints: Mapping[str, Any] = field(default_factory=dict)
    project_id: str = ""
    availability_zone: str | None = None
    flavor_extra_specs: Mapping[str, str] = field(default_factory=dict)
    image_properties: Mapping[str, Any] = field(default_factory=dict)
    group: GroupSpec | None = None
    requested_host: str | None = None
    force_host: bool = False

    def __post_init__(self) -> None:
        if self.force_host and not self.requested_host:
            raise ValueError("force_host needs the requested_host it forces")

    @property
    def disk_gb(self) -> int:
        """Local disk the instance takes: root, ephemeral and swap (rounded up to whole GB)."""
        return self.root_gb + self.ephemeral_gb + math.ceil(self.swap_mb / 1024)

    def hint_values(self, name: str) -> tuple[str, ...]:
        """A hint as a tuple of strings: clients send one value or a list of them."""
        value = self.scheduler_hints.get(name)
        if value is None or value == "":
            return ()
        if isinstance(value, list | tuple | set | frozenset):
            return tuple(str(item) for item in value)
        return (str(value),)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    """Which filters run (in this order), which weighers count and how much, and when a host is down.

    ``weighers`` maps a weigher name to its multiplier: a positive multiplier prefers hosts with a
    larger raw value (for ``RAMWeigher``, spreading instances out), a negative one packs them, zero
    turns the weigher off. ``host_subset_size`` > 1 picks the winner at random among that many best
    hosts, which keeps concurrent schedulers from all racing for the same host.
    ``max_instances_per_host`` is ``NumInstancesFilter``'s limit where no aggregate sets one.

    Names are checked against the registries when the engine first uses a config, see
    ``scheduler.engine.check_config``.
    """

    enabled_filters: tuple[str, ...] = DEFAULT_FILTERS
    weighers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHERS))
    service_down_time: float = DEFAULT_SERVICE_DOWN_TIME
    host_subset_size: int = 1
    max_instances_per_host: int = DEFAULT_MAX_INSTANCES_PER_HOST

    def __post_init__(self) -> None:
        # Settings files naturally hold lists; a tuple keeps the frozen config honest.
        object.__setattr__(self, "enabled_filters", tuple(self.enabled_filters))
        object.__setattr__(self, "weighers", dict(self.weighers))
        if self.service_down_time <= 0:
            raise ValueError(f"service_down_time must be positive, not {self.service_down_time!r}")
        if self.host_subset_size < 1:
            raise ValueError(f"host_subset_size must be at least 1, not {self.host_subset_size!r}")
        if self.max_instances_per_host < 1:
            raise ValueError(f"max_instances_per_host must be at least 1, not {self.max_instances_per_host!r}")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> SchedulerConfig:
        """Build a config from a settings dict; keys may be upper or lower case."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key.lower(): value for key, value in settings.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown scheduler settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class FilterContext:
    """What every filter may need besides the host and the request: the decision's clock and config."""

    now: float
    config: SchedulerConfig
    heartbeat_cutoff: float = field(init=False)

    def __post_init__(self) -> None:
        # One subtraction per decision instead of one per host; ``HostState.is_up`` uses the same test.
        object.__setattr__(self, "heartbeat_cutoff", self.now - self.config.service_down_time)


class NoValidHost(Exception):
    """No host passed the filters. ``str(exc)`` is the explanation, fit for an instance fault."""

    def __init__(self, explanation: Explanation) -> None:
        super().__init__(explanation.render())
        self.explanation = explanation
