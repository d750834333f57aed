"""Reads of the compute API, as OpenStack clients make them, measured in requests per CPU-second.

Starts the API under gunicorn in production settings (``bench/support/cloud.py``, no conductor or hosts:
reads only) on a PostgreSQL server of its own, with ``--servers`` ACTIVE servers written straight into
the database. Then, for each read, ``--clients`` threads send it back to back for ``--seconds``:
``GET /servers/{id}`` (a client polling its server), ``GET /servers/detail?limit=100`` and
``GET /flavors/detail``. A read's figure is the requests answered per CPU-second of the API's processes
(and of the API's plus PostgreSQL's): on a machine where the clients and other work share the cores, the
CPU per request is what does not change. Last, one client fetches a page of 1,000 detailed servers
``--pages`` times: the median time; and the same of the portal's instance list, signed in as a browser.

Authentication (``--auth``): ``token`` (the default where the revision has the built-in identity API:
one ``POST /identity/v3/auth/tokens``, then ``X-Auth-Token`` on every request, as the OpenStack clients
do) or ``basic`` (HTTP Basic on every request; the API checks the password once and remembers it).
``--root`` runs the API from another checkout of the project (``bench/compare.py`` does).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

# Run as a script, this file's folder comes first on the path, and this file would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.support.cloud import PASSWORD, ROOT, Cloud, cpu_delta, load_average  # noqa: E402

BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")
MICROVERSION = "compute 2.47"

# Written by ``manage.py shell`` in the revision's tree: ACTIVE servers of the admin project on one host.
MAKE_SERVERS = """
from django.contrib.auth import get_user_model
from django.utils import timezone
from portal.models import ComputeHost, Flavor, Image, Instance, Project
project = Project.objects.get(name="admin")
user = get_user_model().objects.get(username="admin")
flavor = Flavor.objects.order_by("pk").first()
image = Image.objects.get(name="demo")
host, _ = ComputeHost.objects.get_or_create(name="reads-host", defaults={"vcpus": 4096, "memory_mb": 1 << 24,
                                            "disk_gb": 1 << 16, "last_heartbeat": timezone.now()})
