"""Instance reads, scoped to what the caller may see."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet

from portal.auth.context import RequestContext
from portal.models import BlockDeviceMapping, ComputeHost, Flavor, Instance, InstanceFault, InstanceTag
from portal.states import VmState

from .rows import Columns, CompiledQuery, every_field, instances_from, scoped_rows, where_in
from .volumes import shown_mappings


def instances_visible(ctx: RequestContext, *, all_tenants: bool = False, include_deleted: bool = False) -> QuerySet:
    """The caller's project's instances; every project's for admins who ask for all tenants."""
    query = Instance.objects.select_related("host", "flavor", "user")
    if not (all_tenants and ctx.is_admin):
        query = query.filter(project=ctx.project)
    if not include_deleted:
        query = query.exclude(vm_state=VmState.DELETED)
    return query


def instance_get(ctx: RequestContext, instance_id: str) -> Instance | None:
    """One instance by uuid: the caller's project's, or any project's for admins; None when hidden."""
    try:
        key = uuid.UUID(str(instance_id))
    except ValueError:
        return None
    rows = scoped_rows(_GOT_QUERY, ctx, key=key)
    return with_latest_faults(GOT_COLUMNS.instances(rows))[0] if rows else None


def instance_by_uuid(instance_uuid: str) -> Instance | None:
    """Any instance (deleted ones too) by its uuid, every column, with ``has_volumes``: whether it has
    block device mappings. For the conductor, which reads the instance each message names (by a query
    built once per process)."""
    try:
        key = uuid.UUID(str(instance_uuid))
    except ValueError:
        return None
    rows = _BY_UUID_QUERY.rows("instance", key=key)
    if not rows:
        return None
    instance = INSTANCE_COLUMNS.instances(rows)[0]
    instance.has_volumes = rows[0][-1]
    return instance


INSTANCE_COLUMNS = Columns(Instance)


def _by_uuid(_shape, *, key: uuid.UUID) -> QuerySet:
    query = Instance.objects.filter(uuid=key).annotate(has_volumes=HAS_VOLUMES)
    return query.values_list(*INSTANCE_COLUMNS.paths, "has_volumes")[:1]


# Whether an instance has block device mappings (any status), as an annotation.
HAS_VOLUMES = Exists(BlockDeviceMapping.objects.filter(instance=OuterRef("pk")))


_BY_UUID_QUERY = CompiledQuery(_by_uuid)


# What ``instance_get`` reads: the whole instance, its host, flavor and owner, as ``instances_visible``'s
# ``select_related`` would (by a query built once per process).
GOT_COLUMNS = Columns(
    Instance,
    related={
        "host": every_field(ComputeHost),
        "flavor": every_field(Flavor),
        "user": every_field(get_user_model()),
    },
)


def _got(scope: str, *, key: uuid.UUID, project_id=None) -> QuerySet:
    query = Instance.objects.filter(uuid=key).exclude(vm_state=VmState.DELETED)
    if scope != "admin":
        query = query.filter(project_id=project_id)
    return GOT_COLUMNS.values_list(query[:1])  # uuid is unique: no ORDER BY


_GOT_QUERY = CompiledQuery(_got)


# What a view of a server reads: every column but those no view shows (each would be read and decoded for
# every server of a page), and of its host, flavor, owner and image what the views show of them.
SHOWN_COLUMNS = Columns(
    Instance,
    leave_out=(
        "attempted_hosts",
        "key_data",
        "task_deadline",
        "vnc_host",
        "vnc_port",
        "requested_host",
        "force_host",
        "locked_by",
        "build_attempts",
        "shelved_image",
        "shelved_at",
    ),
    related={
        "host": ("name", "enabled", "forced_down", "last_heartbeat"),
        "flavor": ("flavorid",),
        "user": (get_user_model().USERNAME_FIELD,),
        "image": ("properties",),
    },
)
# What the portal's instance list shows of each instance (portal.web.presenters.present, the rows' template).
LISTED_COLUMNS = Columns(
    Instance,
    only=(
        "uuid", "name", "project", "vm_state", "task_state", "power_state", "step_progress", "addresses",
        "flavor_name", "vnc_port", "host", "created_at", "updated_at",
    ),
    related={"host": ("name",)},
)  # fmt: skip
TAG_COLUMNS = Columns(InstanceTag)
VOLUME_COLUMNS = Columns(BlockDeviceMapping, leave_out=("connection_info",))


def _shown(scope: str, *, key: uuid.UUID, project_id=None) -> QuerySet:
    query = Instance.objects.filter(uuid=key).exclude(vm_state=VmState.DELETED)
    if scope != "admin":
        query = query.filter(project_id=project_id)
    # Whether it has tags and volumes to read: most servers have neither, and then one query is all.
    query = query.annotate(
        has_tags=Exists(InstanceTag.objects.filter(instance=OuterRef("pk"))),
        has_volumes=Exists(shown_mappings().filter(instance=OuterRef("pk"))),
    )
    return query.values_list(*SHOWN_COLUMNS.paths, "has_tags", "has_volumes")[:1]


