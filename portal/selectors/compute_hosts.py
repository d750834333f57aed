"""Compute hosts as the hypervisors and services APIs show them: resources in use, workload, servers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, F, QuerySet, Sum

from portal.models import ComputeHost, Instance
from portal.states import VmState

from .hosts import claimed_usage


def compute_hosts() -> QuerySet:
    return ComputeHost.objects.order_by("pk")


def compute_host_get(*, pk: int | None = None, uuid: str | None = None, name: str | None = None) -> ComputeHost | None:
    if pk is not None:
        return ComputeHost.objects.filter(pk=pk).first()
    if name is not None:
        return ComputeHost.objects.filter(name=name).first()
    return ComputeHost.objects.filter(uuid=uuid).first()


@dataclass(frozen=True)
class HostUsage:
    vcpus_used: int
    memory_mb_used: int  # including the memory reserved for the host itself
    local_gb_used: int
    running_vms: int
    current_workload: int  # servers with a task under way


def host_usages(host_ids) -> dict[int, HostUsage]:
    """Usage of each host in three queries, whatever the number of hosts."""
    host_ids = list(host_ids)
    claimed = claimed_usage(host_ids)
    busy = dict(
        Instance.objects.filter(host_id__in=host_ids, task_state__isnull=False)
        .exclude(vm_state=VmState.DELETED)
        .values_list("host_id")
        .annotate(n=Count("id"))
    )
    reserved = settings.SCHEDULER["RESERVED_HOST_MEMORY_MB"]
    usages = {}
    for pk in host_ids:
        used = claimed.get(pk) or {}
        usages[pk] = HostUsage(
            vcpus_used=used.get("vcpus") or 0,
            memory_mb_used=(used.get("memory_mb") or 0) + reserved,
            local_gb_used=used.get("disk_gb") or 0,
            running_vms=used.get("count") or 0,
            current_workload=busy.get(pk, 0),
        )
    return usages


def host_servers(host_ids) -> dict[int, list[Instance]]:
    """The servers (not deleted) each host holds, oldest first."""
    servers: dict[int, list[Instance]] = defaultdict(list)
    rows = (
        Instance.objects.filter(host_id__in=list(host_ids))
        .exclude(vm_state=VmState.DELETED)
        .only("uuid", "name", "host_id")
        .order_by("created_at", "id")
    )
    for instance in rows:
        servers[instance.host_id].append(instance)
    return servers


@dataclass(frozen=True)
class ProjectHostUsage:
    project_id: str
    vcpus: int
    memory_mb: int
    disk_gb: int  # root and ephemeral, as the compute API's host view counts them


def host_usage_by_project(host_id: int) -> list[ProjectHostUsage]:
    """What the servers (not deleted) of each project hold on one host, by flavor, in one query."""
    rows = (
        Instance.objects.filter(host_id=host_id)
        .exclude(vm_state=VmState.DELETED)
        .values("project_id")
        .annotate(vcpus=Sum("vcpus"), memory_mb=Sum("memory_mb"), disk_gb=Sum(F("root_gb") + F("ephemeral_gb")))
        .order_by("project_id")
    )
    return [ProjectHostUsage(r["project_id"], r["vcpus"], r["memory_mb"], r["disk_gb"]) for r in rows]
