"""``/os-instance_usage_audit_log`` (admins): the audit of the compute API's periodic usage task.

This cloud runs no periodic usage audit, so the answers are the compute API's when
``instance_usage_audit`` is off: for the last completed audit period (a calendar month, the compute API's
default ``instance_usage_audit_period``) before now, or before the timestamp in the path, every compute
host (disabled ones too) has not run, with no instances and no errors.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import BadRequest
from portal.selectors.compute_hosts import compute_hosts


def _month_start(year: int, month: int) -> datetime:
    """The first moment of ``month`` of ``year``; a month below 1 is a month of the year before."""
    if month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1)


def last_completed_month(before: datetime) -> tuple[datetime, datetime]:
    """The last whole calendar month that ended strictly before ``before`` (naive UTC): its begin and end."""
    end = _month_start(before.year, before.month)
    if end >= before:
        end = _month_start(before.year, before.month - 1)
    return _month_start(end.year, end.month - 1), end


def parse_before(value: str) -> datetime:
    """A timestamp as the compute API takes it in the path: ``YYYY-MM-DD HH:MM:SS[.ffffff]``."""
    layout = "%Y-%m-%d %H:%M:%S.%f" if "." in value else "%Y-%m-%d %H:%M:%S"
    try:
        return datetime.strptime(value, layout)
    except ValueError:
        raise BadRequest(f"Invalid timestamp for date {value[:64]}") from None


def audit_log(before: datetime) -> dict:
    try:
        begin, end = last_completed_month(before)
    except ValueError:
        raise BadRequest(f"Invalid timestamp for date {before}") from None
    hosts = sorted(compute_hosts().values_list("name", flat=True))
    return {
        "period_beginning": str(begin),
        "period_ending": str(end),
        "num_hosts": len(hosts),
        "num_hosts_done": 0,
        "num_hosts_running": 0,
        "num_hosts_not_run": len(hosts),
        "hosts_not_run": hosts,
        "total_instances": 0,
        "total_errors": 0,
        "overall_status": f"{'ALL' if not hosts else f'0 of {len(hosts)}'} hosts done. 0 errors.",
        "log": {},
    }


class UsageAuditLogListView(ComputeAPIView):
    def get(self, request):
        self.require_admin()
        now = timezone.now().astimezone(UTC).replace(tzinfo=None)
        return Response({"instance_usage_audit_logs": audit_log(now)})


class UsageAuditLogView(ComputeAPIView):
    def get(self, request, before: str):
        self.require_admin()
        return Response({"instance_usage_audit_log": audit_log(parse_before(before))})
