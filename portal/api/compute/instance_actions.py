"""``/servers/{id}/os-instance-actions`` and ``/servers/{id}/os-instance-actions/{request_id}``.

Shapes per microversion: deleted servers' actions from 2.21; ``updated_at``, ``limit``/``marker`` and
``changes-since`` from 2.58 (``changes-before`` from 2.66); events for everyone from 2.51 (before,
for admins only), their ``traceback`` for admins; ``hostId`` from 2.62, and ``host`` for admins; an
event's ``details`` (what went wrong) for admins from 2.84.
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, NotFound
from portal.selectors.instance_actions import MarkerNotFound, action_get, actions_page, instance_with_history
from portal.selectors.users import api_user_id

from . import validation
from .links import base_url
from .params import MAX_LIMIT, int_param


def _time(value) -> str | None:
    """Instance actions use the compute API's older form: ``2018-04-25T01:26:29.000000``, UTC."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _action(action, instance, version) -> dict:
    body = {
        "action": action.action,
        "instance_uuid": str(instance.uuid),
        "request_id": action.request_id,
        "user_id": api_user_id(action.user),
        "project_id": action.project_id,
        "start_time": _time(action.start_time),
        "message": action.message,
    }
    if version >= "2.58":
        body["updated_at"] = _time(action.updated_at)
    return body


def _host_id(host: str, project_id: str) -> str:
    if not host:
        return ""
    return hashlib.sha224(f"{project_id}{host}".encode()).hexdigest()


def _event(event, instance, version, *, admin: bool) -> dict:
    body = {
        "event": event.event,
        "start_time": _time(event.start_time),
        "finish_time": _time(event.finish_time),
        "result": event.result,
    }
    if admin:
        body["traceback"] = event.details or None
    if version >= "2.62":
        if admin:
            body["host"] = event.host
        body["hostId"] = _host_id(event.host, instance.project_id)
    if version >= "2.84" and admin:
        # What went wrong in a failed step, as Nova's policy shows it: to admins.
        body["details"] = event.details or None
    return body


def _timestamp(request, name: str):
    value = request.GET.get(name)
    if value is None:
        return None
    try:
        parsed = parse_datetime(value.strip().replace(" ", "+"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadRequest(f"Invalid {name} value: {value[:40]!r} is not an ISO 8601 time.")
    return timezone.make_aware(parsed, UTC) if timezone.is_naive(parsed) else parsed


class _ActionsAPIView(ComputeAPIView):
    def server(self, request, server_id):
        instance = instance_with_history(self.ctx, server_id, include_deleted=request.api_version >= "2.21")
        if instance is None:
            raise NotFound(f"Instance {str(server_id)[:64]} could not be found.")
        return instance


class InstanceActionsView(_ActionsAPIView):
    def get(self, request, server_id):
        version = request.api_version
        instance = self.server(request, server_id)
        paging = {}
        if version >= "2.58":
            limit = int_param(request, "limit", minimum=0)
            paging = {
                "limit": MAX_LIMIT if limit is None or limit == 0 or limit > MAX_LIMIT else limit,
                "marker": request.GET.get("marker"),
                "changes_since": _timestamp(request, "changes-since"),
            }
            if version >= "2.66":
                paging["changes_before"] = _timestamp(request, "changes-before")
                since, before = paging["changes_since"], paging["changes_before"]
                if since and before and before < since:
                    raise BadRequest("The value of changes-since must be less than or equal to changes-before.")
        try:
            page, more = actions_page(instance, **paging)
        except MarkerNotFound as exc:
            raise BadRequest(str(exc)) from None
        body = {"instanceActions": [_action(a, instance, version) for a in page]}
        if version >= "2.58" and more and page:
            query = request.GET.copy()
            query["marker"] = page[-1].request_id
            query["limit"] = str(paging["limit"])
            body["links"] = [
                {
                    "rel": "next",
                    "href": f"{base_url()}/v2.1/servers/{instance.uuid}/os-instance-actions?{query.urlencode()}",
                }
            ]
        return Response(body)


class InstanceActionView(_ActionsAPIView):
    def get(self, request, server_id, request_id):
        validation.known_query(request, set(), since="2.102")
        version = request.api_version
        instance = self.server(request, server_id)
        action = action_get(instance, request_id)
        if action is None:
            raise NotFound(f"Action {request_id[:80]} not found")
        body = _action(action, instance, version)
        admin = self.ctx.is_admin
        if admin or version >= "2.51":
            body["events"] = [_event(e, instance, version, admin=admin) for e in action.event_list]
        return Response({"instanceAction": body})
