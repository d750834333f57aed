"""Kill -9 a host's worker in the middle of a cold migration, and start it again.

1. The source, while it uploads the disk (``compute.migrate_disk``, the upload held by a gate): its
   guest is already powered off and kept aside (``<dir>_resize``).
2. The destination, while it downloads that disk to build the guest (``compute.finish_migration``).

Promise: the move ends, never stuck in progress, and nothing leaks: one domain, on the host the server
is on; no files of the move left on either host; the claims and the quota usage exactly those of one
server; the transfer image gone.

With RabbitMQ the broker gives the unacknowledged step back the moment the worker's connection dies, so
the restarted worker does it again and the move completes (confirmed here: the server on the
destination). With Redis the message waits for the transport's visibility timeout (an hour), so the
step's lease runs out and the reaper sends the server back to its source, which brings back the guest
it kept: ACTIVE there, the migration ``reverted``.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
import redis
import requests
from django.conf import settings

from portal.models import ComputeHost, Image, Instance, Migration
from portal.selectors.hosts import claimed_usage
from portal.selectors.quotas import instance_usage
from tests.processes import free_port, wait_for_host, wait_until

from .harness import FAULT_ENV, FaultCluster, boot, broker_for, build_events, wait_status

pytestmark = pytest.mark.integration

SOURCE, DEST = "movehost1", "movehost2"
LEASE = "12"  # each step of a move whose host dies ends within this (plus the reaper's interval)
MOVE_ENV = {"LEASE_SNAPSHOT": LEASE, "LEASE_SPAWNING": LEASE}


class TransferGate:
    """A proxy in front of the API for the URLs the conductor writes (image downloads and the signed disk
    uploads). Armed for ``GET`` or ``PUT``, it holds the first such request it sees until ``drop()``,
    then answers it 503 without forwarding: the worker that sent it is dead by then, and its transfer
    never reaches the API. Everything else goes through as it came."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.armed: str | None = None
        self.holding = threading.Event()
        self.dropped = threading.Event()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if gate.armed == method and not gate.holding.is_set():
                    gate.holding.set()
                    gate.dropped.wait(180)
                    self._answer(503, b"")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-length")}
                upstream = requests.request(method, gate.upstream + self.path, data=body, headers=headers, timeout=60)
                self._answer(upstream.status_code, upstream.content, upstream.headers.get("Content-Type"))

            def _answer(self, status: int, body: bytes, content_type: str | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type or "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker that asked was killed

            def do_GET(self):  # noqa: N802
                self._relay("GET")

            def do_PUT(self):  # noqa: N802
                self._relay("PUT")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arm(self, method: str) -> None:
        self.armed = method

    def drop(self) -> None:
        self.dropped.set()

    def stop(self) -> None:
        self.dropped.set()
        self.server.shutdown()
        self.server.server_close()


class MoveCluster(FaultCluster):
    """Two hosts; the conductor writes the gate's address into the URLs it hands to hosts."""

    def __init__(self, work_dir, **kwargs):
        super().__init__(work_dir, **MOVE_ENV, **kwargs)
        self.transfer_gate = TransferGate(self.api_url)

    def _start(self, name, argv, **env):
        if name == "conductor":
            env = {"CLOUD_PUBLIC_URL": self.transfer_gate.url, **env}
        return super()._start(name, argv, **env)

    def stop(self):
        self.transfer_gate.stop()
        super().stop()


def migrate(cluster, admin_session, server_id: str) -> None:
    response = admin_session.post(
        f"{cluster.api_url}/compute/v2.1/servers/{server_id}/action", json={"migrate": None}, timeout=60
    )
    assert response.status_code == 202, response.text


def host_pk(name: str) -> int:
    return ComputeHost.objects.get(name=name).pk


def assert_one_server_on(cluster, tenant, server_id: str, host: str) -> None:
    """Nothing of the move is left: the guest on ``host``, its files only there, the claims and the
    quota usage those of one m1.tiny, the transfer image gone, no host reporting a stray domain of it."""
    other = DEST if host == SOURCE else SOURCE
    instance = Instance.objects.get(uuid=server_id)
    assert instance.host.name == host
    assert (instance.vm_state, instance.task_state) == ("active", None)
    here = cluster.instance_dir(host, server_id)
    assert here.is_dir()
    for directory in (here, cluster.instance_dir(other, server_id)):
        resize_dir = directory.with_name(directory.name + "_resize")
        wait_until(lambda d=resize_dir: not d.exists(), 30, message=f"{resize_dir} to go")
    gone = cluster.instance_dir(other, server_id)
    wait_until(lambda: not gone.exists(), 30, message=f"{gone} to go")

    claims = claimed_usage([host_pk(SOURCE), host_pk(DEST)])
    assert {k: claims[host_pk(host)][k] for k in ("vcpus", "memory_mb", "disk_gb")} == {
        "vcpus": 1,
        "memory_mb": 64,
        "disk_gb": 1,
    }, claims
    assert host_pk(other) not in claims or claims[host_pk(other)]["vcpus"] == 0, claims
    assert instance_usage(tenant.project) == {"instances": 1, "cores": 1, "ram": 64}

    migration = Migration.objects.get(instance=instance)
    assert migration.status in ("confirmed", "reverted", "error"), migration.status
    if migration.transfer_image is not None:
        image = Image.objects.filter(pk=migration.transfer_image).first()
        wait_until(
            lambda: Image.objects.filter(pk=migration.transfer_image).exclude(status="deleted").first() is None,
            30,
            message=f"the transfer image {image and image.id} to be deleted",
        )

    # The next heartbeat of each host after now: neither has a domain of it that it should not have
    # (the destination's would be a stray now the move has ended), and the source still runs it.
    marker = time.time()

    def fresh_beats():
        rows = {row.name: row for row in ComputeHost.objects.filter(name__in=[SOURCE, DEST])}
        if any(r.last_heartbeat is None or r.last_heartbeat.timestamp() < marker + 0.5 for r in rows.values()):
            return None
        return rows

    rows = wait_until(fresh_beats, 30, message="a heartbeat of both hosts")
    for name, row in rows.items():
        assert f"instance-{server_id}" not in row.orphan_domains, (name, row.orphan_domains)
    body = wait_status(cluster, tenant.session, server_id, "ACTIVE", timeout=10)
    assert body["OS-EXT-STS:power_state"] == 1, body


def run_until_kill(cluster, tenant, admin_session, image, armed: str, victim: str):
    cluster.start(SOURCE)
    server_id = boot(cluster, tenant.session, image, name="mover")
    wait_status(cluster, tenant.session, server_id, "ACTIVE", timeout=60)
    cluster.start_compute(DEST)
    wait_for_host(DEST, timeout=90)

    cluster.transfer_gate.arm(armed)
    migrate(cluster, admin_session, server_id)
    assert cluster.transfer_gate.holding.wait(60), f"the {armed} of the move never reached the gate"
    cluster.processes[f"compute-{victim}"].kill()  # SIGKILL: no cleanup, no goodbye to the broker
    cluster.transfer_gate.drop()
    killed_at = time.monotonic()
    cluster.restart(f"compute-{victim}")
    wait_for_host(victim)
    return server_id, killed_at


def wait_move_ended(cluster, tenant, server_id: str, killed_at: float) -> dict:
    # The killed step's lease, then the revert (its own lease) on hosts that are up again.
    budget = 2 * int(LEASE) + 4 * int(FAULT_ENV["REAPER_INTERVAL"]) + 30
    final = wait_status(cluster, tenant.session, server_id, {"ACTIVE", "ERROR", "VERIFY_RESIZE"}, timeout=budget)
    assert time.monotonic() - killed_at <= budget
    return final


def confirm(cluster, session, server_id: str) -> None:
    response = session.post(
        f"{cluster.api_url}/compute/v2.1/servers/{server_id}/action", json={"confirmResize": None}, timeout=60
    )
    assert response.status_code == 204, response.text
    wait_status(cluster, session, server_id, "ACTIVE", timeout=60)


def check_outcome(cluster, tenant, server_id: str, broker: str, killed_at: float, killed_event: str) -> None:
    final = wait_move_ended(cluster, tenant, server_id, killed_at)
    migration = Migration.objects.get(instance__uuid=server_id)
    events = build_events(server_id)
    if broker == "rabbitmq":
        # The broker gave the unacknowledged step back when the worker's connection died: the restarted
        # worker did it, and the move completes.
        assert final["status"] == "VERIFY_RESIZE", final
        assert migration.status == "finished", migration.status
        assert events.count((killed_event, "Success")) == 1, events
        confirm(cluster, tenant.session, server_id)
        assert Migration.objects.get(pk=migration.pk).status == "confirmed"
        assert_one_server_on(cluster, tenant, server_id, DEST)
    else:
        # The message waits for the visibility timeout: the lease ends the step, the server goes back.
        assert final["status"] == "ACTIVE", final
        assert migration.status == "reverted", migration.status
        assert ("conductor_reap_expired_task", "Error") in events, events
        assert ("compute_finish_revert_migration", "Success") in events, events
        assert_one_server_on(cluster, tenant, server_id, SOURCE)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_kill_source_during_migrate_disk(broker, tenant, admin_session, image, faults, tmp_path):
    """With Redis, the same move then shows that the killed step, delivered again after the move ended,
    changes nothing (``late_delivery_changes_nothing``)."""
    cluster = MoveCluster(tmp_path, broker_url=broker_for(broker, tmp_path, faults))
    faults.append(cluster)
    server_id, killed_at = run_until_kill(cluster, tenant, admin_session, image, "PUT", SOURCE)
    assert Instance.objects.get(uuid=server_id).task_state == "resize_migrating"
    if broker == "redis":
        payload, queue = unacked_message("compute.migrate_disk")
        assert queue == f"compute.{SOURCE}"
    check_outcome(cluster, tenant, server_id, broker, killed_at, "compute_migrate_disk")
    if broker == "redis":
        late_delivery_changes_nothing(cluster, tenant, server_id, payload, queue)


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_kill_destination_during_finish_migration(broker, tenant, admin_session, image, faults, tmp_path):
    cluster = MoveCluster(tmp_path, broker_url=broker_for(broker, tmp_path, faults))
    faults.append(cluster)
    server_id, killed_at = run_until_kill(cluster, tenant, admin_session, image, "GET", DEST)
    assert Instance.objects.get(uuid=server_id).task_state == "resize_finish"
    check_outcome(cluster, tenant, server_id, broker, killed_at, "compute_finish_migration")


def unacked_message(task: str) -> tuple[str, str]:
    """The message of ``task`` that a killed worker left in the Redis transport's unacknowledged set:
    (the raw payload, the queue it came from)."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for raw in broker.hvals("unacked"):
        payload, _exchange, routing_key = json.loads(raw)
        if payload["headers"]["task"] == task:
            return json.dumps(payload), routing_key
    raise AssertionError(f"no unacknowledged {task} in the broker")


def late_delivery_changes_nothing(cluster, tenant, server_id: str, payload: str, queue: str) -> None:
    """The Redis transport gives a killed worker's message back after its visibility timeout (an hour),
    long after the lease sent the server back to its source. The test gives it back now, as kombu's
    restore does: that late ``migrate_disk`` has expired with its step's lease and is dropped unread,
    instead of taking the running guest down again."""
    source = cluster.processes[f"compute-{SOURCE}"]
    seen = len(source.output())
    redis.Redis.from_url(settings.CELERY_BROKER_URL).lpush(queue, payload)
    wait_until(
        lambda: "Discarding revoked task: compute.migrate_disk" in source.output()[seen:],
        30,
        message="the source to drop the late migrate_disk",
    )
    time.sleep(2)  # a message run anyway would have taken the guest down by now
    assert "migrate_disk of instance" not in source.output()[seen:]
    assert_one_server_on(cluster, tenant, server_id, SOURCE)
