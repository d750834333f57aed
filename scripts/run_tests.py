"""Every test, in two lanes at once: ``make test``.

The ``machine`` lane holds the tests that use what this machine has only one of (the hypervisor at
qemu:///system, network namespaces, routes and firewall tables), and the OpenStack CLI's tests so that
the two lanes take about as long; the ``services`` lane holds the rest, whose PostgreSQL databases,
brokers, workers and ports are their own. Each lane is one pytest process
with its own test database and broker databases, so the two never see each other's rows or messages.
Most of the machine lane's time is spent waiting for guests, which leaves a core for the other lane.

The services lane prints as it goes; the machine lane writes ``var/test-logs/machine.log``, printed when
both are done. The exit status is the first failing lane's. Arguments are passed to both pytests.

usage: scripts/run_tests.py [pytest arguments...]
environment: TEST_DATABASE_NAME (default test_cloud) is each lane's database name's prefix;
    TEST_REDIS_URL (default redis://127.0.0.1:6379) and TEST_REDIS_DB (default 7) are where the lanes'
    four broker databases begin (two runs at once on one machine set them apart).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "var" / "test-logs"

# The tests that share this machine's hypervisor and network stack with nothing but each other, and
# the CLI's (which could run in either lane).
MACHINE = [
    "tests/system",
    "tests/faults/test_qemu_faults.py",
    "tests/integration/dataplane",
    "tests/integration/metadata",
    "tests/integration/test_demo_network.py",
    "tests/integration/openstack_cli",
]


def lane_env(name: str, index: int) -> dict[str, str]:
    redis = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    first_redis_db = int(os.environ.get("TEST_REDIS_DB", "7")) + 2 * index
    database = os.environ.get("TEST_DATABASE_NAME", "test_cloud")
    return {
        **os.environ,
        "TEST_DATABASE_NAME": f"{database}_{name}",
        "TEST_BROKER_URL": f"{redis}/{first_redis_db}",
        "COMPUTE_TEST_BROKER_URL": f"{redis}/{first_redis_db + 1}",
    }


def main(arguments: list[str]) -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    pytest = [sys.executable, "-m", "pytest", *arguments]
    started = time.monotonic()
    log_path = LOGS / "machine.log"
    with log_path.open("wb") as log:
        machine = subprocess.Popen(
            [*pytest, *MACHINE], cwd=ROOT, env=lane_env("machine", 1), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            services = subprocess.run(
                [*pytest, *(f"--ignore={path}" for path in MACHINE)], cwd=ROOT, env=lane_env("services", 0)
            )
            elapsed = time.monotonic() - started
            print(f"\n== services lane: exit {services.returncode} after {elapsed:.0f} s", flush=True)
            machine.wait()
        except BaseException:
            machine.send_signal(signal.SIGINT)
            machine.wait()
            raise
    print(f"== machine lane ({', '.join(MACHINE)}):", flush=True)
    sys.stdout.buffer.write(log_path.read_bytes())
    print(f"== machine lane: exit {machine.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    return services.returncode or machine.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
