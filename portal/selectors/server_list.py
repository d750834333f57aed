"""The server list: filters, sorting and keyset pagination, all done by the database.

A page is one query whatever the page number: rows after the marker are found by comparing the sort
keys with the marker row's values (keyset pagination), never by reading and skipping the rows before.
NULLs sort as the smallest value in every direction of every key, so the comparison stays exact on
nullable columns.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import Case, Exists, F, Func, IntegerField, OuterRef, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast, Greatest, Least

from portal.auth.context import RequestContext
from portal.models import Instance, InstanceTag
from portal.states import STEP_SPANS, VmState, states_for_status

from .instances import SHOWN_COLUMNS, instances_visible, with_latest_faults, with_tags_and_volumes
from .rows import CompiledQuery, instances_from


class InvalidQuery(Exception):
    """A filter, sort key or marker the list cannot use (the API answers 400)."""


class ForbiddenQuery(Exception):
    """A sort key only admins may use (the API answers 403)."""


@dataclass(frozen=True)
class SortKey:
    field: str | None  # None: the same value for every server here, so it orders nothing
    nullable: bool = False
    admin_only: bool = False
    since: tuple[int, int] = (2, 1)  # the first microversion that knows the key


# The compute API's sort keys and the columns behind them.
SORT_KEYS: dict[str, SortKey] = {
    "created_at": SortKey("created_at"),
    "updated_at": SortKey("updated_at"),
    "launched_at": SortKey("launched_at", nullable=True),
    "terminated_at": SortKey("terminated_at", nullable=True),
    "display_name": SortKey("name"),
    "display_description": SortKey("description", nullable=True),
    "uuid": SortKey("uuid"),
    "vm_state": SortKey("vm_state"),
    "task_state": SortKey("task_state", nullable=True),
    "power_state": SortKey("power_state"),
    "availability_zone": SortKey("availability_zone"),
    "key_name": SortKey("key_name", nullable=True),
    "launch_index": SortKey("launch_index"),
    "project_id": SortKey("project_id"),
    "user_id": SortKey("user_id"),
    "image_ref": SortKey("image_ref"),
    "instance_type_id": SortKey("flavor_id", nullable=True),
    "hostname": SortKey("hostname"),
    "config_drive": SortKey("config_drive"),
    "locked_by": SortKey("locked_by"),
    "locked": SortKey("locked", since=(2, 73)),
    "host": SortKey("host__name", nullable=True, admin_only=True),
    "node": SortKey("host__name", nullable=True, admin_only=True),
    "access_ip_v4": SortKey(None),
    "access_ip_v6": SortKey(None),
    "auto_disk_config": SortKey(None),
    "kernel_id": SortKey(None),
    "ramdisk_id": SortKey(None),
    "root_device_name": SortKey(None),
    "progress": SortKey(None),
}


@dataclass
class ServerQuery:
    """What ``GET /servers`` asked for, already parsed; empty means no filter."""

    all_tenants: bool = False
    project_id: str | None = None
    deleted: bool | None = None  # True: only deleted (admins); None: not asked
    name: str | None = None
    hostname: str | None = None  # a regex, as ``name``
    statuses: list[str] = field(default_factory=list)
    flavor_id: str | None = None
    image_id: str | None = None
    changes_since: datetime | None = None
    changes_before: datetime | None = None
    tags: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    not_tags: list[str] = field(default_factory=list)
    not_tags_any: list[str] = field(default_factory=list)
    ip: str | None = None
    ip6: str | None = None
    locked: bool | None = None
    exact: dict[str, Any] = field(default_factory=dict)  # column -> value (reservation_id, host, …)
    config_drive: bool | None = None
    regex: dict[str, str] = field(default_factory=dict)  # an admin's filter name -> a regex over its text
    sort: list[tuple[str, str]] = field(default_factory=list)  # (API sort key, "asc" | "desc")
    limit: int = 1000
    marker: str | None = None
    api_version: tuple[int, int] = (2, 1)


class _AddressesText(Func):
    """The server's addresses of one IP version, space-separated, for a regex filter on ``ip``/``ip6``."""

    output_field = TextField()
    # SQLite's JSON1; PostgreSQL's jsonb below. ``version`` is an int the code chooses, never input.
    template = (
        "(SELECT coalesce(group_concat(json_extract(value, '$.addr'), ' '), '') FROM json_each(%(expressions)s)"
        " WHERE coalesce(json_extract(value, '$.version'), 4) = %(version)d)"
    )
    postgresql_template = (
        "(SELECT coalesce(string_agg(a->>'addr', ' '), '') FROM jsonb_array_elements(%(expressions)s) AS a"
        " WHERE coalesce(a->>'version', '4') = '%(version)d')"
    )

    def __init__(self, version: int) -> None:
        super().__init__(F("addresses"), version=int(version))

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template=self.postgresql_template, **extra)


