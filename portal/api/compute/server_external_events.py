"""``POST /os-server-external-events``: what other services tell the compute API about servers (admins;
Nova's default policy asks for its service role, which this cloud folds into admin)."""

from __future__ import annotations

import uuid

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest
from portal.models import Instance
from portal.services.external_events import external_event_accept
from portal.states import VmState

# Each event name, from the microversion that brought it.
_NAMES = {
    "network-changed": "2.1",
    "network-vif-plugged": "2.1",
    "network-vif-unplugged": "2.1",
    "network-vif-deleted": "2.1",
    "volume-extended": "2.51",
    "power-update": "2.76",
    "accelerator-request-bound": "2.82",
    "volume-reimaged": "2.93",
}
_TAG_REQUIRED = {"volume-extended", "power-update", "accelerator-request-bound"}
_STATUSES = ("failed", "completed", "in-progress")


def _invalid(message: str):
    return BadRequest(f"Invalid input for field/attribute events. {message}")


def _check(body, version) -> list[dict]:
    if not isinstance(body, dict) or set(body) != {"events"}:
        raise BadRequest("Invalid input: the body must be an object with only 'events'.")
    events = body["events"]
    if not isinstance(events, list) or not events:
        raise _invalid("Value: must be a non-empty list.")
    names = [name for name, since in _NAMES.items() if version >= since]
    for event in events:
        if not isinstance(event, dict):
            raise _invalid("Each event must be an object.")
        extra = sorted(set(event) - {"name", "server_uuid", "status", "tag"})
        if extra:
            raise _invalid(f"Additional properties are not allowed ({', '.join(extra)}).")
        if event.get("name") not in names:
            raise _invalid(f"Value: {str(event.get('name'))[:64]!r} is not one of {names}.")
        try:
            uuid.UUID(str(event.get("server_uuid")))
        except ValueError:
            raise _invalid(f"Value: {str(event.get('server_uuid'))[:64]!r} is not a 'uuid'.") from None
        if "status" in event and event["status"] not in _STATUSES:
            raise _invalid(f"Value: {str(event['status'])[:64]!r} is not one of {list(_STATUSES)}.")
        tag = event.get("tag")
        if tag is not None and (not isinstance(tag, str) or len(tag) > 255):
            raise _invalid("tag must be a string of at most 255 characters.")
    return events


class ServerExternalEventsView(ComputeAPIView):
    def post(self, request):
        self.require_admin()
        events = _check(request.data, request.api_version)
        found = {
            str(i.uuid): i
            for i in Instance.objects.select_related("host")
            .filter(uuid__in={e["server_uuid"] for e in events})
            .exclude(vm_state=VmState.DELETED)
        }
        answered, status = [], 200
        for event in events:
            out = dict(event)
            out.setdefault("status", "completed")
            instance = found.get(str(uuid.UUID(event["server_uuid"])))
            if instance is None:
                out.update(status="failed", code=404)
            elif event["name"] in _TAG_REQUIRED and event.get("tag") is None:
                out.update(status="failed", code=400)
            elif instance.host_id is None:
                out.update(status="failed", code=422)
            else:
                out.update(status="completed", code=200)
                external_event_accept(ctx=self.ctx, instance=instance, name=event["name"], tag=event.get("tag"))
            if out["code"] != 200:
                status = 207
            answered.append(out)
        return Response({"events": answered}, status=status)
