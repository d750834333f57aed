"""Reads of images, scoped to what the caller may see.

A project sees public and community images and its own (whatever their visibility); admins see all.
Deleted images are invisible to everyone. The default list leaves out other projects' community
images, which are found by asking for ``visibility=community`` (or by id).
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce

from django.db import connection
from django.db.models import BigIntegerField, CharField, F, Q, QuerySet, TextField, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce

from portal.auth.context import RequestContext
from portal.models import Image

from .rows import Columns, CompiledQuery, scoped_rows

SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at")
# Nullable sort keys are compared through a non-null stand-in, so keyset pagination needs no NULL logic.
_NULL_STAND_INS = {
    "name": Value(""),
    "container_format": Value(""),
    "disk_format": Value(""),
    "size": Value(-1),
}
VISIBILITY_FILTERS = (*Image.Visibility.values, "all")
_TIME_LOOKUPS = {"gt": "__gt", "gte": "__gte", "eq": "", "neq": "", "lt": "__lt", "lte": "__lte"}


class InvalidQuery(Exception):
    """A list query names an unknown sort key, a bad marker or an impossible filter."""


@dataclass(frozen=True)
class ImageQuery:
    """What a list asks for. The plural filters hold every accepted value (the API's ``in:`` lists)."""

    visibility: str | None = None
    names: Sequence[str] = ()
    statuses: Sequence[str] = ()
    ids: Sequence[uuid.UUID] = ()
    disk_formats: Sequence[str] = ()
    container_formats: Sequence[str] = ()
    owner: str | None = None
    protected: bool | None = None
    tags: Sequence[str] = ()
    size_min: int | None = None
    size_max: int | None = None
    hidden: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    times: Sequence[tuple[str, str, datetime]] = ()  # (created_at|updated_at, gt|gte|eq|neq|lt|lte, moment)
    sort: Sequence[tuple[str, str]] = (("created_at", "desc"),)
    limit: int = 25
    marker: uuid.UUID | None = None


def _readable(ctx: RequestContext) -> Q:
    if ctx.is_admin:
        return Q()
    return Q(visibility__in=[Image.Visibility.PUBLIC, Image.Visibility.COMMUNITY]) | Q(owner_id=ctx.project.pk)


def images_visible_to(*, ctx: RequestContext) -> QuerySet[Image]:
    """Every image the caller may read, including other projects' community images."""
    return Image.objects.exclude(status=Image.Status.DELETED).filter(_readable(ctx))


def parse_image_id(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def image_get(*, ctx: RequestContext, image_id) -> Image | None:
    """The image if the caller may read it; ``None`` for unknown ids, names and other projects' images."""
    parsed = parse_image_id(image_id)
    if parsed is None:
        return None
    rows = scoped_rows(_GOT, ctx, key=parsed)
    return IMAGE_COLUMNS.instances(rows)[0] if rows else None


IMAGE_COLUMNS = Columns(Image)


def _got(scope: str, *, key: uuid.UUID, project_id: str = "") -> QuerySet:
    query = Image.objects.exclude(status=Image.Status.DELETED).filter(pk=key)
    if scope != "admin":
        query = query.filter(
            Q(visibility__in=[Image.Visibility.PUBLIC, Image.Visibility.COMMUNITY]) | Q(owner_id=project_id)
        )
    return IMAGE_COLUMNS.values_list(query)[:1]


# A boot reads its image so: the SQL is built once per process.
_GOT = CompiledQuery(_got)


def _listed(ctx: RequestContext, visibility: str | None) -> QuerySet[Image]:
    visible = images_visible_to(ctx=ctx)
    if visibility is None:
        if ctx.is_admin:
            return visible
        return visible.filter(Q(visibility=Image.Visibility.PUBLIC) | Q(owner_id=ctx.project.pk))
    if visibility == "all":
        return visible
    if visibility not in Image.Visibility.values:
        raise InvalidQuery(f"Invalid visibility value: {visibility[:40]}")
    return visible.filter(visibility=visibility)


def _tag_filter(tag: str) -> Q:
    if connection.features.supports_json_field_contains:
        return Q(tags__contains=[tag])
    # Where JSON containment is unavailable (SQLite), match the element's exact JSON text instead.
    return Q(_tags_text__contains=json.dumps(tag))


def _sort_alias(key: str) -> str:
    return f"_sort_{key}"


def image_list(*, ctx: RequestContext, query: ImageQuery) -> tuple[list[Image], bool]:
    """One page of images and whether more follow, ordered by ``query.sort`` then by id.

    Pagination is by keyset: the page starts after the marker image's position in the sort order, so
    it stays correct however many rows come before it.
    """
    images = _listed(ctx, query.visibility)
    if query.hidden:
        # No image is hidden in this cloud; os_hidden=true asks for hidden images only.
        return [], False
    if query.names:
        images = images.filter(name__in=query.names)
    if query.statuses:
        images = images.filter(status__in=query.statuses)
    if query.ids:
        images = images.filter(pk__in=query.ids)
    if query.disk_formats:
        images = images.filter(disk_format__in=query.disk_formats)
    if query.container_formats:
        images = images.filter(container_format__in=query.container_formats)
    if query.owner is not None:
        images = images.filter(owner_id=query.owner)
    if query.protected is not None:
        images = images.filter(protected=query.protected)
    if query.size_min is not None:
        images = images.filter(size__gte=query.size_min)
    if query.size_max is not None:
        images = images.filter(size__lte=query.size_max)
    if query.tags:
        if not connection.features.supports_json_field_contains:
            images = images.annotate(_tags_text=Cast("tags", TextField()))
        for tag in query.tags:
            images = images.filter(_tag_filter(tag))
    for attribute, operator_name, moment in query.times:
        if attribute not in ("created_at", "updated_at") or operator_name not in _TIME_LOOKUPS:
            raise InvalidQuery(f"Invalid time filter on {attribute[:40]}")
        condition = Q(**{f"{attribute}{_TIME_LOOKUPS[operator_name]}": moment})
        images = images.exclude(condition) if operator_name == "neq" else images.filter(condition)
    for number, (key, value) in enumerate(query.properties.items()):
        alias = f"_property_{number}"
        # The cast makes the comparison a plain text one on every backend (SQLite would compare JSON).
        text = Cast(KeyTextTransform(key, "properties"), TextField())
        images = images.annotate(**{alias: text}).filter(**{alias: value})

    sort = [(key, direction) for key, direction in query.sort]
    for key, direction in sort:
        if key not in SORT_KEYS:
            raise InvalidQuery(
                f"Invalid sort key: {key[:40]}. It must be one of the following: {', '.join(SORT_KEYS)}."
            )
        if direction not in ("asc", "desc"):
            raise InvalidQuery(f"Invalid sort direction: {direction[:40]}")
    if "id" not in [key for key, _ in sort]:
        sort.append(("id", sort[-1][1] if sort else "desc"))
    images = images.annotate(**_sort_values(sort)).order_by(
        *[F(_sort_alias(key)).asc() if direction == "asc" else F(_sort_alias(key)).desc() for key, direction in sort]
    )

    if query.marker is not None:
        marker = (
            images_visible_to(ctx=ctx)
            .filter(pk=query.marker)
            .annotate(**_sort_values(sort))
            .values(*[_sort_alias(key) for key, _ in sort])
            .first()
        )
        if marker is None:
            raise InvalidQuery(f"Invalid marker. Image {query.marker} could not be found.")
        images = images.filter(_after(sort, marker))

    page = list(images[: query.limit + 1])
    return page[: query.limit], len(page) > query.limit


def _sort_values(sort: list[tuple[str, str]]) -> dict:
    values = {}
    for key, _ in sort:
        if key in _NULL_STAND_INS:
            output = BigIntegerField() if key == "size" else CharField()
            values[_sort_alias(key)] = Coalesce(F(key), _NULL_STAND_INS[key], output_field=output)
        else:
            values[_sort_alias(key)] = F(key)
    return values


def _after(sort: list[tuple[str, str]], marker: dict) -> Q:
    """Rows strictly after ``marker`` in the order ``sort``: equal on a prefix, then past it on one key."""
    steps = []
    for position, (key, direction) in enumerate(sort):
        step = Q(**{f"{_sort_alias(key)}__{'gt' if direction == 'asc' else 'lt'}": marker[_sort_alias(key)]})
        for earlier, _ in sort[:position]:
            step &= Q(**{_sort_alias(earlier): marker[_sort_alias(earlier)]})
        steps.append(step)
    return reduce(operator.or_, steps)
