"""Reads about compute hosts: the scheduler's snapshots and request specs, and whether a host is up.

Snapshots cost a constant number of queries whatever the number of hosts: the hosts, the resources
their instances claim, aggregate membership and metadata, and (only when a request names instances
in its hints) where those instances are.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db.models import Count, F, QuerySet, Sum
from django.utils import timezone

from portal.models import Aggregate, ComputeHost, Flavor, Image, Instance, Migration, ServerGroup
from portal.states import VmState
from scheduler import GroupSpec, HostState, RequestSpec, SchedulerConfig, select_hosts_for_batch
from scheduler import aggregates as aggregate_rules
from scheduler.filters.same_host import DIFFERENT_HOST, SAME_HOST

from .rows import CompiledQuery, where_in

GROUP_HINT = "group"
_HOST_FIELDS = (
    "pk",
    "name",
    "enabled",
    "disabled_reason",
    "forced_down",
    "last_heartbeat",
    "vcpus",
    "memory_mb",
    "disk_gb",
    "hypervisor_type",
    "hypervisor_version",
    "cpu_arch",
    "cpu_allocation_ratio",
    "ram_allocation_ratio",
    "disk_allocation_ratio",
    "failed_builds",
)


def scheduler_config() -> SchedulerConfig:
    conf = settings.SCHEDULER
    return SchedulerConfig(
        enabled_filters=tuple(conf["FILTERS"]),
        weighers=dict(conf["WEIGHERS"]),
        service_down_time=conf["SERVICE_DOWN_TIME"],
        host_subset_size=conf.get("HOST_SUBSET_SIZE", 1),
        max_instances_per_host=conf.get("MAX_INSTANCES_PER_HOST", 50),
    )


def host_is_up(host: ComputeHost, now: datetime | None = None) -> bool:
    if host.forced_down or host.last_heartbeat is None:
        return False
    age = ((now or timezone.now()) - host.last_heartbeat).total_seconds()
    return age <= settings.SCHEDULER["SERVICE_DOWN_TIME"]


def claimed_usage(host_ids=None) -> dict[int, dict[str, int]]:
    """Resources held on each host by the instances claimed there (everything not deleted).

    Disk counts root, ephemeral and swap rounded up to whole GB, as ``RequestSpec.disk_gb`` does.
    """
    rows = _about_hosts(_USAGE_QUERY, host_ids)
    usage = {row[0]: dict(zip(_USAGE_FIELDS, row, strict=True)) for row in rows}
    for host_id, flavor in migration_claims(host_ids):
        used = usage.setdefault(host_id, {"host_id": host_id, "vcpus": 0, "memory_mb": 0, "disk_gb": 0, "count": 0})
        used["vcpus"] = (used["vcpus"] or 0) + flavor["vcpus"]
        used["memory_mb"] = (used["memory_mb"] or 0) + flavor["memory_mb"]
        used["disk_gb"] = (used["disk_gb"] or 0) + flavor_disk_gb(flavor)
    return usage


_USAGE_FIELDS = ("host_id", "vcpus", "memory_mb", "disk_gb", "count")


def _usage(shape: str, *, host_ids: list[int] | None = None) -> QuerySet:
    rows = Instance.objects.filter(host__isnull=False).exclude(vm_state=VmState.DELETED)
    if shape == SOME_HOSTS:
        rows = where_in(rows, "host", host_ids)
    rows = rows.values("host_id").annotate(
        vcpus=Sum("vcpus"),
        memory_mb=Sum("memory_mb"),
        disk_gb=Sum(F("root_gb") + F("ephemeral_gb") + (F("swap") + 1023) / 1024),
        count=Count("id"),
    )
    return rows.values_list(*_USAGE_FIELDS)


# A decision reads every host's usage, and a claim its hosts': the SQL of these is built once per process.
_USAGE_QUERY = CompiledQuery(_usage)
SOME_HOSTS = "some hosts"


def _about_hosts(query: CompiledQuery, host_ids: Iterable[int] | None) -> list[tuple]:
    """The rows of ``query`` about every host (``host_ids`` None) or about ``host_ids``."""
    if host_ids is None:
        return query.rows("every host")
    return query.rows(SOME_HOSTS, host_ids=list(host_ids))


def _hosts(shape: str, *, host_ids: list[int] | None = None) -> QuerySet:
    rows = ComputeHost.objects.order_by("name")
    return (where_in(rows, "id", host_ids) if shape == SOME_HOSTS else rows).values_list(*_HOST_FIELDS)


def _membership(shape: str, *, host_ids: list[int] | None = None) -> QuerySet:
    rows = Aggregate.hosts.through.objects.all()
    if shape == SOME_HOSTS:
        rows = where_in(rows, "computehost", host_ids)
    return rows.values_list("computehost_id", "aggregate_id")


_HOSTS_QUERY = CompiledQuery(_hosts)
_MEMBERSHIP_QUERY = CompiledQuery(_membership)
_AGGREGATES_QUERY = CompiledQuery(
    lambda _shape, *, ids: where_in(Aggregate.objects.all(), "id", ids).values_list("pk", "name", "metadata")
)


def flavor_disk_gb(flavor: Mapping[str, Any]) -> int:
    return flavor["root_gb"] + flavor.get("ephemeral_gb", 0) + (flavor.get("swap", 0) + 1023) // 1024


def migration_claims(host_ids=None) -> list[tuple[int, dict[str, Any]]]:
    """The claims moves in progress hold besides their instances' own: ``(host id, flavor)``.

    Until the guest is built on the destination, the destination holds the new flavor; from then until
    the move is confirmed or reverted, the source holds the old one (the instance's row counts where it
    is). A move that ended holds nothing.
    """
    claims = []
    # An evacuation moves the instance's own claim at once: its row counts where it goes.
    for row in _MOVES_QUERY.rows("active"):
        row = dict(zip(_MOVE_FIELDS, row, strict=True))
        built = row["status"] in _BUILT_ON_DESTINATION
        host_id = row["source_host_id"] if built else row["dest_host_id"]
        if host_id is None or (host_ids is not None and host_id not in host_ids):
            continue
        claims.append((host_id, row["old_flavor"] if built else row["new_flavor"]))
    return claims


_MOVE_FIELDS = ("status", "source_host_id", "dest_host_id", "old_flavor", "new_flavor")
_MOVES_QUERY = CompiledQuery(
    lambda _shape: (
        Migration.objects.filter(status__in=Migration.ACTIVE_STATUSES)
        .exclude(migration_type=Migration.Type.EVACUATION)
        .values_list(*_MOVE_FIELDS)
    )
)

_BUILT_ON_DESTINATION = (Migration.Status.FINISHED, Migration.Status.CONFIRMING, Migration.Status.REVERTING)


def _aggregates_by_host(host_ids=None) -> dict[int, list[tuple[str, dict[str, Any]]]]:
    """Each host's aggregates as (name, metadata) pairs: two queries."""
    membership = _about_hosts(_MEMBERSHIP_QUERY, host_ids)
    if not membership:
        return {}
    aggregates = {
        pk: (name, metadata or {})
        for pk, name, metadata in _AGGREGATES_QUERY.rows("aggregates", ids=sorted({agg for _, agg in membership}))
    }
    by_host: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for host_id, aggregate_id in membership:
        by_host[host_id].append(aggregates[aggregate_id])
    return by_host


