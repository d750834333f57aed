"""A real Cinder on this machine: its own virtualenv, PostgreSQL, the NFS driver on a local directory, RabbitMQ.

Used by the test suite (``tests/cinder_service.py``) and by ``make demo`` with ``DEMO_CINDER=1``.

``CinderService`` runs cinder-api under gunicorn on a free port, cinder-scheduler and cinder-volume, with
``auth_strategy = noauth_include_project_id`` (or Keystone, given one), and the machine's RabbitMQ on
127.0.0.1:5672 in a virtual host of its own that it creates and deletes (other virtual hosts are never
touched, and RabbitMQ itself is never stopped). Its database is one of its own on the machine's PostgreSQL
(``CINDER_DATABASE_SERVER``, by default ``postgresql://postgres@127.0.0.1:5432``), made at start and dropped
at stop: Cinder's API, scheduler and volume service write to it at the same time, which SQLite answers with
"database is locked".

This kernel has no NFS server, so the "share" ``127.0.0.1:<dir>/nfsexport`` is bind-mounted where
os-brick would mount it (``<dir>/mnt/<md5 of the share>``): os-brick sees it mounted and the unmodified
NFS driver works on it. cinder-volume runs as root with a ``sudo`` shim first on its PATH that drops the
``cinder-rootwrap <conf>`` prefix, since there is no sudo here and everything already runs as root.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]

VENV = ROOT / ".venv-cinder"
VENV_BIN = VENV / "bin"
SETUP_SCRIPT = ROOT / "scripts" / "setup_cinder.sh"
RABBIT_URL = "127.0.0.1:5672"
DATABASE_SERVER = os.environ.get("CINDER_DATABASE_SERVER", "postgresql://postgres@127.0.0.1:5432")
API_VERSION = "3.44"

CINDER_CONF = """\
[DEFAULT]
auth_strategy = {auth_strategy}
transport_url = rabbit://guest:guest@{rabbit}/{vhost}
state_path = {dir}/state
api_paste_config = {venv}/etc/cinder/api-paste.ini
rootwrap_config = {venv}/etc/cinder/rootwrap.conf
# Without it Cinder allows no query filters (name, status, ...) to anyone but an admin.
resource_query_filters_file = {venv}/etc/cinder/resource_filters.json
my_ip = 127.0.0.1
host = {host}
osapi_volume_listen = 127.0.0.1
enabled_backends = nfs1
log_dir = {dir}/log
debug = false
rpc_response_timeout = 30

[database]
connection = {database}

[oslo_concurrency]
lock_path = {dir}/state/lock

[coordination]
backend_url = file://{dir}/state/coord

