"""Concurrent clients against a running ``Cloud``, and the figures benchmarks print about them."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from .cloud import Cloud, cpu_delta


def drive(cloud: Cloud, *, count: int, clients: int, session: Callable, request: Callable) -> dict:
    """``clients`` threads make ``count`` requests in all, back to back, each thread on its own
    ``session()``; ``request(session)`` makes one and returns what went wrong, or None. The figures:
    requests per second, per CPU-second of the API (and of the API plus PostgreSQL), latency, failures."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    remaining = [count]

    def client() -> None:
        s = session()
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            started = time.monotonic()
            failure = request(s)
            with lock:
                latencies.append(time.monotonic() - started)
                if failure:
                    failures.append(failure)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    before = cloud.cpu_seconds()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cpu = cpu_delta(before, cloud.cpu_seconds())
    ordered = sorted(latencies)
    return {
        "per_s": round(count / elapsed, 1),
        "per_cpu_s": round(count / cpu["api"], 1) if cpu["api"] else None,
        "per_cpu_s_with_db": round(count / (cpu["api"] + cpu["postgres"]), 1) if cpu["api"] else None,
        "latency_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "latency_p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }
