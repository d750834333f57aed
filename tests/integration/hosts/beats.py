"""A host's heartbeat as the tests here send it: a small QEMU host, with whatever a test changes."""

from __future__ import annotations

import time

from compute_tasks import rpc


def heartbeat(host: str, /, **changes) -> rpc.Heartbeat:
    """``changes`` win over the defaults (``host`` too: a beat about another host)."""
    fields = {
        "host": host,
        "sent_at": time.time(),
        "vcpus": 8,
        "memory_mb": 16384,
        "disk_gb": 200,
        "hypervisor_type": "QEMU",
        "hypervisor_version": 8002000,
        "cpu_arch": "x86_64",
        **changes,
    }
    return rpc.Heartbeat(**fields)
