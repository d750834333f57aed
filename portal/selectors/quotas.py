"""Quota reads: which limit is in force for a project (or a user in it), and how much is in use.

A limit resolves from the most specific place that sets it: the user's own limit in the project, the
project's, the ``default`` quota class, and last the built-in defaults (Nova's). ``-1`` is unlimited.
Usage is counted from the rows themselves (instances not deleted, key pairs, server groups, images),
never kept in a counter that could drift from them.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Count, Q, QuerySet, Sum

from portal.models import (
    FloatingIP,
    Image,
    Instance,
    Keypair,
    Migration,
    Network,
    Port,
    Project,
    QuotaClassLimit,
    QuotaLimit,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    ServerGroup,
    Subnet,
    UserIdentity,
)
from portal.states import VmState

from .rows import CompiledQuery

UNLIMITED = -1
DEFAULT_CLASS = "default"

# Resources this cloud counts and enforces, with Nova's built-in defaults.
ENFORCED_DEFAULTS: dict[str, int] = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "key_pairs": 100,
    "metadata_items": 128,
    "server_groups": 10,
    "server_group_members": 10,
}
# Resources older microversions still show: personality files (until 2.57), whose limits bound each
# server's files (``services.quotas.personality_quota_check``), and the nova-network ones (until 2.36),
# whose limits can be stored and shown but which nothing here consumes.
LEGACY_DEFAULTS: dict[str, int] = {
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
    "fixed_ips": UNLIMITED,
    "floating_ips": UNLIMITED,
    "security_groups": UNLIMITED,
    "security_group_rules": UNLIMITED,
}
# The image service's limits, under Glance's unified-limit names: how many images a project owns (any
# status but deleted), and the total size of their data in MiB. The compute API's quota sets do not show
# them (Nova's do not); they are set in the admin, per project only, as Glance's are.
IMAGE_DEFAULTS: dict[str, int] = {
    "image_count_total": 100,
    "image_size_total": 51200,
}
MIB = 1024 * 1024  # the unit of image_size_total
# The network controller's limits, under the networking API's names (Neutron's defaults): per project only.
# The cloud's own DHCP ports are not counted.
NETWORK_DEFAULTS: dict[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "security_group": 10,
    "security_group_rule": 100,
    "router": 10,
    "floatingip": 50,
}

COMPUTE_DEFAULTS: dict[str, int] = {**ENFORCED_DEFAULTS, **LEGACY_DEFAULTS}
BUILTIN_DEFAULTS: dict[str, int] = {**COMPUTE_DEFAULTS, **IMAGE_DEFAULTS, **NETWORK_DEFAULTS}
RESOURCES: tuple[str, ...] = tuple(sorted(BUILTIN_DEFAULTS))
COMPUTE_RESOURCES: tuple[str, ...] = tuple(sorted(COMPUTE_DEFAULTS))

# Per-project only in Nova (and Glance): a user cannot get a limit of their own for these.
PROJECT_ONLY = frozenset({"fixed_ips", "floating_ips", *IMAGE_DEFAULTS, *NETWORK_DEFAULTS})


def class_limits(class_name: str = DEFAULT_CLASS) -> dict[str, int]:
    """The limits of a quota class: what it stores, over the built-in defaults."""
    limits = dict(BUILTIN_DEFAULTS)
    for resource, hard_limit in _CLASS_LIMITS_QUERY.rows("class", class_name=class_name):
        if resource in limits:
            limits[resource] = hard_limit
    return limits


def default_limits() -> dict[str, int]:
    """What a project without limits of its own gets: the ``default`` class (the only one honoured)."""
    return class_limits(DEFAULT_CLASS)


def project_limits(project: Project) -> dict[str, int]:
    limits = default_limits()
    _overlay(limits, QuotaLimit.objects.filter(project=project, user__isnull=True))
    return limits


def user_limits(project: Project, user) -> dict[str, int]:
    """A user's limits in a project: their own where set, the project's elsewhere."""
    limits = project_limits(project)
    _overlay(limits, QuotaLimit.objects.filter(project=project, user=user))
    return limits


def user_own_limits(project: Project, user) -> dict[str, int]:
    """Only the limits set for this user themselves (the ones enforced on top of the project's)."""
    rows = QuotaLimit.objects.filter(project=project, user=user).values_list("resource", "hard_limit")
    return {resource: hard_limit for resource, hard_limit in rows if resource in BUILTIN_DEFAULTS}


def project_and_own_limits(project: Project, user) -> tuple[dict[str, int], dict[str, int]]:
    """``project_limits(project)`` and ``user_own_limits(project, user)``, the project's and the user's
    rows read in one query."""
    limits = default_limits()
    own: dict[str, int] = {}
    for resource, hard_limit, user_id in _LIMITS_QUERY.rows("limits", project_id=project.pk, user_id=user.pk):
        if resource in limits:
            (limits if user_id is None else own)[resource] = hard_limit
    return limits, own


_CLASS_LIMITS_QUERY = CompiledQuery(
    lambda _shape, *, class_name: QuotaClassLimit.objects.filter(class_name=class_name).values_list(
        "resource", "hard_limit"
    )
)
_LIMITS_QUERY = CompiledQuery(
    lambda _shape, *, project_id, user_id: QuotaLimit.objects.filter(
        Q(user__isnull=True) | Q(user_id=user_id), project_id=project_id
    ).values_list("resource", "hard_limit", "user_id")
)


def _overlay(limits: dict[str, int], rows) -> None:
    for resource, hard_limit in rows.values_list("resource", "hard_limit"):
        if resource in limits:
            limits[resource] = hard_limit


def instance_usage(project: Project, user=None) -> dict[str, int]:
    """Instances, cores and RAM held by the project's (or the user's) instances that are not deleted
    (by queries built once per process)."""
    if user is None:
        values = {"project_id": project.pk}
        return _totals(_INSTANCE_TOTALS_QUERY.rows("project", **values), _MOVES_QUERY.rows("project", **values))
    values = {"project_id": project.pk, "user_id": user.pk}
    return _totals(_INSTANCE_TOTALS_QUERY.rows("user", **values), _MOVES_QUERY.rows("user", **values))


def _project_instances(shape: str, *, project_id: str, user_id: int | None = None) -> QuerySet:
    rows = Instance.objects.filter(project_id=project_id).exclude(vm_state=VmState.DELETED)
    if shape == "user":
        rows = rows.filter(user_id=user_id)
    rows = rows.order_by().values("project").annotate(instances=Count("id"), cores=Sum("vcpus"), ram=Sum("memory_mb"))
    return rows.values_list("instances", "cores", "ram")


def _project_moves(shape: str, *, project_id: str, user_id: int | None = None) -> QuerySet:
    moving = Migration.objects.filter(project_id=project_id, status__in=Migration.ACTIVE_STATUSES)
    if shape == "user":
        moving = moving.filter(instance__user_id=user_id)
    return moving.values_list("old_flavor", "new_flavor", "instance__vcpus", "instance__memory_mb")


_INSTANCE_TOTALS_QUERY = CompiledQuery(_project_instances)
_MOVES_QUERY = CompiledQuery(_project_moves)


def _instance_totals(rows, moving) -> dict[str, int]:
    """``instance_usage`` of the instances ``rows`` and the moves ``moving``."""
    totals = rows.aggregate(instances=Count("id"), cores=Sum("vcpus"), ram=Sum("memory_mb"))
    return _totals(
        [(totals["instances"], totals["cores"], totals["ram"])],
        moving.values_list("old_flavor", "new_flavor", "instance__vcpus", "instance__memory_mb"),
    )


def _totals(totals: list, moving) -> dict[str, int]:
    """The usage ``totals`` (one row of instances, cores and RAM; none when no instance) with the claims
    of the ``moving`` rows (old flavor, new flavor, the instance's vCPUs and RAM)."""
    instances, cores, ram = totals[0] if totals else (0, 0, 0)
    usage = {"instances": int(instances or 0), "cores": int(cores or 0), "ram": int(ram or 0)}
    # A server being resized holds the larger of its two flavors until the move is confirmed or reverted.
    for old, new, vcpus, memory_mb in moving:
        usage["cores"] += max(0, old["vcpus"] - vcpus, new["vcpus"] - vcpus)
        usage["ram"] += max(0, old["memory_mb"] - memory_mb, new["memory_mb"] - memory_mb)
    return usage


def keypair_count(user) -> int:
    return Keypair.objects.filter(user=user).count() if user is not None else 0


def server_group_count(project: Project, user=None) -> int:
    rows = ServerGroup.objects.filter(project=project)
    if user is not None:
        rows = rows.filter(user=user)
    return rows.count()


def server_group_member_count(group, user=None) -> int:
    rows = Instance.objects.filter(server_group=group).exclude(vm_state=VmState.DELETED)
    if user is not None:
        rows = rows.filter(user=user)
    return rows.count()


def image_usage(project: Project) -> dict[str, int]:
    """The images the project owns that are not deleted, and the bytes of their data (in bytes, not MiB)."""
    totals = (
        Image.objects.filter(owner=project)
        .exclude(status=Image.Status.DELETED)
        .aggregate(image_count_total=Count("id"), image_size_total=Sum("size"))
    )
    return {key: int(value or 0) for key, value in totals.items()}


def network_usage(project: Project) -> dict[str, int]:
    """The project's networks, subnets, ports (but the cloud's own DHCP ports), security groups and their
    rules, routers and floating IPs."""
    return {
        "network": Network.objects.filter(project=project).count(),
        "subnet": Subnet.objects.filter(project=project).count(),
        "port": Port.objects.filter(project=project).exclude(device_owner=Port.OWNER_DHCP).count(),
        "security_group": SecurityGroup.objects.filter(project=project).count(),
        "security_group_rule": SecurityGroupRule.objects.filter(project=project).count(),
        "router": Router.objects.filter(project=project).count(),
        "floatingip": FloatingIP.objects.filter(project=project).count(),
    }


def cloud_usage() -> dict[str, int]:
    """What every project together uses of each counted resource, as the quotas count it (in the quotas'
    units: ``ram`` and ``image_size_total`` in MiB, rounded up). Eleven queries, whatever the number of
    projects."""
    used = _instance_totals(
        Instance.objects.exclude(vm_state=VmState.DELETED),
        Migration.objects.filter(status__in=Migration.ACTIVE_STATUSES),
    )
    used["key_pairs"] = Keypair.objects.count()
    used["server_groups"] = ServerGroup.objects.count()
    # What no project owns counts against no quota.
    images = (
        Image.objects.filter(owner__isnull=False)
        .exclude(status=Image.Status.DELETED)
        .aggregate(count=Count("id"), size=Sum("size"))
    )
    used["image_count_total"] = int(images["count"] or 0)
    used["image_size_total"] = -(-int(images["size"] or 0) // MIB)
    used.update(
        network=Network.objects.filter(project__isnull=False).count(),
        subnet=Subnet.objects.filter(project__isnull=False).count(),
        port=Port.objects.filter(project__isnull=False).exclude(device_owner=Port.OWNER_DHCP).count(),
        security_group=SecurityGroup.objects.count(),
        security_group_rule=SecurityGroupRule.objects.count(),
    )
    return used


def image_size_room(project: Project) -> int | None:
    """Bytes of image data the project may still store, or None when its limit is unlimited."""
    limit = project_limits(project)["image_size_total"]
    if limit == UNLIMITED:
        return None
    return max(0, limit * MIB - image_usage(project)["image_size_total"])


def usage(project: Project, user=None, *, keypair_owner=None) -> dict[str, int]:
    """What is in use of every compute resource: the project's, or one user's within it when ``user`` is given.

    Key pairs belong to users, not projects: they are counted for ``user``, else for ``keypair_owner``
    (the caller, as Nova does). Per-instance and per-group resources are 0 here: they are checked
    against one instance or one group when it grows.
    """
    used = dict.fromkeys(COMPUTE_RESOURCES, 0)
    used.update(instance_usage(project, user))
    used["key_pairs"] = keypair_count(user if user is not None else keypair_owner)
    used["server_groups"] = server_group_count(project, user)
    return used


def quota_detail(limits: Mapping[str, int], used: Mapping[str, int]) -> dict[str, dict[str, int]]:
    return {r: {"limit": limits[r], "in_use": used.get(r, 0), "reserved": 0} for r in COMPUTE_RESOURCES}


def is_member(project: Project, user) -> bool:
    """Whether ``user`` is a user of ``project`` for its per-user quotas: a role there, or the project as
    their default project (as the identity API creates users for a project)."""
    if project.memberships.filter(user=user).exists():
        return True
    return UserIdentity.objects.filter(user=user, default_project=project).exists()
