"""Reads for the admins' host graphs and the fleet page (the samples: ``portal.services.host_graphs``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from portal.models import ComputeHost, HostSample

from .hosts import claimed_usage, host_is_up

# The series of a host's graph, in the order the page draws them.
HOST_SERIES = (
    "vcpus",
    "vcpus_used",
    "memory_mb",
    "memory_mb_used",
    "cpu_used_percent",
    "memory_used_mb",
    "instances",
    "heartbeat_age_seconds",
)
HOST_RANGES = {"hour": 3600, "day": HostSample.SLOTS * HostSample.STEP_SECONDS}


def host_graph(host: ComputeHost, *, seconds: int, now: datetime | None = None) -> dict:
    """The host's samples of the last ``seconds`` (a day at most) a minute apart: ``{"start", "step",
    "series": {name: [value or None]}}``, a point for every minute, None where none was taken."""
    now = now or timezone.now()
    step = HostSample.STEP_SECONDS
    count = max(1, min(HostSample.SLOTS, -(-int(seconds) // step)))
    last = int(now.timestamp()) // step
    first = last - count + 1
    since = datetime.fromtimestamp(first * step, tz=now.tzinfo) - timedelta(microseconds=1)
    by_minute = {
        int(row["at"].timestamp()) // step: row
        for row in HostSample.objects.filter(host=host, at__gt=since).values("at", *HOST_SERIES)
    }
    series: dict[str, list] = {name: [] for name in HOST_SERIES}
    for minute in range(first, last + 1):
        row = by_minute.get(minute)
        for name in HOST_SERIES:
            series[name].append(row[name] if row else None)
    return {"start": first * step, "step": step, "series": series}


@dataclass(frozen=True)
class FleetRow:
    """One host on the fleet page: allocation against capacity, real use, liveness."""

    host: ComputeHost
    up: bool
    instances: int
    vcpus_used: int
    memory_mb_used: int  # allocated, the host's reserve included
    heartbeat_age_seconds: float | None

    @property
    def vcpu_percent(self) -> float | None:
        return _percent(self.vcpus_used, self.host.vcpus)

    @property
    def memory_percent(self) -> float | None:
        return _percent(self.memory_mb_used, self.host.memory_mb)

    @property
    def memory_in_use_percent(self) -> float | None:
        return None if self.host.memory_used_mb is None else _percent(self.host.memory_used_mb, self.host.memory_mb)

    @property
    def vcpu_text(self) -> str:
        return f"{self.vcpus_used} of {self.host.vcpus}"

    @property
    def memory_text(self) -> str:
        return f"{self.memory_mb_used} of {self.host.memory_mb} MB"

    @property
    def cpu_text(self) -> str:
        return "" if self.host.cpu_used_percent is None else f"{self.host.cpu_used_percent:.0f} %"

    @property
    def memory_in_use_text(self) -> str:
        return "" if self.host.memory_used_mb is None else f"{self.host.memory_used_mb} of {self.host.memory_mb} MB"


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def fleet(now: datetime | None = None) -> list[FleetRow]:
    """Every host, by name: two queries whatever the number of hosts."""
    now = now or timezone.now()
    usage = claimed_usage()
    reserved = settings.SCHEDULER["RESERVED_HOST_MEMORY_MB"]
    rows = []
    for host in ComputeHost.objects.order_by("name"):
        used = usage.get(host.pk) or {}
        rows.append(
            FleetRow(
                host=host,
                up=host_is_up(host, now),
                instances=used.get("count") or 0,
                vcpus_used=used.get("vcpus") or 0,
                memory_mb_used=(used.get("memory_mb") or 0) + reserved,
                heartbeat_age_seconds=(now - host.last_heartbeat).total_seconds() if host.last_heartbeat else None,
            )
        )
    return rows
