"""Plain builders for scheduler snapshots: sensible defaults, override only what a test is about."""

from __future__ import annotations

from typing import Any

from scheduler import HostState, RequestSpec, SchedulerConfig
from scheduler.types import FilterContext

NOW = 1_700_000_000.0


def make_host(name: str = "compute-1", **overrides: Any) -> HostState:
    values: dict[str, Any] = {
        "host": name,
        "enabled": True,
        "last_heartbeat": NOW - 5,
        "vcpus_total": 8,
        "vcpus_used": 0,
        "memory_mb_total": 16384,
        "memory_mb_used": 0,
        "disk_gb_total": 200,
        "disk_gb_used": 0,
    }
    values.update(overrides)
    return HostState(**values)


def make_spec(**overrides: Any) -> RequestSpec:
    values: dict[str, Any] = {
        "instance_uuid": "6f1e0c3a-2b9d-4c55-9a57-0d6b0e2f8a11",
        "vcpus": 2,
        "memory_mb": 2048,
        "root_gb": 20,
    }
    values.update(overrides)
    return RequestSpec(**values)


def make_context(now: float = NOW, **config: Any) -> FilterContext:
    return FilterContext(now, SchedulerConfig(**config))