def _named_instances(instance_uuids: Iterable[str], host_ids=None) -> dict[int, frozenset[str]]:
    """Where the given instances are: host id -> the uuids among them it holds (one query, or none)."""
    wanted = {str(uuid) for uuid in instance_uuids}
    if not wanted:
        return {}
    rows = Instance.objects.filter(uuid__in=_valid_uuids(wanted), host__isnull=False).exclude(vm_state=VmState.DELETED)
    if host_ids is not None:
        rows = rows.filter(host_id__in=host_ids)
    found: dict[int, set[str]] = defaultdict(set)
    for host_id, uuid in rows.values_list("host_id", "uuid"):
        found[host_id].add(str(uuid))
    return {host_id: frozenset(uuids) for host_id, uuids in found.items()}


def _valid_uuids(values: Iterable[str]) -> list[str]:
    valid = []
    for value in values:
        try:
            valid.append(str(UUID(value)))
        except ValueError:
            continue  # a hint naming no instance matches no host
    return valid


class _HostRows:
    """What a conductor process last read of every host: each host's part of its snapshot that does not
    depend on usage (capacity, liveness, ratios, aggregates), and when it was read."""

    def __init__(self) -> None:
        self.read_at = float("-inf")
        self.by_pk: dict[int, dict[str, Any]] = {}
        # Each host's snapshot when it holds nothing: most hosts of a large fleet, reused as they are.
        self.idle: dict[int, HostState] = {}
        # Each host's fields by the row they were made from (hosts in no aggregate): between two reads
        # most rows of a large fleet are as they were, and their fields and idle snapshots are kept.
        self.by_row: dict[tuple, dict[str, Any]] = {}

    def fresh_enough(self, max_age: float) -> bool:
        return max_age > 0 and time.monotonic() - self.read_at <= max_age

    def forget(self) -> None:
        self.read_at = float("-inf")
        self.by_pk = {}
        self.idle = {}
        self.by_row = {}


