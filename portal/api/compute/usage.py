"""``/os-simple-tenant-usage`` (every project, admins) and ``/os-simple-tenant-usage/{project_id}``
(that project's readers, and admins): server hours and flavor sizes used over ``start``..``end``.

``limit``/``marker`` (a server's uuid) page over servers from microversion 2.40, with
``tenant_usages_links`` / ``tenant_usage_links``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest, Forbidden
from portal.selectors.usage import instances_in_period, project_usages

from . import validation
from .links import collection_next
from .params import paginate
from .times import naive_iso

_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")


def _moment(text: str | None, now: datetime) -> datetime:
    if not text:
        return now
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest("Invalid datetime string: Datetime is in invalid format") from None
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value


def _period(request) -> tuple[datetime, datetime, bool]:
    now = timezone.now()
    start = _moment(request.GET.get("start"), now)
    stop = _moment(request.GET.get("end"), now)
    # With neither bound the period is the present instant (servers running now, for 0 hours).
    if not start < stop and (request.GET.get("start") or request.GET.get("end")):
        raise BadRequest("Invalid start time. The start time cannot occur after the end time.")
    return start, min(stop, now), request.GET.get("detailed") == "1"


def _server_body(usage) -> dict:
    instance = usage.instance
    return {
        "instance_id": str(instance.uuid),
        "name": instance.name,
        "tenant_id": instance.project_id,
        "flavor": instance.flavor_name,
        "hours": usage.hours,
        "memory_mb": instance.memory_mb,
        "local_gb": usage.local_gb,
        "vcpus": instance.vcpus,
        "started_at": naive_iso(usage.started_at),
        "ended_at": naive_iso(usage.ended_at),
        "state": usage.state,
        "uptime": usage.uptime,
    }


def _usage_body(summary, detailed: bool) -> dict:
    body = {
        "tenant_id": summary.project_id,
        "total_local_gb_usage": summary.total_local_gb_usage,
        "total_vcpus_usage": summary.total_vcpus_usage,
        "total_memory_mb_usage": summary.total_memory_mb_usage,
        "total_hours": summary.total_hours,
        "start": naive_iso(summary.start),
        "stop": naive_iso(summary.stop),
    }
    if detailed:
        body["server_usages"] = [_server_body(s) for s in summary.servers]
    return body


def _page(request, query):
    """The servers of this page: all of them before 2.40, a ``limit``/``marker`` page after."""
    if request.api_version < "2.40":
        return list(query), None
    page, limit, more = paginate(request, query, marker_field="uuid")
    return page, (page[-1].uuid, limit) if more else None


class UsageListView(ComputeAPIView):
    def get(self, request):
        self.require_admin()
        validation.known_query(request, {"start", "end", "detailed", "limit", "marker"}, since="2.75")
        start, stop, detailed = _period(request)
        instances, next_page = _page(request, instances_in_period(start, stop))
        body = {"tenant_usages": [_usage_body(u, detailed) for u in project_usages(instances, start, stop)]}
        if next_page:
            body["tenant_usages_links"] = collection_next("os-simple-tenant-usage", *next_page, request)
        return Response(body)


class ProjectUsageView(ComputeAPIView):
    def get(self, request, tenant_id):
        if tenant_id != self.ctx.project.pk and not self.ctx.is_admin:
            raise Forbidden("Policy doesn't allow os_compute_api:os-simple-tenant-usage:show to be performed.")
        validation.known_query(request, {"start", "end", "limit", "marker"}, since="2.75")
        start, stop, _detailed = _period(request)
        instances, next_page = _page(request, instances_in_period(start, stop, project_id=tenant_id))
        usages = project_usages(instances, start, stop)
        body = {"tenant_usage": _usage_body(usages[0], True) if usages else {}}
        if next_page:
            body["tenant_usage_links"] = collection_next(f"os-simple-tenant-usage/{tenant_id}", *next_page, request)
        return Response(body)
