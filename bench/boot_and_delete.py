"""Rally's boot-and-delete scenario against the whole cloud: many simulated hosts, 50 at a time.

For each ``--hosts`` count it starts a fresh cloud on this machine (``bench/support/cloud.py``): the API
under gunicorn, a conductor, and ONE compute worker process serving every simulated host
(``COMPUTE_HOSTS=sim-[0001-N]``, each host with its own queue and heartbeat) on libvirt's in-memory
``test:///default`` hypervisor, in production settings, on a PostgreSQL server of its own and a scratch
Redis database (``BENCH_BROKER_URL``, default 15). ``--concurrency`` clients then run ``--iterations``
cycles between them, each: ``POST /servers``, poll until ACTIVE, ``DELETE``, poll until 404, all over
HTTP. Prints one JSON line per host count: cycles per second, boot and delete p50/p95, and the CPU
every process of the cloud (PostgreSQL included) spent per cycle while the clients ran (steady state:
not start-up, warm-up or the first round of heartbeats).

Clients authenticate as OpenStack clients do, with a token of the built-in identity API sent as
``X-Auth-Token``, where the revision has that API; otherwise (or with ``--auth basic``) with HTTP Basic on
every request. ``--root`` runs the cloud from another checkout of the project (``bench/compare.py`` does).

The anchor is Nova's published run of the same scenario with 1,000 fake hosts: 5.4 cycles/s, boot p95
8.0 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

# Run as a script, this file's folder comes first on the path, and this file would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.support.cloud import PASSWORD, ROOT, Cloud, cpu_delta, load_average, wait  # noqa: E402

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def stage_medians(cloud: Cloud) -> dict[str, float]:
    """Median seconds from the API's create to the conductor's claim, and from the claim to ACTIVE."""
    query = (
        "SELECT extract(epoch FROM s.start_time - c.start_time), extract(epoch FROM b.start_time - s.start_time)"
        " FROM portal_instanceaction a"
        " JOIN portal_instanceactionevent c ON c.action_id = a.id AND c.event = 'api_create'"
        " JOIN portal_instanceactionevent s ON s.action_id = a.id AND s.event = 'conductor_schedule_and_build'"
        " JOIN portal_instanceactionevent b ON b.action_id = a.id AND b.event = 'compute_build_and_run_instance'"
        " WHERE a.action = 'create'"
    )
    with psycopg.connect(cloud.database_url) as conn:
        rows = conn.execute(query).fetchall()
    if not rows:
        return {}
    return {
        "create_to_claim": round(statistics.median(float(r[0]) for r in rows), 3),
        "claim_to_active": round(statistics.median(float(r[1]) for r in rows), 3),
    }


def issue_token(cloud: Cloud) -> str:
    """A project-scoped token of the built-in identity API, as an OpenStack client gets one."""
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": PASSWORD}},
            },
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
        }
    }
    response = requests.post(f"{cloud.url}/identity/v3/auth/tokens", json=body, timeout=60)
    response.raise_for_status()
    return response.headers["X-Subject-Token"]


class Client:
    def __init__(self, cloud: Cloud, image_id: str, poll: float, auth: str = "basic"):
        self.session = requests.Session()
        if auth == "token":
            self.session.headers["X-Auth-Token"] = issue_token(cloud)
        else:
            self.session.auth = ("admin", PASSWORD)
        self.session.headers["OpenStack-API-Version"] = "compute 2.47"
        self.compute = f"{cloud.url}/compute/v2.1"
        self.image_id = image_id
        self.poll = poll

    def cycle(self, name: str) -> tuple[float, float]:
        """One boot-to-ACTIVE and delete-to-gone; returns both durations in seconds."""
        body = {"server": {"name": name, "imageRef": self.image_id, "flavorRef": "1", "networks": "none"}}
        started = time.monotonic()
        response = self.session.post(f"{self.compute}/servers", json=body, timeout=60)
        response.raise_for_status()
        server_id = response.json()["server"]["id"]
        deadline = started + 300
        while True:
            time.sleep(self.poll)
            server = self.session.get(f"{self.compute}/servers/{server_id}", timeout=60).json()["server"]
            if server["status"] == "ACTIVE":
                break
            if server["status"] == "ERROR" or time.monotonic() > deadline:
                raise RuntimeError(f"boot of {server_id} ended {server['status']}: {server.get('fault')}")
        booted = time.monotonic()
        self.session.delete(f"{self.compute}/servers/{server_id}", timeout=60).raise_for_status()
        while True:
            time.sleep(self.poll)
            if self.session.get(f"{self.compute}/servers/{server_id}", timeout=60).status_code == 404:
                break
            if time.monotonic() > booted + 300:
                raise RuntimeError(f"delete of {server_id} did not finish")
        return booted - started, time.monotonic() - booted


def run(hosts: int, iterations: int, concurrency: int, poll: float, conductors: int, root: Path, auth) -> dict:
    load_before = load_average()
    # The clients authenticate as OpenStack clients do (a token, then X-Auth-Token) where the revision has
    # the built-in identity API, else with HTTP Basic (checked once, then remembered by the API).
    auth = auth or ("token" if (root / "portal" / "api" / "identity").exists() else "basic")
    with tempfile.TemporaryDirectory(prefix="bench-bad-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PostgreSQL's own user keeps its data directory in here
        cloud = Cloud(work, root=root, broker_url=BROKER_URL, hosts=hosts)
        try:
            cloud.prepare()
            cloud.start_api()
            cloud.start_workers(conductors)
            wait(lambda: cloud.hosts_up() >= hosts, 180, f"heartbeats of {hosts} hosts", interval=1)
            images = requests.get(f"{cloud.url}/image/v2/images", auth=("admin", PASSWORD), timeout=10).json()
            image_id = next(image["id"] for image in images["images"] if image["name"] == "demo")
            Client(cloud, image_id, poll, auth).cycle("warm-up")  # fills the image cache

            boots: list[float] = []
            deletes: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            counter = iter(range(iterations))

            def worker() -> None:
                client = Client(cloud, image_id, poll, auth)
                for index in counter:
                    try:
                        boot, delete = client.cycle(f"bench-{index}")
                    except Exception as exc:  # a failed cycle is counted, not fatal
                        with lock:
                            errors.append(str(exc)[:200])
                        continue
                    with lock:
                        boots.append(boot)
                        deletes.append(delete)

            # Steady state only: the CPU spent from the moment the clients start until the last one ends.
            cpu_before = cloud.cpu_seconds()
            started = time.monotonic()
            threads = [threading.Thread(target=worker) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            cpu = cpu_delta(cpu_before, cloud.cpu_seconds())
            stages = stage_medians(cloud)
        finally:
            cloud.stop()
    own = os.times()
    client_cpu = own.user + own.system
    cycles = max(1, len(boots))
    cloud_cpu = sum(value for name, value in cpu.items() if name != "postgres")
    return {
        "scenario": "boot_and_delete",
        "revision": _revision(root),
        "hosts": hosts,
        "concurrency": concurrency,
        "iterations": iterations,
        "completed": len(boots),
        "errors": len(errors),
        "cycles_per_s": round(len(boots) / elapsed, 2),
        "boot_p50_s": round(statistics.median(boots), 3) if boots else None,
        "boot_p95_s": round(percentile(boots, 0.95), 3) if boots else None,
        "delete_p50_s": round(statistics.median(deletes), 3) if deletes else None,
        "delete_p95_s": round(percentile(deletes, 0.95), 3) if deletes else None,
        "poll_s": poll,
        "auth": "token (X-Auth-Token)" if auth == "token" else "HTTP Basic (cheap hash)",
        "wall_s": round(elapsed, 1),
        "first_error": errors[0] if errors else None,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
        # CPU per completed cycle while the clients ran: the cloud's processes (api, conductor, compute)
        # and its PostgreSQL server; not Redis or the clients. What the machine's load does not change.
        "cloud_cpu_s_per_cycle": round(cloud_cpu / cycles, 4),
        "cloud_and_db_cpu_s_per_cycle": round(sum(cpu.values()) / cycles, 4),
        "cpu_s_per_cycle": {name: round(value / cycles, 4) for name, value in cpu.items()},
        "client_cpu_s": round(client_cpu, 1),
        "stage_median_s": stages,
    }


def _revision(root: Path) -> str:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, action="append", help="simulated hosts (repeatable; 100 and 1000)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status polls of one client")
    parser.add_argument("--conductors", type=int, default=4, help="conductor worker processes")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout the cloud runs from")
    parser.add_argument("--auth", choices=("token", "basic"), help="default: token where the revision has it")
    args = parser.parse_args()
    for hosts in args.hosts or (100, 1000):
        root = args.root.resolve()
        result = run(hosts, args.iterations, args.concurrency, args.poll, args.conductors, root, args.auth)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
