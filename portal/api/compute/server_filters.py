"""The query string of ``GET /servers`` as the compute API defines it, per microversion and role.

Members may filter by ``name``, ``status``, ``image``, ``flavor``, ``ip``, ``ip6`` (2.5), ``changes-since``,
``changes-before`` (2.66), ``reservation_id``, the tag filters (2.26), ``locked`` (2.73), from 2.83 by
``availability_zone``, ``config_drive``, ``key_name``, ``created_at``, ``launched_at``, ``terminated_at``,
``power_state``, ``task_state``, ``vm_state``, ``progress`` and ``user_id``, and from 2.90 by ``hostname``;
every other filter is an admin's, and the compute API ignores it for others. Before 2.75 unknown parameters
are ignored; from 2.75 they are 400. Some filters are a regular expression over the attribute's text, as
the compute API matches them (``access_ip_v4``, ``description``, ``launched_at``, …; the selector's
``REGEX_FILTERS``).
"""

from __future__ import annotations

import uuid
from datetime import UTC

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal.api.errors import BadRequest, Forbidden
from portal.selectors.server_list import REGEX_FILTERS, ServerQuery
from portal.states import states_for_status

from .params import MAX_LIMIT, bool_param, int_param

# Admin filters and the columns they compare exactly.
_ADMIN_EXACT_FILTERS = {
    "host": "host__name",
    "node": "host__name",
    "availability_zone": "availability_zone",
    "key_name": "key_name",
    "user_id": "user__username",
    "vm_state": "vm_state",
    "task_state": "task_state",
    "uuid": "uuid",
    "launch_index": "launch_index",
    "locked_by": "locked_by",
}
# The admin filters members may use from 2.83 (and ``hostname`` from 2.90), as the compute API allows.
_MEMBER_FILTERS_283 = {
    "availability_zone",
    "config_drive",
    "key_name",
    "created_at",
    "launched_at",
    "terminated_at",
    "power_state",
    "task_state",
    "vm_state",
    "progress",
    "user_id",
}
# Admin filters of the compute API this cloud does not apply (relations it filters by exactly, or
# attributes not kept here): asking for one is 400 rather than a silently unfiltered list.
_UNSUPPORTED_FILTERS = {
    "auto_disk_config",
    "soft_deleted",
    "image_ref",
    "block_device_mapping",
    "services",
    "metadata",
    "system_metadata",
    "info_cache",
    "security_groups",
    "pci_devices",
}
_MEMBER_PARAMS = {
    "name",
    "status",
    "image",
    "flavor",
    "ip",
    "ip6",
    "changes-since",
    "changes-before",
    "reservation_id",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "locked",
    "all_tenants",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
}
_ADMIN_PARAMS = {
    *_ADMIN_EXACT_FILTERS,
    *REGEX_FILTERS,
    "config_drive",
    "power_state",
    "project_id",
    "tenant_id",
    "deleted",
    "hostname",
}
# Sort keys the compute API accepts but ignores before 2.75 (and refuses from 2.75).
IGNORED_SORT_KEYS = {
    "architecture",
    "cell_name",
    "cleaned",
    "default_ephemeral_device",
    "default_swap_device",
    "deleted",
    "deleted_at",
    "disable_terminate",
    "ephemeral_gb",
    "ephemeral_key_uuid",
    "id",
    "key_data",
    "launched_on",
    "locked",  # until 2.73, when it becomes a sort key
    "memory_mb",
    "os_type",
    "reservation_id",
    "root_gb",
    "shutdown_terminate",
    "user_data",
    "vcpus",
    "vm_mode",
}