class _TimeText(Func):
    """A timestamp as the text the compute API's regex filters match (``2026-12-06 04:15:33``, UTC)."""

    output_field = TextField()
    template = "coalesce(strftime('%%Y-%%m-%%d %%H:%%M:%%S', %(expressions)s), '')"
    postgresql_template = "coalesce(to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '')"

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template=self.postgresql_template, **extra)


# The filters the compute API matches as a regular expression over a column (admins; some for members
# from 2.83): the column, a timestamp's text, or what is the same for every server here.
REGEX_COLUMNS = {
    "access_ip_v4": "access_ip_v4",
    "access_ip_v6": "access_ip_v6",
    "description": "description",
    "display_description": "description",
    "display_name": "name",
}
REGEX_TIMES = {"launched_at", "terminated_at", "created_at"}
REGEX_CONSTANTS = {"kernel_id": "", "ramdisk_id": "", "root_device_name": "/dev/vda"}
REGEX_FILTERS = {*REGEX_COLUMNS, *REGEX_TIMES, *REGEX_CONSTANTS, "progress"}


def _progress_text() -> Cast:
    """``states.server_progress`` in SQL, as text: what the ``progress`` filter matches."""
    step = Greatest(Value(0), Least(Value(100), F("step_progress")))
    spans = [
        When(task_state=task, then=Value(low) + Value(high - low) * step / Value(100))
        for task, (low, high) in STEP_SPANS.items()
    ]
    idle = Case(When(vm_state__in=[VmState.ACTIVE, VmState.RESIZED], then=Value(100)), default=Value(0))
    return Cast(Case(*spans, default=idle, output_field=IntegerField()), TextField())


def _regex_filtered(rows: QuerySet, name: str, pattern: str) -> QuerySet:
    _regex(pattern, name)
    if name in REGEX_CONSTANTS:
        return rows if re.search(pattern, REGEX_CONSTANTS[name]) else rows.none()
    if name == "progress":
        return rows.alias(progress_text=_progress_text()).filter(progress_text__regex=pattern)
    if name in REGEX_TIMES:
        alias = f"{name}_text"
        return rows.alias(**{alias: _TimeText(name)}).filter(**{f"{alias}__regex": pattern})
    return rows.filter(**{f"{REGEX_COLUMNS[name]}__regex": pattern})


def _regex(value: str, name: str) -> str:
    try:
        re.compile(value)
    except re.error:
        raise InvalidQuery(f"Invalid regular expression in the {name} filter.") from None
    return value


def _has_tag(tag: str) -> Exists:
    return Exists(InstanceTag.objects.filter(instance=OuterRef("pk"), tag=tag))


