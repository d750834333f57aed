"""List queries of the networking API: filters by attribute (a repeated key is OR), ``fields``,
``sort_key``/``sort_dir`` and ``limit``/``marker``/``page_reverse`` with ``<collection>_links``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Q, QuerySet

from portal.services.network_errors import BadRequest

RESERVED = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}
# Tags are not kept: filtering by a tag finds nothing, excluding by one excludes nothing.
TAG_FILTERS = {"tags", "tags-any"}
NOT_TAG_FILTERS = {"not-tags", "not-tags-any"}
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


@dataclass(frozen=True)
class Attr:
    orm: str  # the model field (or lookup) the attribute filters and sorts on
    kind: str = "str"  # str, bool, int, uuid, ip
    admin_only: bool = False
    sortable: bool = True


def _convert(name: str, attr: Attr, value: str):
    if attr.kind == "bool":
        lowered = value.lower()
        if lowered in TRUE:
            return True
        if lowered in FALSE:
            return False
        raise BadRequest(f"Invalid input for {name[:64]}. Reason: '{value[:32]}' is not a valid boolean value.")
    if attr.kind == "int":
        try:
            return int(value)
        except ValueError:
            raise BadRequest(f"Invalid input for {name[:64]}. Reason: '{value[:32]}' is not an integer.") from None
    if attr.kind == "status":  # a network's status is its admin state
        return {"ACTIVE": True, "DOWN": False}.get(value)
    if attr.kind == "uuid":
        try:
            return uuid.UUID(value)
        except ValueError:
            return None  # matches nothing
    return value


def apply_filters(rows: QuerySet, params, attrs: dict[str, Attr], *, is_admin: bool, special=None) -> QuerySet:
    """``rows`` narrowed by every attribute filter in ``params``; ``special`` maps an attribute to a function
    (values -> Q) for those that are not a plain field (a port's ``fixed_ips``)."""
    special = special or {}
    unknown = [k for k in params if k not in RESERVED and k not in attrs and k not in special]
    unknown = [k for k in unknown if k not in TAG_FILTERS | NOT_TAG_FILTERS]
    if unknown:
        raise BadRequest(f"[{', '.join(sorted(u[:64] for u in unknown))}] is invalid attribute for filtering")
    for key in params:
        if key in RESERVED or key in NOT_TAG_FILTERS:
            continue
        values = params.getlist(key)
        if key in TAG_FILTERS:
            rows = rows.none()
        elif key in special:
            rows = rows.filter(special[key](values)).distinct()
        else:
            attr = attrs[key]
            if attr.admin_only and not is_admin:
                continue
            converted = [_convert(key, attr, v) for v in values]
            query = Q()
            for value in converted:
                if value is None:
                    continue
                query |= Q(**{attr.orm: value})
            rows = rows.filter(query) if query else rows.none()
    return rows


def apply_sort(rows: QuerySet, params, attrs: dict[str, Attr], *, is_admin: bool) -> QuerySet:
    keys, dirs = params.getlist("sort_key"), params.getlist("sort_dir")
    if dirs and len(dirs) != len(keys):
        raise BadRequest("The number of sort_keys and sort_dirs must be same")
    ordering = []
    for index, key in enumerate(keys):
        attr = attrs.get(key)
        if attr is None or not attr.sortable or (attr.admin_only and not is_admin):
            raise BadRequest(f"{key[:64]} is an invalid attribute for sort_key")
        direction = dirs[index] if dirs else "asc"
        if direction not in ("asc", "desc"):
            raise BadRequest(f"{direction[:16]} is an invalid value for sort_dir, valid values are 'asc' and 'desc'")
        ordering.append(("-" if direction == "desc" else "") + attr.orm)
    if not keys:
        ordering = ["created_at"]
    if "id" not in ordering and "-id" not in ordering:
        ordering.append("-id" if ordering and ordering[-1].startswith("-") and keys else "id")
    return rows.order_by(*ordering)


def paginate(rows: QuerySet, params, base_url: str, collection: str) -> tuple[list, list[dict]]:
    """One page of ``rows`` (already sorted) and its links. Without ``limit``, everything and no links."""
    limit_text = params.get("limit")
    if limit_text in (None, ""):
        return list(rows), []
    try:
        limit = int(limit_text)
    except ValueError:
        raise BadRequest(f"Invalid input for limit. Reason: '{limit_text[:32]}' is not an integer.") from None
    if limit < 0:
        raise BadRequest(f"Limit must be an integer 0 or greater and not '{limit}'")
    reverse = params.get("page_reverse", "false").lower() in TRUE
    ids = list(rows.values_list("pk", flat=True))
    marker = params.get("marker")
    position = None
    if marker:
        try:
            position = ids.index(uuid.UUID(marker))
        except ValueError:
            raise BadRequest(f"Marker {marker[:64]} could not be found.") from None
    if limit == 0:
        return list(rows), []
    if reverse:
        end = position if position is not None else len(ids)
        start = max(0, end - limit)
        more_before, more_after = start > 0, position is not None
    else:
        start = position + 1 if position is not None else 0
        end = start + limit
        more_before, more_after = position is not None, end < len(ids)
    page_ids = ids[start:end]
    found = {row.pk: row for row in rows.filter(pk__in=page_ids)}
    page = [found[pk] for pk in page_ids if pk in found]
    links = []
    kept = [(k, v) for k in params for v in params.getlist(k) if k not in ("marker", "page_reverse", "limit")]
    if page and more_after:
        links.append({"rel": "next", "href": _href(base_url, kept, limit, page[-1].pk, False)})
    if page and more_before:
        links.append({"rel": "previous", "href": _href(base_url, kept, limit, page[0].pk, True)})
    return page, links


def _href(base_url: str, kept: list, limit: int, marker, reverse: bool) -> str:
    query = [*kept, ("limit", str(limit)), ("marker", str(marker))]
    if reverse:
        query.append(("page_reverse", "True"))
    return f"{base_url}?{urlencode(query)}"


def select_fields(body: dict, params) -> dict:
    fields = [f for f in params.getlist("fields") if f]
    if not fields:
        return body
    return {k: v for k, v in body.items() if k in fields}