[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 0

[nfs1]
volume_driver = cinder.volume.drivers.nfs.NfsDriver
volume_backend_name = nfs1
nfs_shares_config = {dir}/etc/nfs_shares
nfs_mount_point_base = {dir}/mnt
nfs_sparsed_volumes = true
nfs_qcow2_volumes = false
nfs_snapshot_support = true
nas_secure_file_operations = false
nas_secure_file_permissions = false
{keystone}"""

KEYSTONE_SECTION = """
[keystone_authtoken]
www_authenticate_uri = {auth_url}
auth_url = {auth_url}
auth_type = password
username = {username}
password = {password}
project_name = {project}
user_domain_name = Default
project_domain_name = Default
service_token_roles = service
service_token_roles_required = true

[service_user]
send_service_user_token = false
"""

# cinder.wsgi reads the configuration from sys.argv, which under gunicorn holds gunicorn's own arguments.
WSGI_SHIM = """\
import sys

sys.argv = ["cinder-api", "--config-file", {conf!r}]
from cinder.wsgi.api import application  # noqa: E402,F401
"""

SUDO_SHIM = """\
#!/bin/sh
# No sudo here and everything runs as root: drop "cinder-rootwrap <conf>" and run the command itself.
case "$(basename "$1")" in cinder-rootwrap) shift 2;; esac
exec "$@"
"""


class CinderError(AssertionError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise CinderError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr or result.stdout}")
    return result


class CinderService:
    """One Cinder deployment in ``work_dir``; ``start()`` it, ``stop()`` it, and stop or start its API alone."""

    def __init__(self, work_dir: Path, *, keystone: dict | None = None, port: int | None = None):
        self.dir = work_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.base}/v3"
        self.name = f"cinder-{uuid.uuid4().hex[:8]}"
        self.database = self.name.replace("-", "_")
        self.vhost = f"test-{self.name}"
        self.keystone = keystone
        self.share = f"127.0.0.1:{work_dir / 'nfsexport'}"
        self.export_dir = work_dir / "nfsexport"
        self.mount_point_base = work_dir / "mnt"
        self.mount_point = self.mount_point_base / hashlib.md5(self.share.encode()).hexdigest()  # noqa: S324
        self.conf = work_dir / "etc" / "cinder.conf"
        self.processes: dict[str, subprocess.Popen] = {}
        self._vhost_created = False
        self._database_created = False
        self._mounted = False
        self._token: tuple[str, str, float] | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> CinderService:
        if not (VENV_BIN / "cinder-volume").exists():
            subprocess.run(["bash", str(SETUP_SCRIPT)], check=True, timeout=1800)
        started = time.monotonic()
        try:
            self._write_files()
            self._make_vhost()
            self._make_database()
            self._mount_share()
            self._manage("db", "sync")
            self._spawn("scheduler", [str(VENV_BIN / "cinder-scheduler"), "--config-file", str(self.conf)])
            self._spawn("volume", [str(VENV_BIN / "cinder-volume"), "--config-file", str(self.conf)])
            self.start_api()
            self._wait_for_volume_service()
        except BaseException:
            print(self.logs())
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def start_api(self) -> None:
        self._spawn(
            "api",
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--chdir",
                str(self.dir),
                "--timeout",
                "120",
                "cinder_wsgi:application",
            ],
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{self.base}/healthcheck", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.processes["api"].poll() is not None or time.monotonic() > deadline:
                raise CinderError(f"cinder-api did not start:\n{self.logs()}")
            time.sleep(0.3)

    def stop_api(self, sig: int = signal.SIGKILL) -> None:
        """Take the API away at once (the scheduler and volume service keep running)."""
        self._stop("api", sig)

    def stop(self) -> None:
        for name in ("api", "volume", "scheduler"):
            self._stop(name)
        if self._mounted:
            subprocess.run(["umount", "-l", str(self.mount_point)], check=False, timeout=30)
            self._mounted = False
        if self._vhost_created:
            rabbitmqctl("delete_vhost", self.vhost, check=False)
            self._vhost_created = False
        if self._database_created:
            self._server_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self._database_created = False

    # --- files and processes ---------------------------------------------------------------------
    def _write_files(self) -> None:
        for sub in ("etc", "state/lock", "state/coord", "log", "nfsexport", "shim"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.mount_point.mkdir(parents=True, exist_ok=True)
        keystone_section = ""
        auth_strategy = "noauth_include_project_id"
        if self.keystone is not None:
            auth_strategy = "keystone"
            keystone_section = KEYSTONE_SECTION.format(**self.keystone)
        self.conf.write_text(
            CINDER_CONF.format(
                auth_strategy=auth_strategy,
                rabbit=RABBIT_URL,
                vhost=self.vhost,
                dir=self.dir,
                venv=VENV,
                host=self.name,
                database=f"{DATABASE_SERVER.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{self.database}",
                keystone=keystone_section,
            )
        )
        (self.dir / "etc" / "nfs_shares").write_text(self.share + "\n")
        (self.dir / "cinder_wsgi.py").write_text(WSGI_SHIM.format(conf=str(self.conf)))
        sudo = self.dir / "shim" / "sudo"
        sudo.write_text(SUDO_SHIM)
        sudo.chmod(0o755)

    def _make_vhost(self) -> None:
        rabbitmqctl("add_vhost", self.vhost)
        self._vhost_created = True
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")

    def _make_database(self) -> None:
        self._server_sql(f'CREATE DATABASE "{self.database}"')
        self._database_created = True

    @staticmethod
    def _server_sql(statement: str) -> None:
        try:
            with psycopg.connect(f"{DATABASE_SERVER}/postgres", autocommit=True, connect_timeout=10) as conn:
                conn.execute(statement)
        except psycopg.Error as exc:
            raise CinderError(f"{statement} on {DATABASE_SERVER}: {exc}") from exc

    def _mount_share(self) -> None:
        subprocess.run(["mount", "--bind", str(self.export_dir), str(self.mount_point)], check=True, timeout=30)
        self._mounted = True

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{self.dir / 'shim'}:{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"}

    def _manage(self, *args: str) -> None:
        result = subprocess.run(
            [str(VENV_BIN / "cinder-manage"), "--config-file", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=self._env(),
        )
        if result.returncode != 0:
            raise CinderError(f"cinder-manage {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.dir / "log" / f"{name}.out").open("ab")
        self.processes[name] = subprocess.Popen(
            argv, cwd=self.dir, env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def _stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass

    def _wait_for_volume_service(self, timeout: float = 120) -> None:
        """Until the scheduler knows an up cinder-volume with capacity: only then can volumes be made."""
        deadline = time.monotonic() + timeout
        project = uuid.uuid4().hex
        while True:
            try:
                response = self.request("GET", project, "/scheduler-stats/get_pools?detail=true", timeout=5)
                pools = response.json().get("pools", []) if response.status_code == 200 else []
                if any((p.get("capabilities") or {}).get("free_capacity_gb") for p in pools):
                    return
            except requests.RequestException:
                pass
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise CinderError(f"cinder-{name} exited while starting:\n{self.logs()}")
            if time.monotonic() > deadline:
                raise CinderError(f"cinder-volume did not report capacity within {timeout}s:\n{self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        out = []
        for path in sorted((self.dir / "log").glob("*")):
            out.append(f"===== {path.name} =====\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    # --- the tests' own view of Cinder (plain HTTP, as any client) -------------------------------
    # Without Keystone the tests are an admin of ``project_id``. With Keystone they are Cinder's own
    # service user, an admin whose token is scoped to its own project: Cinder wants that project in the
    # URL, and an admin reaches every project's volumes by id (lists need ``all_tenants``).
    def headers(self, project_id: str) -> dict[str, str]:
        token = self._keystone_token()[0] if self.keystone is not None else f"admin:{project_id}"
        return {
            "X-Auth-Token": token,
            "OpenStack-API-Version": f"volume {API_VERSION}",
            "Content-Type": "application/json",
        }

    def request(self, method: str, project_id: str, path: str, body: dict | None = None, timeout: float = 30, **kw):
        if self.keystone is not None:
            project_id = self._keystone_token()[1]
            if method == "GET" and path.split("?")[0] in ("/volumes", "/volumes/detail", "/attachments"):
                path += "&all_tenants=1" if "?" in path else "?all_tenants=1"
        return requests.request(
            method,
            f"{self.endpoint}/{project_id}{path}",
            json=body,
            headers=self.headers(project_id),
            timeout=timeout,
            **kw,
        )

    def _keystone_token(self) -> tuple[str, str]:
        """A token of the service user Cinder runs as (kept for ten minutes), and its project's id."""
        if self._token is None or self._token[2] < time.monotonic():
            user = {"name": self.keystone["username"], "domain": {"name": "Default"}}
            auth = {
                "identity": {
                    "methods": ["password"],
                    "password": {"user": {**user, "password": self.keystone["password"]}},
                },
                "scope": {"project": {"name": self.keystone["project"], "domain": {"name": "Default"}}},
            }
            response = requests.post(f"{self.keystone['auth_url']}/auth/tokens", json={"auth": auth}, timeout=10)
            if response.status_code != 201:
                raise CinderError(f"Keystone refused Cinder's service user: {response.status_code} {response.text}")
            project_id = response.json()["token"]["project"]["id"]
            self._token = (response.headers["X-Subject-Token"], project_id, time.monotonic() + 600)
        return self._token[0], self._token[1]

    def create_volume(self, project_id: str, size: int = 1, name: str = "vol", wait: bool = True) -> dict:
        response = self.request("POST", project_id, "/volumes", {"volume": {"size": size, "name": name}})
        if response.status_code != 202:
            raise CinderError(f"volume create: {response.status_code} {response.text}")
        volume = response.json()["volume"]
        return self.wait_for_status(project_id, volume["id"], "available") if wait else volume

    def volume(self, project_id: str, volume_id: str) -> dict | None:
        response = self.request("GET", project_id, f"/volumes/{volume_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise CinderError(f"volume show: {response.status_code} {response.text}")
        return response.json()["volume"]

    def wait_for_status(self, project_id: str, volume_id: str, status: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            volume = self.volume(project_id, volume_id)
            current = volume["status"] if volume else "deleted"
            if current == status:
                return volume or {}
            if current == "error" and status != "error":
                raise CinderError(f"volume {volume_id} went to error")
            if time.monotonic() > deadline:
                raise CinderError(f"volume {volume_id} is {current} after {timeout}s, not {status}")
            time.sleep(0.3)

    def attachments(self, project_id: str, volume_id: str) -> list[dict]:
        response = self.request("GET", project_id, f"/attachments?volume_id={volume_id}")
        if response.status_code != 200:
            raise CinderError(f"attachment list: {response.status_code} {response.text}")
        return response.json()["attachments"]

    def volume_file(self, volume_id: str) -> Path:
        """Where the NFS driver keeps the volume's data."""
        return self.export_dir / f"volume-{volume_id}"
