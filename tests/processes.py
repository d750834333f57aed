"""Real processes of the cloud for tests: conductor, compute hosts and the console proxy.

Each runs as a subprocess with the same settings the test process uses (database, broker, secrets),
logging to a file that is printed when a test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from compute_tasks import signing
from compute_tasks.config import parse_host_list

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
QEMU_LOG_DIR = Path("/var/log/libvirt/qemu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgresql://{user}{password}@{host}:{port}/{db['NAME']}"


# Every process a test run starts carries this variable (set in the test process's own environment, so
# subprocesses inherit it), naming the pytest process that owns it.
OWNER_VARIABLE = "CLOUD_TEST_OWNER"
_PR_SET_PDEATHSIG = 1


def mark_test_run() -> None:
    os.environ[OWNER_VARIABLE] = str(os.getpid())


def reap_orphans() -> list[int]:
    """Kill what an earlier test run started and left behind when it died (its pytest is gone): a stray
    conductor or compute worker on the test broker would take messages meant for this run's workers."""
    me = os.getpid()
    marker = f"{OWNER_VARIABLE}=".encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        owner = next((item[len(marker) :] for item in environ if item.startswith(marker)), b"")
        if not owner.isdigit() or int(owner) == me or _alive(int(owner)):
            continue
        try:
            os.kill(int(entry.name), signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(int(entry.name))
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the test process dies, however that happens."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def purge_broker() -> None:
    """The test broker database starts empty, so no message of an earlier run is delivered now."""
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
        )
        self.terminating = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the process group (a Celery worker's pool children too)."""
        os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float = 20) -> int:
        return self.popen.wait(timeout)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)
            if sig == signal.SIGKILL:
                self.popen.wait(10)

    def terminate(self) -> None:
        """Ask the process to shut down (SIGTERM to its group), without waiting: ``stop`` waits."""
        if self.alive() and not self.terminating:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.terminating = True

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.log.close()


# --- enrolled hosts ----------------------------------------------------------------------------------
#
# A test host gets one key for the whole run and is enrolled as an operator would enroll it. Every test's
# database flush forgets enrollments, which in a real cloud outlive everything, so ``enroll_again`` (an
# autouse fixture in tests/conftest.py) puts the live hosts' keys back before each test.

_host_keys: dict[str, signing.Ed25519PrivateKey] = {}
_console_addresses: dict[str, str] = {}
_live_hosts: set[str] = set()
_db_blocker = None


def allow_database_access(blocker) -> None:
    """pytest-django's blocker, so that clusters started by fixtures of any scope can enroll their hosts."""
    global _db_blocker
    _db_blocker = blocker


def _database():
    return _db_blocker.unblock() if _db_blocker is not None else contextlib.nullcontext()


def enroll(names: list[str], credentials_file: Path, console_address: str = "127.0.0.1") -> None:
    """Enroll test hosts (their consoles at ``console_address``) and write their credentials where their
    worker reads them."""
    from portal.services import host_trust

    _console_addresses.update(dict.fromkeys(names, console_address))
    keys = {name: _host_keys.setdefault(name, signing.new_private_key()) for name in names}
    signing.HostCredentials.write(
        credentials_file, keys=keys, control_plane_public_key=host_trust.control_plane_public_key()
    )
    _live_hosts.update(names)
    enroll_again(names)


def enroll_again(names: list[str] | None = None) -> None:
    from portal.services import host_trust

    names = sorted(_live_hosts) if names is None else names
    by_address: dict[str, list[str]] = {}
    for name in names:
        by_address.setdefault(_console_addresses.get(name, "127.0.0.1"), []).append(name)
    with _database():
        for address, group in by_address.items():
            host_trust.host_enroll_many(
                names=group,
                public_keys={name: signing.encode_public(_host_keys[name]) for name in group},
                console_address=address,
                runs_routers=True,  # the test clusters' hosts are the operator's own
            )


# A hypervisor holds none of the control plane's settings or secrets.
HOST_ENV = {name: "" for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DJANGO_SECRET_KEY", "CONSOLEAUTH_SECRET",
                                  "CLOUD_SIGNING_KEY")}  # fmt: skip


def signed_as_host(name: str, task: str, body: dict, *, queue: str = "conductor", now: float | None = None) -> dict:
    """The ``auth`` block host ``name`` sends with ``body`` as ``task`` on ``queue`` (signed at ``now``), as the
    host itself or a compromised one would sign it; the host is enrolled with its test key first."""
    key = _host_keys.setdefault(name, signing.new_private_key())
    enroll_again([name])
    return signing.Signer(name, key).sign(task, queue, body, now=now)


class Cluster:
    """The control plane's workers around a live API server, for one test module."""

    def __init__(self, api_url: str, work_dir: Path):
        self.api_url = api_url.rstrip("/")
        self.work_dir = work_dir
        self.processes: dict[str, Process] = {}
        self.started_at = time.time()
        self.qemu_log_dirs = [QEMU_LOG_DIR]  # where the libvirtds of its hosts keep the QEMU logs
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings.base",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "CLOUD_PUBLIC_URL": self.api_url,
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "CONSOLEAUTH_SECRET": settings.CONSOLE["AUTH_SECRET"],
            "CLOUD_SIGNING_KEY": settings.CLOUD["SIGNING_KEY"],
            "CLOUD_STATE_DIR": str(work_dir),
            "IMAGE_DIR": str(settings.CLOUD["IMAGE_DIR"]),
            "PYTHONUNBUFFERED": "1",
            "LEASE_SCHEDULING": "60",
        }

    def _start(self, name: str, argv: list[str], **env: str) -> Process:
        process = Process(name, argv, {**self.env, **env}, self.work_dir)
        self.processes[name] = process
        return process

    def start_conductor(self, concurrency: int = 2) -> Process:
        return self._start(
            "conductor",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "portal",
                "worker",
                "-Q",
                "conductor",
                "-n",
                "conductor@test",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
        )

    def start_compute(
        self,
        host: str,
        *,
        uri: str = "test:///default",
        heartbeat: float = 1.0,
        driver: str = "libvirt",
        console_address: str = "127.0.0.1",
        **env: str,
    ) -> Process:
        state_dir = self.work_dir / "compute" / host
        enroll([host], state_dir / "credentials.json", console_address=console_address)
        return self._start(
            f"compute-{host}",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "compute_tasks.worker",
                "worker",
                "-Q",
                f"compute.{host}",
                "-n",
                f"compute@{host}",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            COMPUTE_HOST=host,
            COMPUTE_DRIVER=driver,
            COMPUTE_LIBVIRT_URI=uri,
            COMPUTE_STATE_DIR=str(state_dir),
            COMPUTE_HEARTBEAT_INTERVAL=str(heartbeat),
            COMPUTE_METADATA_URL=f"{self.api_url}/internal/metadata",
            **HOST_ENV,
            **env,
        )

    def restart(self, name: str) -> Process:
        """Start a process again as it was started before (after it was killed or stopped)."""
        old = self.processes[name]
        old.stop()
        process = Process(name, old.argv, old.env, self.work_dir)
        self.processes[name] = process
        return process

    def start_api(self, port: int, *, workers: int = 2, threads: int = 4, name: str = "api", **env: str) -> Process:
        """The API under gunicorn, as in production: real parallel requests, one process per worker."""
        process = self._start(
            name,
            [
                str(VENV_BIN / "gunicorn"),
                "portal.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
            ],
            DJANGO_SETTINGS_MODULE="tests.cluster_settings",
            **env,
        )
        wait_for_http(f"http://127.0.0.1:{port}/compute/", timeout=60, process=process)
        return process

    def start_beat(self) -> Process:
        """Celery beat: the periodic jobs (the reaper every ``REAPER_INTERVAL`` seconds of ``self.env``)."""
        return self._start(
            "beat",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "portal",
                "beat",
                "--schedule",
                str(self.work_dir / "celerybeat-schedule"),
                "--loglevel",
                "INFO",
            ],
        )

    def start_consoleproxy(self, port: int, allowed_origins: str) -> Process:
        return self._start(
            "consoleproxy",
            [sys.executable, "-m", "consoleproxy"],
            CONSOLEPROXY_LISTEN=f"127.0.0.1:{port}",
            CONSOLEAUTH_URL=f"{self.api_url}/internal/consoleauth/",
            CONSOLE_ALLOWED_ORIGINS=allowed_origins,
        )

    def instance_dir(self, host: str, instance_uuid: str) -> Path:
        return self.work_dir / "compute" / host / "instances" / instance_uuid

    def logs(self) -> str:
        """Each process's log, and for hosts on a real libvirt the QEMU logs of the domains made since the
        cluster started (what QEMU said when a guest would not start or died)."""
        parts = [f"===== {name} =====\n{p.output()[-6000:]}" for name, p in self.processes.items()]
        if any(p.env.get("COMPUTE_LIBVIRT_URI", "").startswith("qemu") for p in self.processes.values()):
            logs = [path for directory in self.qemu_log_dirs for path in directory.glob("*.log")]
            recent = [path for path in logs if path.stat().st_mtime >= self.started_at]
            for path in sorted(recent, key=lambda path: path.stat().st_mtime)[-8:]:
                parts.append(f"===== libvirt {path} =====\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def host_names(self) -> set[str]:
        """The compute hosts this cluster's workers run as."""
        names = set()
        for process in self.processes.values():
            if process.env.get("COMPUTE_HOSTS"):
                names.update(parse_host_list(process.env["COMPUTE_HOSTS"]))
            elif process.env.get("COMPUTE_HOST"):
                names.add(process.env["COMPUTE_HOST"])
        return names

    def stop(self) -> None:
        # All asked at once, then waited for: their shutdowns overlap instead of adding up.
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.stop()
        close_other_sessions()
        forget_hosts(self.host_names())


def forget_hosts(names: set[str]) -> None:
    """Remove stopped hosts (and anything still placed on them) from the test database.

    Left there, the hosts would look up to the next module's scheduler for a minute and take its first
    builds to queues nobody consumes."""
    from portal.models import ComputeHost, Instance

    _live_hosts.difference_update(names)
    if names:
        Instance.objects.filter(host__name__in=names).delete()
        ComputeHost.objects.filter(name__in=names).delete()


def close_other_sessions() -> None:
    """Workers' connections may outlive them by a moment; the test database must be droppable."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def wait_for_host(name: str, timeout: float = 60) -> None:
    """Until the host's heartbeat has been recorded, so the scheduler can choose it."""
    from portal.models import ComputeHost

    wait_until(
        lambda: ComputeHost.objects.filter(name=name, last_heartbeat__isnull=False).exists(),
        timeout,
        message=f"the heartbeat of {name}",
    )


def wait_for_http(url: str, timeout: float = 30, process: Process | None = None) -> None:
    """Until ``url`` answers at all (any status), or fail early with the log of a process that died."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            pass
        if process is not None and not process.alive():
            raise AssertionError(f"{process.name} exited while starting:\n{process.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {url}")
        time.sleep(0.2)


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