_host_rows = _HostRows()


def forget_host_rows() -> None:
    """Read every host again at the next decision (a claim found the hosts' picture out of date)."""
    _host_rows.forget()


def _static_host_fields(
    host_ids=None, *, by_row: dict[tuple, dict[str, Any]] | None = None
) -> dict[int, dict[str, Any]]:
    """Each host's snapshot fields that do not depend on its usage, in name order (three queries).

    ``by_row``: the fields made at the previous read, by the row they were made from; a host in no
    aggregate whose row is the same gets the same fields (the same object). Filled with this read's."""
    conf = settings.SCHEDULER
    default_zone = settings.CLOUD["DEFAULT_AVAILABILITY_ZONE"]
    rows = _about_hosts(_HOSTS_QUERY, host_ids)
    aggregates = _aggregates_by_host(host_ids)
    no_aggregates: list[tuple[str, dict[str, Any]]] = []
    static = {}
    previous = {}
    if by_row is not None:
        previous = dict(by_row)
        by_row.clear()
    for row in rows:
        if by_row is not None and row[0] not in aggregates:
            made = previous.get(row)
            if made is not None:
                static[row[0]] = by_row[row] = made
                continue
        fields = dict(zip(_HOST_FIELDS, row, strict=True))
        host_aggregates = aggregates.get(fields["pk"], no_aggregates)
        metadata = aggregate_rules.merge_metadata(meta for _, meta in host_aggregates)
        heartbeat = fields["last_heartbeat"]
        static[fields["pk"]] = {
            "host": fields["name"],
            "enabled": fields["enabled"],
            "disabled_reason": fields["disabled_reason"],
            "last_heartbeat": None if fields["forced_down"] or heartbeat is None else heartbeat.timestamp(),
            "vcpus_total": fields["vcpus"],
            "memory_mb_total": fields["memory_mb"],
            "disk_gb_total": fields["disk_gb"],
            "cpu_allocation_ratio": aggregate_rules.allocation_ratio(
                fields["cpu_allocation_ratio"], metadata, "cpu_allocation_ratio", conf["CPU_ALLOCATION_RATIO"]
            ),
            "ram_allocation_ratio": aggregate_rules.allocation_ratio(
                fields["ram_allocation_ratio"], metadata, "ram_allocation_ratio", conf["RAM_ALLOCATION_RATIO"]
            ),
            "disk_allocation_ratio": aggregate_rules.allocation_ratio(
                fields["disk_allocation_ratio"], metadata, "disk_allocation_ratio", conf["DISK_ALLOCATION_RATIO"]
            ),
            "reserved_host_memory_mb": conf["RESERVED_HOST_MEMORY_MB"],
            "availability_zone": aggregate_rules.availability_zone(metadata, default_zone),
            "aggregates": tuple(sorted(name for name, _ in host_aggregates)),
            "aggregate_metadata": metadata,
            "hypervisor_type": fields["hypervisor_type"],
            "hypervisor_version": fields["hypervisor_version"],
            "cpu_arch": fields["cpu_arch"],
            "failed_builds": fields["failed_builds"],
            "max_instances": aggregate_rules.max_instances(metadata),
        }
        if by_row is not None and not host_aggregates:
            by_row[row] = static[fields["pk"]]
    return static


