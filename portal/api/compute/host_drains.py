"""``/os-host-drains`` (admins), an extension: empty a host in one call.

``POST {"drain": {"host": NAME}}`` disables the host and moves each of its servers away (running and
paused ones live-migrated, stopped ones cold-migrated and confirmed), placed by the scheduler with their
group rules; ``GET /os-host-drains[/{uuid}]`` shows progress and a result per server (with the reason
for those that could not move); ``DELETE /os-host-drains/{uuid}`` cancels (the moves under way finish).
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Conflict, NotFound
from portal.ids import is_uuid
from portal.models import ComputeHost, HostDrain, HostDrainItem
from portal.services import drains

from .times import naive_iso


def drain_view(drain: HostDrain, *, items: bool) -> dict:
    rows = list(drain.items.select_related("instance", "migration").order_by("id"))
    counts = {status: 0 for status in HostDrainItem.Status.values}
    for row in rows:
        counts[row.status] += 1
    body = {
        "id": str(drain.uuid),
        "host": drain.host.name,
        "status": drain.status,
        "created_at": naive_iso(drain.created_at),
        "updated_at": naive_iso(drain.updated_at),
        "servers": counts,
    }
    if items:
        body["items"] = [
            {
                "server_id": str(row.instance.uuid),
                "name": row.instance.name,
                "status": row.status,
                "migration_id": row.migration_id,
                "migration_type": row.migration.migration_type if row.migration else None,
                "reason": row.reason or None,
            }
            for row in rows
        ]
    return body


def _drain(drain_id) -> HostDrain:
    drain = HostDrain.objects.select_related("host").filter(uuid=drain_id).first() if is_uuid(drain_id) else None
    if drain is None:
        raise NotFound(f"Drain {str(drain_id)[:64]} could not be found.")
    return drain


class HostDrainListView(ComputeAPIView):
    def get(self, request):
        self.require_admin()
        rows = HostDrain.objects.select_related("host").order_by("-created_at", "-id")[:200]
        return Response({"drains": [drain_view(drain, items=False) for drain in rows]})

    def post(self, request):
        self.require_admin()
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("drain"), dict):
            raise BadRequest("The request body must be an object with a 'drain' object.")
        name = body["drain"].get("host")
        if not isinstance(name, str) or not name:
            raise BadRequest("'host' is a required property.")
        host = ComputeHost.objects.filter(name=name).first()
        if host is None:
            raise NotFound(f"Compute host {name[:64]} could not be found.")
        try:
            drain = drains.drain_start(user=self.ctx.user, host=host)
        except drains.DrainConflict as exc:
            raise Conflict(str(exc)) from None
        return Response({"drain": drain_view(drain, items=True)}, status=202)


class HostDrainView(ComputeAPIView):
    def get(self, request, drain_id):
        self.require_admin()
        return Response({"drain": drain_view(_drain(drain_id), items=True)})

    def delete(self, request, drain_id):
        self.require_admin()
        try:
            drains.drain_cancel(drain=_drain(drain_id))
        except drains.DrainConflict as exc:
            raise Conflict(str(exc)) from None
        return Response(status=202)