def _filtered(ctx: RequestContext, q: ServerQuery) -> QuerySet:
    # A changes-since query is about what changed, deletions included (as in the compute API).
    include_deleted = bool(q.deleted) or q.changes_since is not None or q.changes_before is not None
    rows = instances_visible(ctx, all_tenants=q.all_tenants, include_deleted=include_deleted)
    if q.deleted:
        rows = rows.filter(vm_state=VmState.DELETED)
    if q.all_tenants and q.project_id:
        rows = rows.filter(project_id=q.project_id)
    if q.name:
        rows = rows.filter(name__regex=_regex(q.name, "name"))
    if q.hostname:
        rows = rows.filter(hostname__regex=_regex(q.hostname, "hostname"))
    if q.statuses:
        wanted = Q(pk__in=[])
        for status in q.statuses:
            matches = states_for_status(status)
            if matches is None:
                raise InvalidQuery(f"Invalid status value: {status[:40]}")
            for match in matches:
                tasks = Q(task_state__in=match.task_states)
                if match.other_tasks:
                    tasks = ~Q(task_state__in=match.excluded_tasks) | Q(task_state__isnull=True)
                wanted |= Q(vm_state=match.vm_state) & tasks
        rows = rows.filter(wanted)
    if q.flavor_id is not None:
        rows = rows.filter(flavor__flavorid=q.flavor_id)
    if q.image_id is not None:
        try:
            rows = rows.filter(image_ref=uuid.UUID(q.image_id.rstrip("/").rsplit("/", 1)[-1]))
        except ValueError:
            rows = rows.none()
    if q.changes_since is not None:
        rows = rows.filter(updated_at__gte=q.changes_since)
    if q.changes_before is not None:
        rows = rows.filter(updated_at__lte=q.changes_before)
    for tag in q.tags:
        rows = rows.filter(_has_tag(tag))
    if q.tags_any:
        rows = rows.filter(Exists(InstanceTag.objects.filter(instance=OuterRef("pk"), tag__in=q.tags_any)))
    if q.not_tags:
        has_all = Q()
        for tag in q.not_tags:
            has_all &= _has_tag(tag)
        rows = rows.exclude(has_all)
    if q.not_tags_any:
        rows = rows.exclude(Exists(InstanceTag.objects.filter(instance=OuterRef("pk"), tag__in=q.not_tags_any)))
    if q.ip:
        rows = rows.alias(ipv4_text=_AddressesText(4)).filter(ipv4_text__regex=_regex(q.ip, "ip"))
    if q.ip6:
        rows = rows.alias(ipv6_text=_AddressesText(6)).filter(ipv6_text__regex=_regex(q.ip6, "ip6"))
    if q.locked is not None:
        rows = rows.filter(locked=q.locked)
    if q.config_drive is not None:
        rows = rows.filter(config_drive=q.config_drive)
    for name, pattern in q.regex.items():
        rows = _regex_filtered(rows, name, pattern)
    for column, value in q.exact.items():
        rows = rows.filter(**{f"{column}__in" if isinstance(value, list) else column: value})
    return rows


def _sort_columns(ctx: RequestContext, q: ServerQuery) -> list[tuple[str, bool, bool]]:
    """(column, descending, nullable) for each sort key, ending with the primary key as tie-breaker."""
    columns: list[tuple[str, bool, bool]] = []
    for key, direction in q.sort or [("created_at", "desc")]:
        spec = SORT_KEYS.get(key)
        if spec is None or q.api_version < spec.since:
            raise InvalidQuery(f"Invalid sort_key: {key[:40]}")
        if direction not in ("asc", "desc"):
            raise InvalidQuery(f"Invalid sort_dir: {direction[:40]}")
        if spec.admin_only and not ctx.is_admin:
            raise ForbiddenQuery(f"Only administrators can sort servers by {key}")
        if spec.field is not None and spec.field not in {c for c, _, _ in columns}:
            columns.append((spec.field, direction == "desc", spec.nullable))
    last_desc = columns[-1][1] if columns else True
    columns.append(("id", last_desc, False))
    return columns


def _order(columns: list[tuple[str, bool, bool]]) -> list:
    # NULL is the smallest value whichever the direction, as _after assumes.
    return [F(c).desc(nulls_last=True) if desc else F(c).asc(nulls_first=True) for c, desc, _ in columns]


def _value(row: Instance, column: str) -> Any:
    value: Any = row
    for part in column.split("__"):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _after(columns: list[tuple[str, bool, bool]], values: list[Any]) -> Q:
    """Rows that come after the marker, whose sort keys are ``values``, in the order of ``columns``."""
    after = Q(pk__in=[])
    equal_so_far = Q()
    for (column, desc, nullable), value in zip(columns, values, strict=True):
        if value is None:
            beyond = Q(pk__in=[]) if desc else Q(**{f"{column}__isnull": False})
            same = Q(**{f"{column}__isnull": True})
        else:
            beyond = Q(**{f"{column}__lt" if desc else f"{column}__gt": value})
            if desc and nullable:
                beyond |= Q(**{f"{column}__isnull": True})
            same = Q(**{column: value})
        after |= equal_so_far & beyond
        equal_so_far &= same
    return after