Instance.objects.bulk_create([
    Instance(name=f"reads-{n:05d}", project=project, user=user, flavor=flavor, flavor_name=flavor.name,
             vcpus=flavor.vcpus, memory_mb=flavor.memory_mb, root_gb=flavor.root_gb, image=image,
             image_ref=str(image.pk), vm_state="active", power_state=1, host=host, launched_at=timezone.now(),
             addresses=[{"version": 4, "addr": f"10.0.{n // 250}.{n % 250 + 2}",
                         "mac": f"fa:16:3e:00:{n // 256:02x}:{n % 256:02x}"}])
    for n in range(COUNT)
], batch_size=500)
print(" ".join(str(uuid) for uuid in Instance.objects.filter(project=project).values_list("uuid", flat=True)))
"""


class Api:
    def __init__(self, url: str, auth: str):
        self.url = url
        self.auth = auth
        self.token = None
        if auth == "token":
            body = {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": PASSWORD}},
                    },
                    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
                }
            }
            response = requests.post(f"{url}/identity/v3/auth/tokens", json=body, timeout=30)
            response.raise_for_status()
            self.token = response.headers["X-Subject-Token"]

    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["OpenStack-API-Version"] = MICROVERSION
        if self.token:
            session.headers["X-Auth-Token"] = self.token
        else:
            session.auth = ("admin", PASSWORD)
        return session


def hammer(cloud: Cloud, api: Api, paths, clients: int, seconds: float) -> dict:
    """``clients`` threads send the next of ``paths`` back to back for ``seconds``."""
    counts = [0] * clients
    failures: list[str] = []
    stop = threading.Event()

    def client(index: int) -> None:
        session = api.session()
        for path in paths(index):
            if stop.is_set():
                return
            response = session.get(f"{cloud.url}/compute/v2.1{path}", timeout=60)
            if response.status_code != 200:
                failures.append(f"{path}: {response.status_code} {response.text[:120]}")
                return
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    before = cloud.cpu_seconds()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    cpu = cpu_delta(before, cloud.cpu_seconds())
    done = sum(counts)
    return {
        "requests": done,
        "per_s": round(done / elapsed, 1),
        "per_cpu_s": round(done / cpu["api"], 1) if cpu["api"] else None,
        "per_cpu_s_with_db": round(done / (cpu["api"] + cpu["postgres"]), 1) if cpu["api"] else None,
        "api_cpu_s": round(cpu["api"], 2),
        "postgres_cpu_s": round(cpu["postgres"], 2),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


def portal_list_times(cloud: Cloud, pages: int, servers: int) -> list[float]:
    """Sign in to the portal as a browser does (its form, the CSRF cookie), then fetch the instance list
    ``pages`` times: the time of each, the page checked to list ``servers`` instances."""
    session = requests.Session()
    form = session.get(f"{cloud.url}/login/", timeout=30)
    form.raise_for_status()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    signed_in = session.post(
        f"{cloud.url}/login/",
        data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{cloud.url}/login/"},
        timeout=30,
    )
    signed_in.raise_for_status()
    times = []
    for _ in range(pages):
        started = time.monotonic()
        response = session.get(f"{cloud.url}/instances/", timeout=120)
        times.append(time.monotonic() - started)
        response.raise_for_status()
        listed = response.text.count('<tr id="instance-')
        assert listed == servers, f"the portal listed {listed} instances, not {servers}"
    return times


def run(args, root: Path) -> dict:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PostgreSQL's own user keeps its data directory in here
        cloud = Cloud(work, root=root, broker_url=BROKER_URL, hosts=1)
        try:
            cloud.prepare()
            made = cloud.manage("shell", "-c", f"COUNT = {args.servers}\n{MAKE_SERVERS}")
            uuids = made.strip().splitlines()[-1].split()
            cloud.start_api(workers=args.workers, threads=args.threads)
            has_identity = (root / "portal" / "api" / "identity").exists()
            auth = args.auth or ("token" if has_identity else "basic")
            api = Api(cloud.url, auth)

            def server_show(index):
                return (f"/servers/{uuid}" for uuid in itertools.cycle(uuids[index:] + uuids[:index]))

            reads = {
                "server_show": server_show,
                "servers_detail": lambda _index: itertools.repeat("/servers/detail?limit=100"),
                "flavors_detail": lambda _index: itertools.repeat("/flavors/detail"),
            }
            for paths in reads.values():  # warm every worker's caches and code paths
                hammer(cloud, api, paths, args.clients, 2)
            results = {name: hammer(cloud, api, paths, args.clients, args.seconds) for name, paths in reads.items()}

            session = api.session()
            page_times = []
            for _ in range(args.pages):
                started = time.monotonic()
                response = session.get(f"{cloud.url}/compute/v2.1/servers/detail?limit=1000", timeout=120)
                page_times.append(time.monotonic() - started)
                response.raise_for_status()
                assert len(response.json()["servers"]) == min(1000, args.servers)
            portal_times = portal_list_times(cloud, args.pages, min(1000, args.servers))
        finally:
            cloud.stop()
    line = {
        "scenario": "api_reads",
        "revision": _revision(root),
        "auth": auth,
        "servers": args.servers,
        "clients": args.clients,
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
        "seconds_each": args.seconds,
    }
    for name, result in results.items():
        line[f"{name}_per_cpu_s"] = result["per_cpu_s"]
        line[name] = result
    line["servers_detail_1000_ms"] = round(statistics.median(page_times) * 1000, 1)
    line["portal_instances_1000_ms"] = round(statistics.median(portal_times) * 1000, 1)
    line["load_avg_1m_before"] = load_before
    line["load_avg_1m_after"] = load_average()
    return line


def _revision(root: Path) -> str:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--pages", type=int, default=9, help="fetches of a page of 1,000 detailed servers")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads of each gunicorn worker")
    parser.add_argument("--auth", choices=("token", "basic"), help="default: token where the revision has it")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout the API runs from")
    args = parser.parse_args()
    print(json.dumps(run(args, args.root.resolve())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