def timestamp(request, name: str):
    value = request.GET.get(name)
    if value is None:
        return None
    try:
        parsed = parse_datetime(value.strip().replace(" ", "+"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadRequest(f"Invalid {name} value: {value[:40]!r} is not an ISO 8601 time.")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


def _tag_list(request, name: str) -> list[str]:
    values = []
    for value in request.GET.getlist(name):
        values += [tag for tag in value.split(",") if tag]
    return values


def member_filters(request, ctx) -> set[str]:
    """The admin filters this caller may use at this microversion: all of them for admins."""
    if ctx.is_admin:
        return _ADMIN_PARAMS | _UNSUPPORTED_FILTERS
    version = request.api_version
    allowed = set(_MEMBER_FILTERS_283) if version >= "2.83" else set()
    if version >= "2.90":
        allowed.add("hostname")
    return allowed


def _check_names(request, ctx) -> None:
    version = request.api_version
    params = set(request.GET)
    unsupported = sorted(params & _UNSUPPORTED_FILTERS & member_filters(request, ctx))
    if unsupported:
        raise BadRequest(f"Filtering servers by {', '.join(unsupported)} is not supported.")
    if version >= "2.75":
        unknown = sorted(params - _MEMBER_PARAMS - _ADMIN_PARAMS - _UNSUPPORTED_FILTERS)
        if unknown:
            raise BadRequest(f"Invalid input for query parameters: {', '.join(unknown)} not allowed.")


def _sort(request, query: ServerQuery) -> None:
    version = request.api_version
    keys = [k.strip() for k in request.GET.getlist("sort_key")]
    dirs = [d.strip().lower() for d in request.GET.getlist("sort_dir")]
    if len(dirs) > max(len(keys), 1):
        raise BadRequest("There are more sort_dir values than sort_key values.")
    if not keys:
        if dirs:
            query.sort = [("created_at", dirs[0])]
        return
    dirs += [dirs[-1] if dirs else "desc"] * (len(keys) - len(dirs))
    for key, direction in zip(keys, dirs, strict=True):
        if key in IGNORED_SORT_KEYS and not (key == "locked" and version >= "2.73"):
            if version >= "2.75":
                raise BadRequest(f"Invalid sort_key: {key[:40]}")
            continue
        query.sort.append((key, direction))


def server_query(request, ctx) -> ServerQuery:
    """The list request, parsed and checked; 400/403 in the API's envelope for what cannot be used."""
    version = request.api_version
    params = request.GET
    _check_names(request, ctx)
    query = ServerQuery(api_version=(version.major, version.minor))
    if "all_tenants" in params:
        all_tenants = params.get("all_tenants") == "" or bool_param(request, "all_tenants", default=False)
        if all_tenants and not ctx.is_admin:
            raise Forbidden("Policy doesn't allow all_tenants to be used: admin only.")
        query.all_tenants = bool(all_tenants)
    usable = member_filters(request, ctx)
    if ctx.is_admin:
        # As in Nova, a project filter counts only with all_tenants; without it an admin lists their own.
        project = params.get("project_id") or params.get("tenant_id")
        if project and query.all_tenants:
            query.project_id = project
        if bool_param(request, "deleted", default=False):
            query.deleted = True
    if usable:
        if "hostname" in usable:
            query.hostname = params.get("hostname") or None
        for name, column in _ADMIN_EXACT_FILTERS.items():
            values = params.getlist(name)
            if not values or name not in usable:
                continue
            try:
                if name == "uuid":
                    values = [uuid.UUID(v) for v in values]
                elif name == "launch_index":
                    values = [int(v) for v in values]
            except ValueError:
                raise BadRequest(f"Invalid {name} filter: {values[0][:40]}") from None
            query.exact[column] = values
        for name in sorted(REGEX_FILTERS & usable & set(params)):
            query.regex[name] = params[name]
        if "config_drive" in params and "config_drive" in usable:
            query.config_drive = bool_param(request, "config_drive")
        if "power_state" in params and "power_state" in usable:
            try:
                query.exact["power_state"] = [int(v) for v in params.getlist("power_state")]
            except ValueError:
                raise BadRequest("Invalid power_state filter: expected integers.") from None
    query.name = params.get("name") or None
    statuses = [s for s in params.getlist("status") if s]
    if statuses and version < "2.38":
        # Before 2.38 an unknown status matched nothing instead of being refused.
        statuses = [s for s in statuses if states_for_status(s) is not None] or ["SOFT_DELETED"]
    query.statuses = statuses
    if params.get("flavor"):
        query.flavor_id = params["flavor"].rstrip("/").rsplit("/", 1)[-1]
    if params.get("image"):
        query.image_id = params["image"]
    if params.get("reservation_id"):
        query.exact["reservation_id"] = params["reservation_id"]
    query.changes_since = timestamp(request, "changes-since")
    if version >= "2.66":
        query.changes_before = timestamp(request, "changes-before")
        if query.changes_since and query.changes_before and query.changes_before < query.changes_since:
            raise BadRequest("The value of changes-since must be less than or equal to changes-before.")
    if version >= "2.26":
        query.tags = _tag_list(request, "tags")
        query.tags_any = _tag_list(request, "tags-any")
        query.not_tags = _tag_list(request, "not-tags")
        query.not_tags_any = _tag_list(request, "not-tags-any")
    query.ip = params.get("ip") or None
    if version >= "2.5" or ctx.is_admin:
        query.ip6 = params.get("ip6") or None
    if version >= "2.73" and "locked" in params:
        query.locked = bool_param(request, "locked")
    _sort(request, query)
    limit = int_param(request, "limit", minimum=0)
    # As in Nova, limit=0 asks for an empty page; no limit, or one past the maximum, for the maximum.
    query.limit = MAX_LIMIT if limit is None or limit > MAX_LIMIT else limit
    query.marker = params.get("marker")
    return query
