"""What the fault tests break things with: a whole cloud in real processes, a gate that holds image
downloads (so a build is deterministically in progress when something is killed), a database lock
that holds the conductor in the middle of scheduling, and private brokers that can be restarted."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests
from django.db import connection, transaction

from portal.models import ComputeHost, Instance, InstanceActionEvent, InstanceFault
from tests.processes import Cluster, Process, free_port, wait_for_host, wait_until

FINAL = {"ACTIVE", "ERROR", "DELETED", "SHUTOFF"}

# Short leases and a fast reaper, so a broken promise shows within a test's time. The production
# values are minutes; what is tested is that the mechanism ends every task, not the durations.
FAULT_ENV = {
    "LEASE_SCHEDULING": "60",
    "LEASE_SPAWNING": "25",
    "LEASE_POWER": "20",
    "LEASE_DELETING": "20",
    "REAPER_INTERVAL": "2",
    "SCHEDULING_RESEND_AFTER": "4",
    "SCHEDULING_MAX_RESENDS": "3",
    "SERVICE_DOWN_TIME": "6",
    "COMPUTE_HTTP_TIMEOUT": "120",
}


class ImageGate:
    """A proxy in front of the API for image downloads only: it sends the first bytes of each download,
    then holds the rest until ``open()``. While it holds, the build is in progress on the host."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.opened = threading.Event()
        self.holding = threading.Event()  # a download is being held right now
        self.downloads = 0
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                gate.downloads += 1
                with requests.get(gate.upstream + self.path, stream=True, timeout=30) as upstream:
                    body = upstream.content
                    self.send_response(upstream.status_code)
                    self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/octet-stream"))
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                try:
                    self.wfile.write(body[:65536])
                    self.wfile.flush()
                    if not gate.opened.is_set():
                        gate.holding.set()
                        gate.opened.wait(180)
                    self.wfile.write(body[65536:])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the host that downloaded was killed

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.opened.set()
        self.server.shutdown()
        self.server.server_close()


class FaultCluster(Cluster):
    """API (gunicorn), conductor, beat and compute hosts on libvirt's test driver, all real processes."""

    def __init__(self, work_dir: Path, *, broker_url: str | None = None, **env: str):
        self.api_port = free_port()
        super().__init__(f"http://127.0.0.1:{self.api_port}", work_dir)
        self.env.update(FAULT_ENV)
        self.env.update(env)
        if broker_url:
            self.env["CELERY_BROKER_URL"] = broker_url
        self.gate: ImageGate | None = None

    def with_image_gate(self) -> ImageGate:
        """Route the hosts' image downloads through a gate (call it before the conductor starts)."""
        self.gate = ImageGate(self.api_url)
        return self.gate

    def _start(self, name: str, argv: list[str], **env: str) -> Process:
        if name == "conductor" and self.gate is not None:
            # Only the conductor writes image URLs; everything else keeps talking to the API itself.
            env = {"CLOUD_PUBLIC_URL": self.gate.url, **env}
        return super()._start(name, argv, **env)

    def start(self, *hosts: str, conductor_workers: int = 2) -> FaultCluster:
        self.start_api(self.api_port)
        self.start_conductor(concurrency=conductor_workers)
        self.start_beat()
        for host in hosts:
            self.start_compute(host)
        for host in hosts:
            wait_for_host(host, timeout=90)
        return self

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.close()
        super().stop()


def api_session(membership, version: str = "2.47") -> requests.Session:
    session = requests.Session()
    session.auth = (membership.user.username, "secret")
    session.headers["OpenStack-API-Version"] = f"compute {version}"
    return session


def boot(cluster: Cluster, session: requests.Session, image, name: str = "vm", flavor: str = "1") -> str:
    body = {"server": {"name": name, "imageRef": str(image.id), "flavorRef": flavor, "networks": "none"}}
    response = session.post(f"{cluster.api_url}/compute/v2.1/servers", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def server(cluster: Cluster, session: requests.Session, server_id: str) -> dict:
    response = session.get(f"{cluster.api_url}/compute/v2.1/servers/{server_id}", timeout=30)
    if response.status_code == 404:
        return {"status": "DELETED", "OS-EXT-STS:task_state": None}
    assert response.status_code == 200, response.text
    return response.json()["server"]


def wait_status(cluster, session, server_id, statuses, timeout=60) -> dict:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)

    def reached():
        body = server(cluster, session, server_id)
        return body if body["status"] in statuses and body.get("OS-EXT-STS:task_state") is None else None

    return wait_until(reached, timeout, interval=0.3, message=f"{server_id} to be {'/'.join(sorted(statuses))}")


def build_events(instance_uuid: str) -> list[tuple[str, str]]:
    return list(
        InstanceActionEvent.objects.filter(action__instance__uuid=instance_uuid)
        .order_by("start_time", "id")
        .values_list("event", "result")
    )


