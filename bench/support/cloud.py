"""A whole cloud on this machine for the end-to-end benchmarks, started from any checkout of the project.

``root`` is the code tree the cloud's processes run from (``bench/compare.py`` passes a worktree of an
older revision), with this checkout's virtualenv. The cloud runs in production settings (no debug mode,
secrets from the environment), on a PostgreSQL server of its own whose CPU is counted with the cloud's,
and a scratch Redis database.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests

from bench.support.cloud_postgres import PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
PASSWORD = "bench-password"
DB_NAME = "bench_cloud"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def reachable(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


class Cloud:
    def __init__(self, work: Path, *, root: Path, broker_url: str, hosts: int, extra_env: dict[str, str] | None = None):
        self.work = work
        self.root = root
        self.hosts = hosts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.postgres = PrivatePostgres(work / "pgdata", free_port())
        self.broker_url = broker_url
        self.database_url = self.postgres.admin_url.rsplit("/", 1)[0] + f"/{DB_NAME}"
        # Heartbeats every 10 s (Nova's report_interval), spread over the interval; with more than 300
        # hosts the interval grows so that the conductor gets about 30 a second at most.
        beat = max(10, hosts // 30)
        self.env = {
            **os.environ,
            "CLOUD_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "CLOUD_SIGNING_KEY": secrets.token_urlsafe(48),
            "CONSOLEAUTH_SECRET": secrets.token_urlsafe(48),
            "CLOUD_STATE_DIR": str(work),
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": broker_url,
            "CLOUD_PUBLIC_URL": self.url,
            # Production settings but a cheap password hash, for the clients that sign in with a password.
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "PYTHONPATH": os.pathsep.join([str(work), str(root)]),
            "PORTAL_ADMIN_PASSWORD": PASSWORD,
            "LOG_LEVEL": "WARNING",
            "COMPUTE_HOSTS": f"sim-[0001-{hosts:04d}]",
            "COMPUTE_DRIVER": "libvirt",
            "COMPUTE_LIBVIRT_URI": "test:///default",
            "COMPUTE_STATE_DIR": str(work / "compute"),
            "COMPUTE_HEARTBEAT_INTERVAL": str(beat),
            "SERVICE_DOWN_TIME": str(max(60, 3 * beat)),
            **(extra_env or {}),
        }
        self.named: dict[str, subprocess.Popen] = {}

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "python"), "manage.py", *args],
            cwd=self.root,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def spawn(self, name: str, argv: list[str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        self.named[name] = subprocess.Popen(
            argv, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def prepare(self) -> None:
        """The database, the demo project and image, unlimited quotas, and the hosts' credentials."""
        (self.work / "bench_settings.py").write_text(
            "from portal.settings.base import *  # noqa: F403\n"
            'PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]\n'
        )
        redis.Redis.from_url(self.broker_url).flushdb()
        self.postgres.start(self.work / "postgres.log")
        import psycopg

        with psycopg.connect(self.postgres.admin_url, autocommit=True) as conn:
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
        if (self.root / "portal" / "management" / "commands" / "host_enroll.py").exists():
            credentials = self.work / "compute" / "credentials.json"
            self.manage("host_enroll", self.env["COMPUTE_HOSTS"], "--output", str(credentials))

    def start_api(self, workers: int = 3, threads: int = 8) -> None:
        self.spawn(
            "api",
            [str(BIN / "gunicorn"), "portal.wsgi:application", "--bind", f"127.0.0.1:{self.port}"]
            + ["--workers", str(workers), "--threads", str(threads), "--timeout", "120"],
        )
        wait(lambda: reachable(f"{self.url}/compute/"), 60, "the API")

    def start_workers(self, conductors: int) -> None:
        celery = str(BIN / "celery")
        self.spawn(
            "conductor",
            [celery, "-A", "portal", "worker", "-Q", "conductor", "-n", "conductor@bench"]
            + ["--concurrency", str(conductors), "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        )
        self.spawn(
            "compute",
            [celery, "-A", "compute_tasks.worker", "worker", "-n", "compute@fleet", "--pool", "threads"]
            + ["--concurrency", "16", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        )

    def hosts_up(self) -> int:
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            query = "SELECT count(*) FROM portal_computehost WHERE last_heartbeat IS NOT NULL"
            return conn.execute(query).fetchone()[0]

    def cpu_seconds(self) -> dict[str, float]:
        """User and system CPU so far of each process group the cloud started, PostgreSQL's included.

        A group's leader counts its own time and that of the children it reaped (``cutime``/``cstime``):
        gunicorn's and Celery's restarted children, PostgreSQL's ended backends. PostgreSQL's children
        each lead a session of their own, so they are found by their parent, the postmaster.
        """
        groups = {proc.pid: name for name, proc in self.named.items()}
        if self.postgres.process is not None:
            groups[self.postgres.process.pid] = "postgres"
        processes = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # pid, parent, process group, utime + stime + cutime + cstime
            processes.append((int(entry.name), int(fields[1]), int(fields[2]), sum(int(v) for v in fields[11:15])))
        owner = {pid: groups[pgid] for pid, _parent, pgid, _ticks in processes if pgid in groups}
        ticks = dict.fromkeys(groups.values(), 0)
        for pid, parent, _pgid, count in processes:
            name = owner.get(pid) or (owner.get(parent) if owner.get(parent) == "postgres" else None)
            if name is not None:
                ticks[name] += count
        return {name: count / os.sysconf("SC_CLK_TCK") for name, count in ticks.items()}

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        if sys.exc_info()[0] is not None:  # stopped by a failure: say what the processes said
            for name in self.named:
                print(f"===== {name} =====\n{self.log_tail(name)}", file=sys.stderr)
        for proc in self.named.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.named.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.postgres.stop()


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