def _tags(_shape, *, instance_id: int) -> QuerySet:
    return TAG_COLUMNS.values_list(InstanceTag.objects.filter(instance_id=instance_id).order_by("tag"))


def _volumes(_shape, *, instance_id: int) -> QuerySet:
    return VOLUME_COLUMNS.values_list(shown_mappings().filter(instance_id=instance_id))


def _page_tags(_shape, *, ids: list[int]) -> QuerySet:
    return TAG_COLUMNS.values_list(where_in(InstanceTag.objects.order_by("tag"), "instance", ids))


def _page_volumes(_shape, *, ids: list[int]) -> QuerySet:
    return VOLUME_COLUMNS.values_list(where_in(shown_mappings(), "instance", ids))


_SHOWN_QUERY = CompiledQuery(_shown)
_PAGE_TAGS_QUERY = CompiledQuery(_page_tags)
_PAGE_VOLUMES_QUERY = CompiledQuery(_page_volumes)
_TAGS_QUERY = CompiledQuery(_tags)
_VOLUMES_QUERY = CompiledQuery(_volumes)


def instance_shown(ctx: RequestContext, instance_id: str) -> Instance | None:
    """``instance_get`` for the views that only show the server (``GET /servers/{id}``): the same server,
    with its tags, volumes and latest faults, read by queries built once per process."""
    try:
        key = uuid.UUID(str(instance_id))
    except ValueError:
        return None
    rows = scoped_rows(_SHOWN_QUERY, ctx, key=key)
    if not rows:
        return None
    *_columns, has_tags, has_volumes = rows[0]
    instance = SHOWN_COLUMNS.instances(rows)[0]
    instance.tag_list = TAG_COLUMNS.instances(_TAGS_QUERY.rows("tags", instance_id=instance.pk)) if has_tags else []
    instance.volume_list = (
        VOLUME_COLUMNS.instances(_VOLUMES_QUERY.rows("volumes", instance_id=instance.pk)) if has_volumes else []
    )
    with_latest_faults([instance])
    return instance


def with_tags_and_volumes(instances: list[Instance]) -> None:
    """Each of ``instances`` with its tags (``tag_list``) and shown volumes (``volume_list``): a query
    for each, whatever the number of instances (on PostgreSQL compiled once per process, the ids being
    one parameter)."""
    tags: dict[int, list[InstanceTag]] = defaultdict(list)
    volumes: dict[int, list[BlockDeviceMapping]] = defaultdict(list)
    if instances:
        ids = [instance.pk for instance in instances]
        for tag in TAG_COLUMNS.instances(_PAGE_TAGS_QUERY.rows("tags", ids=ids)):
            tags[tag.instance_id].append(tag)
        for volume in VOLUME_COLUMNS.instances(_PAGE_VOLUMES_QUERY.rows("volumes", ids=ids)):
            volumes[volume.instance_id].append(volume)
    for instance in instances:
        instance.tag_list = tags.get(instance.pk, [])
        instance.volume_list = volumes.get(instance.pk, [])


def instances_listed(ctx: RequestContext) -> list[Instance]:
    """The portal's instance list: ``instances_visible`` in its order, with the host and latest faults,
    as rows made into models at once."""
    return with_latest_faults(instances_from(LISTED_COLUMNS, instances_visible(ctx)))


# The states whose views show the instance's latest fault (the compute API's ERROR and DELETED).
FAULT_VM_STATES = frozenset({VmState.ERROR, VmState.DELETED})


def with_latest_faults(instances: Iterable[Instance]) -> list[Instance]:
    """``instances``, each with its faults, newest first, as ``fault_list`` where a view shows them
    (``FAULT_VM_STATES``) and none elsewhere: one query for them all, or none when none is in such a
    state (the servers a client polls are nearly always ACTIVE or building)."""
    instances = list(instances)
    shown = [instance for instance in instances if instance.vm_state in FAULT_VM_STATES]
    by_instance: dict[int, list[InstanceFault]] = defaultdict(list)
    if shown:
        faults = InstanceFault.objects.filter(instance__in=shown).order_by("-created_at", "-id")
        for fault in faults:
            by_instance[fault.instance_id].append(fault)
    for instance in instances:
        instance.fault_list = by_instance.get(instance.pk, [])
    return instances


def latest_fault(instance: Instance) -> InstanceFault | None:
    faults = getattr(instance, "fault_list", None)
    if faults is None:
        return instance.faults.order_by("-created_at", "-id").first()
    return faults[0] if faults else None
