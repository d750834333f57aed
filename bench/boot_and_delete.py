"""Rally's boot-and-delete scenario against the whole cloud: many simulated hosts, 50 at a time.

For each ``--hosts`` count it starts a fresh cloud on this machine: the API under gunicorn, a conductor,
and ONE compute worker process serving every simulated host (``COMPUTE_HOSTS=sim-[0001-N]``, each host
with its own queue and heartbeat) on libvirt's in-memory ``test:///default`` hypervisor, on a scratch
PostgreSQL database and Redis database (``BENCH_BROKER_URL``, default 15). ``--concurrency`` clients then
run ``--iterations`` cycles between them, each: ``POST /servers``, poll until ACTIVE, ``DELETE``, poll until
404, all over HTTP. Prints one JSON line per host count: cycles per second, boot and delete p50/p95.

The anchor is Nova's published run of the same scenario with 1,000 fake hosts: 5.4 cycles/s, boot p95
8.0 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DATABASE_NAME", "bench_boot_and_delete")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "bench-password"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cloud:
    def __init__(self, work: Path, hosts: int, conductors: int):
        self.work = work
        self.hosts = hosts
        self.conductors = conductors
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        # Heartbeats every 10 s (Nova's report_interval), spread over the interval; with more than 300
        # hosts the interval grows so that the conductor gets about 30 a second at most.
        beat = max(10, hosts // 30)
        self.env = {
            **os.environ,
            "CLOUD_DEBUG": "1",
            "CLOUD_STATE_DIR": str(work),
            "DATABASE_URL": f"{base}/{DB_NAME}",
            "CELERY_BROKER_URL": BROKER_URL,
            "CLOUD_PUBLIC_URL": self.url,
            # Production settings but a cheap password check: clients here send HTTP Basic on every
            # request, where real OpenStack clients send a token that the API checks once and caches.
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "PYTHONPATH": os.pathsep.join([str(work), str(ROOT)]),
            "PORTAL_ADMIN_PASSWORD": PASSWORD,
            "LOG_LEVEL": "WARNING",
            "COMPUTE_HOSTS": f"sim-[0001-{hosts:04d}]",
            "COMPUTE_DRIVER": "libvirt",
            "COMPUTE_LIBVIRT_URI": "test:///default",
            "COMPUTE_STATE_DIR": str(work / "compute"),
            "COMPUTE_HEARTBEAT_INTERVAL": str(beat),
            "SERVICE_DOWN_TIME": str(max(60, 3 * beat)),
        }
        self.procs: list[subprocess.Popen] = []
        self.named: dict[str, subprocess.Popen] = {}

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def spawn(self, name: str, argv: list[str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        self.named[name] = proc

    def start(self) -> None:
        (self.work / "bench_settings.py").write_text(
            "from portal.settings.base import *  # noqa: F403\n"
            'PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]\n'
        )
        redis.Redis.from_url(BROKER_URL).flushdb()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        self.manage("migrate", "--noinput", "-v0")
        image = self.work / "small.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
        self.manage("demo_setup", "--image", str(image), "--password-file", str(self.work / "admin_password"))
        self.manage(
            "shell",
            "-c",
            "from portal.models import Project, QuotaLimit\n"
            "p = Project.objects.get(name='admin')\n"
            "for r in ('instances', 'cores', 'ram'):\n"
            "    QuotaLimit.objects.update_or_create(project=p, resource=r, defaults={'hard_limit': -1})\n",
        )
        credentials = self.work / "compute" / "credentials.json"
        self.manage("host_enroll", self.env["COMPUTE_HOSTS"], "--output", str(credentials))
        celery = str(BIN / "celery")
        self.spawn(
            "api",
            [str(BIN / "gunicorn"), "portal.wsgi:application", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", "3", "--threads", "8", "--timeout", "120"],
        )
        self.spawn(
            "conductor",
            [celery, "-A", "portal", "worker", "-Q", "conductor", "-n", "conductor@bench"]
            + ["--concurrency", str(self.conductors), "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        )
        self.spawn(
            "compute",
            [celery, "-A", "compute_tasks.worker", "worker", "-n", "compute@fleet", "--pool", "threads"]
            + ["--concurrency", "16", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        )

    def hosts_up(self) -> int:
        with psycopg.connect(self.env["DATABASE_URL"]) as conn:
            return conn.execute("SELECT count(*) FROM portal_computehost WHERE last_heartbeat IS NOT NULL").fetchone()[
                0
            ]

    def cpu_seconds(self) -> dict[str, float]:
        """User and system CPU of each process the cloud started (whole process groups), so far."""
        groups = {proc.pid: name for name, proc in self.named.items()}
        ticks = dict.fromkeys(self.named, 0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = groups.get(int(fields[2]))  # the process group id
            if name is not None:
                ticks[name] += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
        return {name: count / os.sysconf("SC_CLK_TCK") for name, count in ticks.items()}

    def stage_medians(self) -> dict[str, float]:
        """Median seconds from the API's create to the conductor's claim, and from the claim to ACTIVE."""
        query = (
            "SELECT extract(epoch FROM s.start_time - c.start_time), extract(epoch FROM b.start_time - s.start_time)"
            " FROM portal_instanceaction a"
            " JOIN portal_instanceactionevent c ON c.action_id = a.id AND c.event = 'api_create'"
            " JOIN portal_instanceactionevent s ON s.action_id = a.id AND s.event = 'conductor_schedule_and_build'"
            " JOIN portal_instanceactionevent b ON b.action_id = a.id AND b.event = 'compute_build_and_run_instance'"
            " WHERE a.action = 'create'"
        )
        with psycopg.connect(self.env["DATABASE_URL"]) as conn:
            rows = conn.execute(query).fetchall()
        if not rows:
            return {}
        return {
            "create_to_claim": round(statistics.median(float(r[0]) for r in rows), 3),
            "claim_to_active": round(statistics.median(float(r[1]) for r in rows), 3),
        }

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


class Client:
    def __init__(self, cloud: Cloud, image_id: str, poll: float):
        self.session = requests.Session()
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


def run(hosts: int, iterations: int, concurrency: int, poll: float, conductors: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-bad-") as tmp:
        cloud = Cloud(Path(tmp), hosts, conductors)
        cloud.start()
        try:
            wait(lambda: _ok(f"{cloud.url}/compute/"), 60, "the API")
            wait(lambda: cloud.hosts_up() >= hosts, 120, f"heartbeats of {hosts} hosts", interval=1)
            images = requests.get(f"{cloud.url}/image/v2/images", auth=("admin", PASSWORD), timeout=10).json()
            image_id = next(image["id"] for image in images["images"] if image["name"] == "demo")
            Client(cloud, image_id, poll).cycle("warm-up")  # fills the image cache

            boots: list[float] = []
            deletes: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            counter = iter(range(iterations))

            def worker() -> None:
                client = Client(cloud, image_id, poll)
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

            started = time.monotonic()
            threads = [threading.Thread(target=worker) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            cpu = cloud.cpu_seconds()
            stages = cloud.stage_medians()
        finally:
            cloud.stop()
    own = os.times()
    client_cpu = own.user + own.system
    return {
        "scenario": "boot_and_delete",
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
        "auth": "HTTP Basic (cheap hash)",
        "wall_s": round(elapsed, 1),
        "first_error": errors[0] if errors else None,
        "load_avg_1m_after": round(os.getloadavg()[0], 1),
        # CPU the cloud's own processes used per completed cycle (api, conductor, compute; not PostgreSQL,
        # Redis or the clients): what the machine's load does not change.
        "cloud_cpu_s_per_cycle": round(sum(cpu.values()) / (len(boots) + 1), 3),
        "cpu_s_per_cycle": {name: round(value / (len(boots) + 1), 3) for name, value in cpu.items()},
        "client_cpu_s": round(client_cpu, 1),
        "stage_median_s": stages,
    }


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, action="append", help="simulated hosts (repeatable; 100 and 1000)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status polls of one client")
    parser.add_argument("--conductors", type=int, default=4, help="conductor worker processes")
    args = parser.parse_args()
    for hosts in args.hosts or (100, 1000):
        print(json.dumps(run(hosts, args.iterations, args.concurrency, args.poll, args.conductors)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