def host_state_snapshots(
    *,
    instance_uuids: Iterable[str] = (),
    host_ids: Sequence[int] | None = None,
    host_name: str | None = None,
    recent: bool = False,
) -> list[HostState]:
    """Every host (or the given ones, or the one named ``host_name``) as the scheduler sees it, in name order.

    ``instance_uuids`` are the instances the request names in its hints; each snapshot's
    ``instance_uuids`` holds those of them on the host.

    ``recent``: for every host, the hosts' rows may be those this process read up to
    ``SCHEDULER['HOST_STATE_MAX_AGE']`` seconds ago (a decision, never a claim: a claim re-checks its
    hosts with ``recent=False`` under their row locks). What the hosts hold (claimed usage, moves'
    claims, where named instances are) is read now, always.
    """
    if host_name is not None:
        # A request that names its host is decided on that host alone: no need to read the others.
        named_ids = ComputeHost.objects.filter(name=host_name).values_list("pk", flat=True)
        host_ids = [pk for pk in named_ids if host_ids is None or pk in host_ids]
    idle: dict[int, HostState] = {}
    if recent and host_ids is None:
        if not _host_rows.fresh_enough(settings.SCHEDULER["HOST_STATE_MAX_AGE"]):
            read_at = time.monotonic()
            before = _host_rows.by_pk
            _host_rows.by_pk = _static_host_fields(by_row=_host_rows.by_row)
            # An idle host's snapshot stays while its fields are those it was made from.
            _host_rows.idle = {
                pk: snapshot
                for pk, snapshot in _host_rows.idle.items()
                if before.get(pk) is not None and _host_rows.by_pk.get(pk) is before[pk]
            }
            _host_rows.read_at = read_at
        static = _host_rows.by_pk
        idle = _host_rows.idle
    else:
        static = _static_host_fields(host_ids)
    usage = claimed_usage(host_ids)
    named = _named_instances(instance_uuids, host_ids)
    snapshots = []
    no_usage: dict[str, int] = {}
    for pk, fields in static.items():
        used = usage.get(pk)
        if used is None and pk not in named:
            snapshot = idle.get(pk)
            if snapshot is None:
                snapshot = idle[pk] = HostState(
                    **fields, vcpus_used=0, memory_mb_used=0, disk_gb_used=0, num_instances=0
                )
            snapshots.append(snapshot)
            continue
        used = used or no_usage
        snapshots.append(
            HostState(
                **fields,
                vcpus_used=used.get("vcpus") or 0,
                memory_mb_used=used.get("memory_mb") or 0,
                disk_gb_used=used.get("disk_gb") or 0,
                num_instances=used.get("count") or 0,
                instance_uuids=named.get(pk, frozenset()),
            )
        )
    return snapshots


def hinted_instances(hints: Mapping[str, Any]) -> set[str]:
    """The instance uuids a request's ``same_host``/``different_host`` hints name."""
    spec = RequestSpec(instance_uuid="", vcpus=0, memory_mb=0, root_gb=0, scheduler_hints=hints)
    return {*spec.hint_values(SAME_HOST), *spec.hint_values(DIFFERENT_HOST)}


def group_spec(group: ServerGroup | None, *, excluding: Iterable[int] = ()) -> GroupSpec | None:
    """The group's policy and where its members hold resources now (two queries): where they are, and
    where a move in progress has claimed room for them (a member on its way somewhere counts there too,
    so two members moving at once cannot both go to one host).

    ``excluding`` leaves out instances being placed right now (a reschedule's own old claim, a batch's
    members), so they do not count against themselves.
    """
    if group is None:
        return None
    members = dict(
        Instance.objects.filter(server_group=group, host__isnull=False)
        .exclude(vm_state=VmState.DELETED)
        .exclude(pk__in=list(excluding))
        .values_list("host__name")
        .annotate(count=Count("id"))
    )
    moving = (
        Migration.objects.filter(
            instance__server_group=group, status__in=Migration.ACTIVE_STATUSES, dest_host__isnull=False
        )
        .exclude(migration_type=Migration.Type.EVACUATION)
        .exclude(instance_id__in=list(excluding))
        .exclude(dest_host_id=F("instance__host_id"))
        .values_list("dest_host__name", flat=True)
    )
    for name in moving:
        members[name] = members.get(name, 0) + 1
    rules = group.rules or {}
    max_per_host = 1
    if group.policy == ServerGroup.Policy.ANTI_AFFINITY:
        try:
            max_per_host = max(1, int(rules.get("max_server_per_host", 1)))
        except (TypeError, ValueError):
            max_per_host = 1
    return GroupSpec(uuid=str(group.uuid), policy=group.policy, max_server_per_host=max_per_host, members=members)


