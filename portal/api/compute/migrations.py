"""``GET /os-migrations`` (admins): every move of a server, newest first.

Filters: ``host`` (source or destination), ``source_compute``, ``status``, ``instance_uuid``,
``migration_type`` (``resize``, ``migration``); ``hidden`` is accepted and ignored (nothing is hidden).
From 2.23 each row has ``migration_type``; from 2.59 ``uuid``, ``limit``/``marker`` (a migration's
uuid) and ``changes-since``; from 2.66 ``changes-before``; from 2.80 ``user_id`` and ``project_id``, as
rows and filters (the user who asked for the move, and the server's project).
"""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest
from portal.models import Migration
from portal.selectors.users import api_user_id, user_by_api_id

from .links import collection_next
from .params import paginate
from .times import naive_iso

_FILTERS = {
    "source_compute": "source_host__name",
    "status": "status",
    "instance_uuid": "instance__uuid",
    "migration_type": "migration_type",
}


def _time_param(request, name: str):
    value = request.GET.get(name)
    if value is None:
        return None
    parsed = parse_datetime(value.replace(" ", "+"))
    if parsed is None:
        raise BadRequest(f"Invalid input for query parameter {name}: {value[:40]!r} is not a date-time.")
    return parsed


def migration_view(migration: Migration, version) -> dict:
    dest = migration.dest_host.name if migration.dest_host else None
    body = {
        "id": migration.pk,
        "created_at": naive_iso(migration.created_at),
        "updated_at": naive_iso(migration.updated_at),
        "dest_compute": dest,
        "dest_host": dest,
        "dest_node": dest,
        "source_compute": migration.source_host.name,
        "source_node": migration.source_host.name,
        "instance_uuid": str(migration.instance.uuid),
        "old_instance_type_id": migration.old_flavor.get("flavor_id"),
        "new_instance_type_id": migration.new_flavor.get("flavor_id"),
        "status": migration.status,
    }
    if version >= "2.23":
        body["migration_type"] = migration.migration_type
    if version >= "2.59":
        body["uuid"] = str(migration.uuid)
    if version >= "2.80":
        body.update(owner_fields(migration))
    return body


def owner_fields(migration: Migration) -> dict:
    """2.80: who asked for the move, and the project of the server moved."""
    return {"user_id": api_user_id(migration.user), "project_id": migration.project_id}


class MigrationListView(ComputeAPIView):
    def get(self, request):
        self.require_admin()
        version = request.api_version
        query = Migration.objects.select_related("instance", "source_host", "dest_host", "user")
        for param, field in _FILTERS.items():
            value = request.GET.get(param)
            if value:
                if param == "migration_type" and value not in Migration.Type.values:
                    return Response({"migrations": []})
                query = query.filter(**{field: value})
        if request.GET.get("host"):
            host = request.GET["host"]
            query = query.filter(source_host__name=host) | query.filter(dest_host__name=host)
        if version >= "2.59":
            since = _time_param(request, "changes-since")
            if since is not None:
                query = query.filter(updated_at__gte=since)
        if version >= "2.80":
            if request.GET.get("user_id"):
                user = user_by_api_id(request.GET["user_id"])
                query = query.filter(user=user) if user is not None else query.none()
            if request.GET.get("project_id"):
                query = query.filter(project_id=request.GET["project_id"])
        if version >= "2.66":
            before = _time_param(request, "changes-before")
            if before is not None:
                query = query.filter(updated_at__lte=before)
        query = query.order_by("-created_at", "-id")
        if version < "2.59":
            return Response({"migrations": [migration_view(m, version) for m in query[:1000]]})
        rows, limit, more = paginate(request, query, marker_field="uuid")
        body = {"migrations": [migration_view(m, version) for m in rows]}
        if more and rows:
            body["migrations_links"] = collection_next("os-migrations", rows[-1].uuid, limit, request)
        return Response(body)