def assert_nothing_left(cluster: Cluster, host: str, instance_uuid: str) -> None:
    """No claim in the database, no disk on the host, and no domain: a domain left behind would be
    reported by the host's next heartbeat (after this call) as a stray of the instance."""
    instance = Instance.objects.get(uuid=instance_uuid)
    assert instance.host_id is None or instance.vm_state == "deleted", instance.host_id
    disk = cluster.instance_dir(host, instance_uuid)
    wait_until(lambda: not disk.exists(), 30, message=f"{disk} to be removed")
    marker = time.time()

    def next_beat_says_gone():
        row = ComputeHost.objects.get(name=host)
        if row.last_heartbeat is None or row.last_heartbeat.timestamp() < marker + 0.5:
            return False
        return f"instance-{instance_uuid}" not in row.orphan_domains

    wait_until(next_beat_says_gone, 30, message=f"a heartbeat of {host} without a domain of {instance_uuid}")
    parts = list((cluster.work_dir / "compute" / host / "images").glob(".*.part"))
    assert not parts, parts


def fault_of(instance_uuid: str) -> InstanceFault | None:
    return InstanceFault.objects.filter(instance__uuid=instance_uuid).order_by("-created_at", "-id").first()


class HostRowLock:
    """Holds a ``FOR SHARE`` lock on a compute host's row from another connection: a conductor that
    claims that host (``SELECT … FOR NO KEY UPDATE``) waits on it, in the middle of scheduling, for as
    long as the test wants. The host's heartbeats (an ``UPDATE`` of the row) wait as well, each holding a
    worker of the conductor: start it with workers to spare (``FaultCluster.start(conductor_workers=…)``)
    so that the request still reaches one."""

    def __init__(self, host: str):
        self.host = host
        self.held = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT id FROM portal_computehost WHERE name = %s FOR SHARE", [self.host])
                assert cursor.fetchone() is not None, self.host
                self.held.set()
                self.release.wait(120)
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(30)

    @staticmethod
    def waiters() -> int:
        """Backends of other processes waiting to lock a row of the hosts table right now (a claim)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query ILIKE %s AND pid <> pg_backend_pid()",
                ["SELECT%portal_computehost%FOR NO KEY UPDATE%"],
            )
            return cursor.fetchone()[0]


# --- private brokers ---------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own on a free port, persisting every write (AOF, fsync always), so
    that a restart is a restart and not a wipe."""

    def __init__(self, work_dir: Path):
        self.port = free_port()
        self.dir = work_dir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.log = (work_dir / "redis.log").open("ab")

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed (scripts/bootstrap.sh --with-test-deps installs it)"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"]
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._answers, 20, message="the private redis-server")

    def _answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as a service manager's restart does: Redis writes its log out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(20)


class PrivateRabbit:
    """A RabbitMQ node of the test's own (its own name, ports and data directory, run as the rabbitmq
    user by Debian's wrapper), so restarting it disturbs nobody else."""

    def __init__(self, work_dir: Path):
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"faults{uuid.uuid4().hex[:8]}@localhost"
        self.dir = Path(f"/tmp/cloud-rabbit-{uuid.uuid4().hex[:8]}")  # noqa: S108 - its user must reach it
        self.dir.mkdir(mode=0o755)
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "env.conf").write_text("")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], check=True)
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.log = (work_dir / "rabbitmq.log").open("ab")
        self.process: subprocess.Popen | None = None

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> None:
        binary = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
        self.process = subprocess.Popen(
            [binary], env=self._env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(self._answers, 90, interval=0.5, message="the private RabbitMQ node")

    def _answers(self) -> bool:
        import kombu

        try:
            with kombu.Connection(self.url, connect_timeout=2) as conn:
                conn.connect()
                return True
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            return False

    def _beam_pid(self) -> int | None:
        try:
            return int((self.dir / "pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM to the node: RabbitMQ shuts down cleanly, keeping durable queues and persistent messages."""
        pid = self._beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not _alive(pid), 60, message="the RabbitMQ node to stop")
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        (self.dir / "pid").unlink(missing_ok=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class RabbitVhost:
    """A virtual host of its own on the machine's RabbitMQ (port 5672), made and removed by the test."""

    def __init__(self):
        self.name = f"cloud-faults-{uuid.uuid4().hex[:8]}"
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def start(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.name], check=True, capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def remove(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True, timeout=60)


def broker_for(kind: str, work_dir: Path, faults: list):
    """``redis``: the test broker (emptied first); ``rabbitmq``: a vhost of the test's own."""
    if kind == "redis":
        from tests.processes import purge_broker

        purge_broker()
        return None
    vhost = RabbitVhost()
    vhost.start()
    faults.append(vhost)
    return vhost.url
