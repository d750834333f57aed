"""``/servers/{id}/migrations`` (admins): the server's live migration in progress, with its progress
(2.23), ``force_complete`` (2.22) and abort (``DELETE``, 2.24)."""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.models import Migration
from portal.services import live_migrations
from portal.services.lifecycle import StateConflict
from portal.states import TaskState

from . import validation
from .migrations import owner_fields
from .servers import get_instance_or_404
from .times import naive_iso


def progress_view(migration: Migration, version) -> dict:
    dest = migration.dest_host.name if migration.dest_host else None
    body = {
        "id": migration.pk,
        "server_uuid": str(migration.instance.uuid),
        "status": migration.status,
        "source_compute": migration.source_host.name,
        "source_node": migration.source_host.name,
        "dest_compute": dest,
        "dest_host": dest,
        "dest_node": dest,
        "created_at": naive_iso(migration.created_at),
        "updated_at": naive_iso(migration.updated_at),
        "memory_total_bytes": migration.memory_total_bytes,
        "memory_processed_bytes": migration.memory_processed_bytes,
        "memory_remaining_bytes": migration.memory_remaining_bytes,
        "disk_total_bytes": migration.disk_total_bytes,
        "disk_processed_bytes": migration.disk_processed_bytes,
        "disk_remaining_bytes": migration.disk_remaining_bytes,
    }
    if version >= "2.59":
        body["uuid"] = str(migration.uuid)
    if version >= "2.80":
        body.update(owner_fields(migration))
    return body


class _MigrationView(ComputeAPIView):
    def require_migrating(self, instance, action: str) -> None:
        """As Nova: an abort or a force-complete of a server with no migration under way is the server's
        state's conflict (409), before any migration is looked up."""
        if instance.task_state != TaskState.MIGRATING:
            raise Conflict(
                f"Cannot '{action}' instance {instance.uuid} while it is in task_state {instance.task_state}"
            )

    def migration(self, instance, migration_id):
        migration = live_migrations.live_migration_for(instance, migration_id)
        if migration is None:
            raise NotFound(f"Migration {str(migration_id)[:64]} for instance {instance.uuid} not found.")
        return migration


class ServerMigrationListView(_MigrationView):
    def get(self, request, server_id):
        validation.known_query(request, set(), since="2.102")
        if request.api_version < "2.23":
            raise NotFound()
        self.require_admin()
        instance = get_instance_or_404(self, server_id)
        rows = (
            Migration.objects.select_related("instance", "source_host", "dest_host")
            .filter(
                instance=instance,
                migration_type=Migration.Type.LIVE_MIGRATION,
                status__in=[Migration.Status.QUEUED, Migration.Status.PREPARING, Migration.Status.RUNNING],
            )
            .order_by("-created_at", "-id")
        )
        return Response({"migrations": [progress_view(m, request.api_version) for m in rows]})


class ServerMigrationView(_MigrationView):
    def get(self, request, server_id, migration_id):
        validation.known_query(request, set(), since="2.102")
        if request.api_version < "2.23":
            raise NotFound()
        self.require_admin()
        instance = get_instance_or_404(self, server_id)
        return Response({"migration": progress_view(self.migration(instance, migration_id), request.api_version)})

    def delete(self, request, server_id, migration_id):
        if request.api_version < "2.24":
            raise NotFound()
        self.require_admin()
        instance = get_instance_or_404(self, server_id)
        self.require_migrating(instance, "live_migrate_abort")
        migration = self.migration(instance, migration_id)
        if migration.status != Migration.Status.RUNNING and request.api_version < "2.65":
            raise BadRequest(
                f"Migration {migration.pk} state of instance {instance.uuid} is {migration.status}. "
                "Cannot abort live migration while the migration is in this state."
            )
        live_migrations.abort(ctx=self.ctx, instance=instance, migration=migration)
        return Response(status=202)


class ServerMigrationActionView(_MigrationView):
    def post(self, request, server_id, migration_id):
        if request.api_version < "2.22":
            raise NotFound()
        body = request.data
        if not isinstance(body, dict) or set(body) != {"force_complete"}:
            raise BadRequest('The request body must be {"force_complete": null}.')
        self.require_admin()
        instance = get_instance_or_404(self, server_id)
        self.require_migrating(instance, "live_migrate_force_complete")
        migration = self.migration(instance, migration_id)
        try:
            live_migrations.force_complete(ctx=self.ctx, instance=instance, migration=migration)
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(status=202)
