"""Usage of a period, as ``os-simple-tenant-usage`` reports it: every server that ran during the period,
with the hours it ran within it and its flavor's sizes, summed per project.

A server counts from ``launched_at`` (servers never launched count nothing) until ``terminated_at`` or
the end of the period. Hours are real numbers, as in the compute API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from portal.models import Instance


@dataclass
class ServerUsage:
    instance: Instance
    hours: float
    started_at: datetime
    ended_at: datetime | None
    state: str
    uptime: int  # seconds from launch to termination, or to now

    @property
    def local_gb(self) -> int:
        return self.instance.root_gb + self.instance.ephemeral_gb


@dataclass
class ProjectUsage:
    project_id: str
    start: datetime
    stop: datetime
    servers: list[ServerUsage]
    total_hours: float = 0.0
    total_vcpus_usage: float = 0.0
    total_memory_mb_usage: float = 0.0
    total_local_gb_usage: float = 0.0


def instances_in_period(start: datetime, stop: datetime, project_id: str | None = None) -> QuerySet:
    """Servers launched before ``stop`` and not terminated before ``start``, oldest first."""
    query = Instance.objects.filter(launched_at__lt=stop).filter(
        Q(terminated_at__isnull=True) | Q(terminated_at__gt=start)
    )
    if project_id is not None:
        query = query.filter(project_id=project_id)
    return query.only(
        "uuid",
        "name",
        "project_id",
        "flavor_name",
        "vcpus",
        "memory_mb",
        "root_gb",
        "ephemeral_gb",
        "vm_state",
        "launched_at",
        "terminated_at",
        "created_at",
    ).order_by("created_at", "id")


def _hours(instance: Instance, start: datetime, stop: datetime) -> float:
    launched, terminated = instance.launched_at, instance.terminated_at
    if launched is None or launched > stop or (terminated is not None and terminated < start):
        return 0.0
    end = min(stop, terminated) if terminated is not None else stop
    return (end - max(launched, start)).total_seconds() / 3600.0


def server_usage(instance: Instance, start: datetime, stop: datetime, now: datetime | None = None) -> ServerUsage:
    now = now or timezone.now()
    ended = instance.terminated_at
    uptime = (ended or now) - instance.launched_at
    return ServerUsage(
        instance=instance,
        hours=_hours(instance, start, stop),
        started_at=instance.launched_at,
        ended_at=ended,
        state="terminated" if ended else instance.vm_state,
        uptime=int(uptime.total_seconds()),
    )


def project_usages(instances, start: datetime, stop: datetime) -> list[ProjectUsage]:
    """Sum per project, in the order the projects first appear among ``instances``."""
    usages: dict[str, ProjectUsage] = {}
    now = timezone.now()
    for instance in instances:
        usage = server_usage(instance, start, stop, now)
        summary = usages.setdefault(
            instance.project_id, ProjectUsage(project_id=instance.project_id, start=start, stop=stop, servers=[])
        )
        summary.servers.append(usage)
        summary.total_hours += usage.hours
        summary.total_vcpus_usage += instance.vcpus * usage.hours
        summary.total_memory_mb_usage += instance.memory_mb * usage.hours
        summary.total_local_gb_usage += usage.local_gb * usage.hours
    return list(usages.values())