def _scope(ctx: RequestContext, q: ServerQuery) -> tuple[str, dict]:
    """Whose servers a query reads: every project's (admins asking for all tenants) or the caller's."""
    if q.all_tenants and ctx.is_admin:
        return "all", {}
    return "project", {"project_id": ctx.project.pk}


def _marker_row(scope: str, *, key: uuid.UUID, project_id=None) -> QuerySet:
    # Any server the caller can see marks a place in the order, deleted or not, even one the filters leave out.
    rows = Instance.objects.filter(uuid=key)
    if scope == "project":
        rows = rows.filter(project_id=project_id)
    return SHOWN_COLUMNS.values_list(rows[:1])


def _unfiltered_page(shape: tuple, *, project_id=None, **marker_values) -> QuerySet:
    scope, columns, marker_nulls, limit = shape
    rows = Instance.objects.exclude(vm_state=VmState.DELETED)
    if scope == "project":
        rows = rows.filter(project_id=project_id)
    if marker_nulls is not None:
        values = [None if null else marker_values[f"m{n}"] for n, null in enumerate(marker_nulls)]
        rows = rows.filter(_after(list(columns), values))
    return SHOWN_COLUMNS.values_list(rows.order_by(*_order(list(columns)))[: limit + 1])


_MARKER_QUERY = CompiledQuery(_marker_row)
_UNFILTERED_PAGE_QUERY = CompiledQuery(_unfiltered_page)
_NO_FILTERS = ServerQuery()


def _unfiltered(q: ServerQuery) -> bool:
    """Whether ``q`` filters nothing: only its scope, order, page size and marker can differ from none."""
    bare = replace(q, all_tenants=False, sort=[], limit=_NO_FILTERS.limit, marker=None, api_version=(2, 1))
    return bare == _NO_FILTERS


def _marker_values(ctx: RequestContext, q: ServerQuery, columns: list[tuple[str, bool, bool]]) -> list[Any]:
    try:
        key = uuid.UUID(q.marker)
    except ValueError:
        raise InvalidQuery(f"marker [{q.marker[:64]}] not found") from None
    scope, values = _scope(ctx, q)
    rows = _MARKER_QUERY.rows(scope, key=key, **values)
    if not rows:
        raise InvalidQuery(f"marker [{q.marker[:64]}] not found")
    marker = SHOWN_COLUMNS.instances(rows)[0]
    return [_value(marker, column) for column, _, _ in columns]


def server_page(ctx: RequestContext, q: ServerQuery) -> tuple[list[Instance], bool]:
    """One page of servers and whether more follow it.

    The first page of a query that filters nothing (the clients' plain listing) is SQL built once per
    process for each scope, order and page size. A page after a marker is built for each request: the
    marker's keys each appear twice in its SQL, which ``CompiledQuery`` does not take for a value."""
    columns = _sort_columns(ctx, q)
    marker = None if q.marker is None else _marker_values(ctx, q, columns)
    if _unfiltered(q):
        scope, values = _scope(ctx, q)
        nulls = None if marker is None else tuple(value is None for value in marker)
        if marker is not None:
            values.update({f"m{n}": value for n, value in enumerate(marker) if value is not None})
        shape = (scope, tuple(columns), nulls, q.limit)
        page = SHOWN_COLUMNS.instances(_UNFILTERED_PAGE_QUERY.rows(shape, **values))
    else:
        rows = _filtered(ctx, q)
        if marker is not None:
            rows = rows.filter(_after(columns, marker))
        rows = rows.order_by(*_order(columns))[: q.limit + 1]
        try:
            with transaction.atomic():
                page = instances_from(SHOWN_COLUMNS, rows)
        except DatabaseError:
            # A pattern the database's regular expressions do not accept (they differ from Python's).
            raise InvalidQuery("Invalid regular expression in a filter.") from None
    more = len(page) > q.limit
    page = page[: q.limit]
    with_tags_and_volumes(page)
    return with_latest_faults(page), more