def instance_request_spec(
    instance: Instance, *, group: GroupSpec | None = None, image: Image | None = None, num_instances: int = 1
) -> RequestSpec:
    """What the scheduler needs to place ``instance``; hosts a build already failed on are left out."""
    image = image if image is not None else instance.image
    return RequestSpec(
        instance_uuid=str(instance.uuid),
        vcpus=instance.vcpus,
        memory_mb=instance.memory_mb,
        root_gb=instance.root_gb,
        ephemeral_gb=instance.ephemeral_gb,
        swap_mb=instance.swap,
        num_instances=num_instances,
        ignore_hosts=frozenset(instance.attempted_hosts or ()),
        ignore_reason="a build failed there",
        scheduler_hints=dict(instance.scheduler_hints or {}),
        project_id=str(instance.project_id),
        availability_zone=instance.availability_zone or None,
        flavor_extra_specs=dict(instance.flavor_extra_specs or {}),
        image_properties=dict(image.properties or {}) if image is not None else {},
        group=group,
        requested_host=instance.requested_host or None,
        force_host=bool(instance.requested_host) and instance.force_host,
    )


def explain_placement(
    *,
    flavor: Flavor,
    image: Image | None = None,
    project_id: str = "",
    availability_zone: str | None = None,
    scheduler_hints: Mapping[str, Any] | None = None,
    group: ServerGroup | None = None,
    count: int = 1,
    show: int = 5,
    requested_host: str | None = None,
    force_host: bool = False,
) -> dict[str, Any]:
    """Where a hypothetical request would go now, and why other hosts would not do, as plain data.

    Nothing is claimed or written. ``count`` places a multi-create batch; ``show`` caps the ranked hosts
    listed for each instance. ``requested_host`` asks about that host alone (forced past most filters
    with ``force_host``), as a boot that names it would be placed.
    """
    hints = dict(scheduler_hints or {})
    group_info = group_spec(group)
    specs = [
        RequestSpec(
            instance_uuid=f"hypothetical-{index + 1}",
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            root_gb=flavor.root_gb,
            ephemeral_gb=flavor.ephemeral_gb,
            swap_mb=flavor.swap,
            num_instances=count,
            scheduler_hints=hints,
            project_id=project_id,
            availability_zone=availability_zone or None,
            flavor_extra_specs=dict(flavor.extra_specs or {}),
            image_properties=dict(image.properties or {}) if image is not None else {},
            group=group_info,
            requested_host=requested_host,
            force_host=force_host,
        )
        for index in range(count)
    ]
    snapshots = host_state_snapshots(instance_uuids=hinted_instances(hints), host_name=requested_host)
    batch = select_hosts_for_batch(snapshots, specs, now=time.time(), config=scheduler_config(), limit=show)
    placements = [
        {
            "instance": index + 1,
            "host": selection.hosts[0].host,
            "ranked": [
                {"host": host.host, "weight": round(weight, 6)}
                for host, weight in zip(selection.hosts, selection.weights, strict=True)
            ],
        }
        for index, selection in enumerate(batch.selections)
    ]
    explanation = (batch.failed or batch.selections[0]).explanation
    return {
        "request": {
            "flavor": flavor.name,
            "image": str(image.id) if image is not None else None,
            "project_id": project_id or None,
            "availability_zone": availability_zone or None,
            "scheduler_hints": hints,
            "server_group": str(group.uuid) if group is not None else None,
            "count": count,
            **({"requested_host": requested_host, "forced_host": force_host} if requested_host is not None else {}),
        },
        "valid": batch.failed is None,
        "explanation": explanation.as_dict(),
        "placements": placements,
    }
