"""The synthetic cloud both scheduler benchmarks decide on: seeded, so every run sees the same hosts.

Plain data only (dicts and lists of str/int/float), so the same hosts can be handed as JSON to another
interpreter (Nova's, in its own virtualenv) and turned into that scheduler's own host objects there.
"""

from __future__ import annotations

import random

SEED = 20240611
NOW = 1_700_000_000.0
PROJECT = "bench0000000000000000000000000001"
OTHER_PROJECT = "bench0000000000000000000000000002"

# Host sizes of a typical mixed fleet: (vCPUs, RAM MB, disk GB).
SKUS = [(16, 65536, 500), (32, 131072, 1000), (48, 196608, 2000), (64, 262144, 2000), (96, 393216, 4000)]

# What one boot asks for: an m1.medium-like flavor, an x86_64 image, no hints, no group.
REQUEST = {
    "vcpus": 2,
    "memory_mb": 4096,
    "root_gb": 40,
    "project_id": PROJECT,
    "flavor_extra_specs": {},
    "image_properties": {"hw_architecture": "x86_64", "img_hv_type": "qemu"},
}


def synthetic_hosts(count: int, seed: int = SEED) -> list[dict]:
    """``count`` hosts: 3% down, 1% disabled, 10% aarch64, usage between empty and nearly full, a fifth
    in zone aggregates, 5% reserved for another project, 2% with recent build failures."""
    rng = random.Random(seed * 1_000_003 + count)
    hosts = []
    for index in range(count):
        vcpus, memory_mb, disk_gb = rng.choice(SKUS)
        fill = rng.random() * 0.95
        instances = int(fill * vcpus / 2)
        aggregates = []
        if rng.random() < 0.2:
            aggregates.append({"availability_zone": f"az{rng.randrange(1, 4)}", "ssd": rng.choice(("true", "false"))})
        if rng.random() < 0.05:
            aggregates.append({"filter_tenant_id": OTHER_PROJECT})
        hosts.append(
            {
                "host": f"compute-{index:05d}",
                "enabled": rng.random() >= 0.01,
                "heartbeat_age": 600.0 if rng.random() < 0.03 else rng.uniform(0, 30),
                "vcpus": vcpus,
                "vcpus_used": instances * 2,
                "memory_mb": memory_mb,
                "memory_mb_used": int(fill * memory_mb),
                "disk_gb": disk_gb,
                "disk_gb_used": instances * 40,
                "num_instances": instances,
                "failed_builds": rng.choice((1, 2, 3)) if rng.random() < 0.02 else 0,
                "cpu_arch": "aarch64" if rng.random() < 0.1 else "x86_64",
                "hypervisor_type": "QEMU",
                "hypervisor_version": 8_002_000,
                "aggregates": aggregates,
            }
        )
    return hosts
