"""Port creation through the networking API, as concurrent clients make it, and what a subnet's fill costs.

Starts the API under gunicorn in production settings (``bench/support/cloud.py``, no conductor or hosts)
on a PostgreSQL server of its own. The admin makes a network with a /16 subnet; then ``--clients``
threads create ports on it back to back (``POST /networking/v2.0/ports``, addresses chosen by the cloud)
until ``--ports`` exist. Every creation on one subnet takes that subnet's row lock while it picks the
lowest free address, so they run one at a time per subnet: the figures are ports per second, per
CPU-second of the API (and of the API plus PostgreSQL), and the creation latency, for the first
``--ports`` ports and again for as many more once the subnet already holds ``--fill`` addresses (the
choice reads the subnet's addresses, so its cost grows with them). Last, the median time of
``GET /ports?limit=1000``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

# Run as a script, this file's folder comes first on the path, and this file would shadow the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.support.cloud import PASSWORD, ROOT, Cloud, load_average  # noqa: E402
from bench.support.load import drive  # noqa: E402

BROKER_URL = "redis://127.0.0.1:6379/15"
N = "/networking/v2.0"

# Written by ``manage.py shell``: ``FILL`` ports holding addresses from the top of the subnet down, so the
# lowest free address is still at the bottom and every later choice reads all of them.
FILL_PORTS = """
import ipaddress
from portal.models import IPAllocation, Port, Subnet
subnet = Subnet.objects.get(pk=SUBNET)
top = ipaddress.ip_network(subnet.cidr).broadcast_address - 1
ports = Port.objects.bulk_create([
    Port(network_id=subnet.network_id, project_id=subnet.project_id, mac_address=f"fa:16:3f:{n >> 16 & 255:02x}:"
         f"{n >> 8 & 255:02x}:{n & 255:02x}", name=f"fill-{n}") for n in range(FILL)
], batch_size=1000)
IPAllocation.objects.bulk_create([
    IPAllocation(port=port, subnet=subnet, ip_address=str(top - n)) for n, port in enumerate(ports)
], batch_size=1000)
"""


def session() -> requests.Session:
    s = requests.Session()
    s.auth = ("admin", PASSWORD)
    return s


def create_ports(cloud: Cloud, network_id: str, count: int, clients: int) -> dict:
    def request(s: requests.Session) -> str | None:
        response = s.post(f"{cloud.url}{N}/ports", json={"port": {"network_id": network_id}}, timeout=60)
        return None if response.status_code == 201 else f"{response.status_code} {response.text[:120]}"

    return {"ports": count, **drive(cloud, count=count, clients=clients, session=session, request=request)}


def run(args) -> dict:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-ports-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PostgreSQL's own user keeps its data directory in here
        cloud = Cloud(work, root=ROOT, broker_url=BROKER_URL, hosts=1)
        try:
            cloud.prepare()
            cloud.manage(
                "shell",
                "-c",
                "from portal.models import Project, QuotaLimit\n"
                "p = Project.objects.get(name='admin')\n"
                "QuotaLimit.objects.update_or_create(project=p, resource='port', defaults={'hard_limit': -1})\n",
            )
            cloud.start_api(workers=args.workers, threads=args.threads)
            s = session()
            network = s.post(f"{cloud.url}{N}/networks", json={"network": {"name": "bench"}}, timeout=30).json()
            network_id = network["network"]["id"]
            body = {"subnet": {"network_id": network_id, "cidr": "10.128.0.0/16", "ip_version": 4}}
            subnet_id = s.post(f"{cloud.url}{N}/subnets", json=body, timeout=30).json()["subnet"]["id"]
            create_ports(cloud, network_id, min(50, args.ports), args.clients)  # warm every worker
            empty = create_ports(cloud, network_id, args.ports, args.clients)
            cloud.manage("shell", "-c", f"SUBNET = {subnet_id!r}\nFILL = {args.fill}\n{FILL_PORTS}")
            filled = create_ports(cloud, network_id, args.ports, args.clients)
            page_times = []
            for _ in range(args.pages):
                started = time.monotonic()
                response = s.get(f"{cloud.url}{N}/ports?limit=1000", timeout=120)
                page_times.append(time.monotonic() - started)
                response.raise_for_status()
                assert len(response.json()["ports"]) == 1000
        finally:
            cloud.stop()
    return {
        "scenario": "port_allocation",
        "clients": args.clients,
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
        "fresh_subnet": empty,
        "subnet_with_fill": {"fill": args.fill, **filled},
        "ports_list_1000_ms": round(statistics.median(page_times) * 1000, 1),
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": load_average(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=400, help="ports created in each phase")
    parser.add_argument("--fill", type=int, default=20000, help="addresses the subnet holds in the second phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pages", type=int, default=5, help="fetches of a page of 1,000 ports")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="threads of each gunicorn worker")
    args = parser.parse_args()
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
