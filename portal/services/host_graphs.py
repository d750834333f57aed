"""The admins' host graphs: one sample of every host a minute, kept in a ring of a day.

The figures are already central: what is allocated on a host is its instances' flavors (the claims the
scheduler counts), and what it really uses comes with each heartbeat (``ComputeHost.cpu_used_percent``,
``memory_used_mb``). A periodic job (``conductor.record_host_samples``) writes one ``HostSample`` per host
into the slot of the current minute, overwriting the same minute of the day before: a few queries a
minute for the whole cloud, nothing added to the heartbeat, and a table of 1,440 rows per host at most.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.utils import timezone

from portal.models import ComputeHost, HostSample
from portal.selectors.hosts import claimed_usage

_UPDATED = [
    "at",
    "vcpus",
    "vcpus_used",
    "memory_mb",
    "memory_mb_used",
    "cpu_used_percent",
    "memory_used_mb",
    "instances",
    "heartbeat_age_seconds",
]


def sample_slot(moment: datetime) -> int:
    """The ring slot of ``moment``: its minute of the (UTC) day."""
    return int(moment.timestamp()) // HostSample.STEP_SECONDS % HostSample.SLOTS


def host_samples_record(*, now: datetime | None = None) -> int:
    """Sample every host now into its ring: three statements whatever the number of hosts. How many."""
    now = now or timezone.now()
    slot = sample_slot(now)
    reserved = settings.SCHEDULER["RESERVED_HOST_MEMORY_MB"]
    usage = claimed_usage()
    rows = []
    for host in ComputeHost.objects.only(
        "pk", "vcpus", "memory_mb", "last_heartbeat", "cpu_used_percent", "memory_used_mb"
    ):
        used = usage.get(host.pk) or {}
        age = (now - host.last_heartbeat).total_seconds() if host.last_heartbeat else None
        rows.append(
            HostSample(
                host_id=host.pk,
                slot=slot,
                at=now,
                vcpus=host.vcpus,
                vcpus_used=used.get("vcpus") or 0,
                memory_mb=host.memory_mb,
                memory_mb_used=(used.get("memory_mb") or 0) + reserved,
                cpu_used_percent=host.cpu_used_percent,
                memory_used_mb=host.memory_used_mb,
                instances=used.get("count") or 0,
                heartbeat_age_seconds=max(0.0, age) if age is not None else None,
            )
        )
    HostSample.objects.bulk_create(
        rows, batch_size=1000, update_conflicts=True, unique_fields=["host", "slot"], update_fields=_UPDATED
    )
    return len(rows)
