"""Milliseconds per scheduling decision with the default filters and weighers, at 100, 1,000 and 10,000
hosts (``--hosts`` to choose), on a seeded synthetic cloud. One JSON line per host count.

A decision is what the conductor asks for: every enabled filter, every weigher, the best host and the
alternates sent with the build (``limit=3``). Building the snapshots is the database's part and is not
timed here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on the path, and this file would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.support.scheduler_hosts import NOW, REQUEST, synthetic_hosts  # noqa: E402
from scheduler import HostState, RequestSpec, SchedulerConfig, select_hosts  # noqa: E402
from scheduler.aggregates import allocation_ratio, availability_zone, max_instances, merge_metadata  # noqa: E402

DEFAULT_COUNTS = (100, 1000, 10000)


def host_states(hosts: list[dict]) -> list[HostState]:
    states = []
    for host in hosts:
        metadata = merge_metadata(host["aggregates"])
        states.append(
            HostState(
                host=host["host"],
                enabled=host["enabled"],
                last_heartbeat=NOW - host["heartbeat_age"],
                vcpus_total=host["vcpus"],
                vcpus_used=host["vcpus_used"],
                memory_mb_total=host["memory_mb"],
                memory_mb_used=host["memory_mb_used"],
                disk_gb_total=host["disk_gb"],
                disk_gb_used=host["disk_gb_used"],
                cpu_allocation_ratio=allocation_ratio(None, metadata, "cpu_allocation_ratio", 4.0),
                ram_allocation_ratio=allocation_ratio(None, metadata, "ram_allocation_ratio", 1.0),
                disk_allocation_ratio=allocation_ratio(None, metadata, "disk_allocation_ratio", 1.0),
                num_instances=host["num_instances"],
                availability_zone=availability_zone(metadata, "nova"),
                aggregate_metadata=metadata,
                hypervisor_type=host["hypervisor_type"],
                hypervisor_version=host["hypervisor_version"],
                cpu_arch=host["cpu_arch"],
                failed_builds=host["failed_builds"],
                max_instances=max_instances(metadata),
            )
        )
    return states


def request_spec() -> RequestSpec:
    return RequestSpec(
        instance_uuid="00000000-0000-4000-8000-000000000001",
        vcpus=REQUEST["vcpus"],
        memory_mb=REQUEST["memory_mb"],
        root_gb=REQUEST["root_gb"],
        project_id=REQUEST["project_id"],
        flavor_extra_specs=REQUEST["flavor_extra_specs"],
        image_properties=REQUEST["image_properties"],
    )


def measure(count: int, runs: int | None = None, config: SchedulerConfig | None = None) -> dict:
    states = host_states(synthetic_hosts(count))
    spec = request_spec()
    config = config or SchedulerConfig()
    runs = runs or max(20, min(500, 200_000 // count))
    select_hosts(states, spec, now=NOW, config=config, limit=3)  # warm-up
    timings = []
    chosen = None
    for _ in range(runs):
        started = time.perf_counter()
        selection = select_hosts(states, spec, now=NOW, config=config, limit=3)
        timings.append((time.perf_counter() - started) * 1000)
        chosen = selection.hosts[0].host
    timings.sort()
    return {
        "scenario": "scheduler_decision",
        "hosts": count,
        "runs": runs,
        "median_ms": round(statistics.median(timings), 3),
        "p95_ms": round(timings[max(0, int(len(timings) * 0.95) - 1)], 3),
        "filters": len(config.enabled_filters),
        "weighers": sum(1 for multiplier in config.weighers.values() if multiplier),
        "passing_hosts": selection.explanation.remaining,
        "chosen": chosen,
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, action="append", help="host count (repeatable)")
    parser.add_argument("--runs", type=int, help="decisions to time per host count")
    args = parser.parse_args()
    for count in args.hosts or DEFAULT_COUNTS:
        print(json.dumps(measure(count, args.runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
