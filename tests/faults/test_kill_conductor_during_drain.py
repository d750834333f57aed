"""Kill -9 the conductor while a host drain's moves are under way, and start it again.

Three hosts (one COMPUTE_HOSTS worker with the fake hypervisor, whose simulated hosts live-migrate to one
another) and six servers: on the first host two running, one stopped, one suspended and one member of
an anti-affinity group, whose other member is on the second host. The first host is drained through the
API; the conductor dies while a migration is in progress (every step of a move passes through it).

Promise: the drain ends ``done``. Every server that could move is on another host, moved once (one
migration row, none left in progress); the suspended one is named with the reason; the group's members
are on different hosts; the claims and the quota usage are exactly those of the six servers; and no
host reports a domain that is not its own.

A step whose report the killed conductor had taken is given back by RabbitMQ at once. With Redis it
waits for the visibility timeout; the move's lease ends it then, and the drain names the server with
the reason (that is the one difference the test allows between the brokers).
"""

from __future__ import annotations

import time

import pytest

from portal.models import ComputeHost, HostDrain, Instance, Migration, Role
from portal.selectors.hosts import claimed_usage
from portal.selectors.quotas import instance_usage
from tests.factories import MembershipFactory
from tests.processes import HOST_ENV, VENV_BIN, Process, enroll, wait_for_host, wait_until

from .harness import FAULT_ENV, FaultCluster, api_session, broker_for, build_events, wait_status

pytestmark = pytest.mark.integration

HOSTS = ("drainhost-1", "drainhost-2", "drainhost-3")
SOURCE = HOSTS[0]
LEASE = "20"
# The hosts' beats wait in the broker while the conductor is dead: with the fault tests' 6 s, a restart
# slower than that (a loaded machine) finds every host down, and the move given back first has nowhere to
# go. This test kills the conductor, not the hosts: they are given the production default.
DRAIN_ENV = {
    "LEASE_LIVE_MIGRATION": LEASE,
    "LEASE_SNAPSHOT": LEASE,
    "LEASE_SPAWNING": LEASE,
    "SERVICE_DOWN_TIME": "60",
}


def start_cloud(cluster: FaultCluster) -> None:
    cluster.start()
    state = cluster.work_dir / "fleet"
    enroll(list(HOSTS), state / "credentials.json")
    env = {
        **cluster.env,
        "COMPUTE_HOSTS": ",".join(HOSTS),
        "COMPUTE_DRIVER": "fake",
        "COMPUTE_STATE_DIR": str(state),
        "COMPUTE_HEARTBEAT_INTERVAL": "1",
        **HOST_ENV,
    }
    argv = [str(VENV_BIN / "celery"), "-A", "compute_tasks.worker", "worker", "-n", "compute@drainfleet"]
    argv += ["--pool", "threads", "--concurrency", "8", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
    cluster.processes["fleet"] = Process("fleet", argv, env, cluster.work_dir)
    for host in HOSTS:
        wait_for_host(host, timeout=90)


def boot_on(cluster, session, image, name: str, host: str, group: str | None = None) -> str:
    body = {
        "server": {
            "name": name,
            "imageRef": str(image.id),
            "flavorRef": "1",
            "networks": "none",
            "availability_zone": f"nova:{host}",
        }
    }
    if group is not None:
        body["os:scheduler_hints"] = {"group": group}
    response = session.post(f"{cluster.api_url}/compute/v2.1/servers", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def act(cluster, session, server_id: str, action: str) -> None:
    response = session.post(
        f"{cluster.api_url}/compute/v2.1/servers/{server_id}/action", json={action: None}, timeout=60
    )
    assert response.status_code == 202, response.text


def fresh_heartbeats(names) -> dict[str, ComputeHost]:
    marker = time.time()

    def beats():
        rows = {row.name: row for row in ComputeHost.objects.filter(name__in=names)}
        if len(rows) < len(names):
            return None
        if any(r.last_heartbeat is None or r.last_heartbeat.timestamp() < marker + 0.5 for r in rows.values()):
            return None
        return rows

    return wait_until(beats, 30, message="a heartbeat of every host")


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_kill_conductor_during_drain(broker, tenant, image, faults, tmp_path):
    cluster = FaultCluster(tmp_path, broker_url=broker_for(broker, tmp_path, faults), **DRAIN_ENV)
    faults.append(cluster)
    start_cloud(cluster)
    admin = MembershipFactory(role=Role.ADMIN)
    session = api_session(admin)
    api = f"{cluster.api_url}/compute/v2.1"

    response = session.post(
        f"{api}/os-server-groups", json={"server_group": {"name": "spread", "policies": ["anti-affinity"]}}, timeout=30
    )
    assert response.status_code == 200, response.text
    group = response.json()["server_group"]["id"]

    servers = {
        name: boot_on(cluster, session, image, name, SOURCE) for name in ("run1", "run2", "stopped", "suspended")
    }
    servers["member1"] = boot_on(cluster, session, image, "member1", SOURCE, group=group)
    servers["member2"] = boot_on(cluster, session, image, "member2", HOSTS[1], group=group)
    for server_id in servers.values():
        wait_status(cluster, session, server_id, "ACTIVE", timeout=60)
    act(cluster, session, servers["stopped"], "os-stop")
    act(cluster, session, servers["suspended"], "suspend")
    wait_status(cluster, session, servers["stopped"], "SHUTOFF", timeout=30)
    wait_status(cluster, session, servers["suspended"], "SUSPENDED", timeout=30)
    on_source = {name for name, sid in servers.items() if Instance.objects.get(uuid=sid).host.name == SOURCE}
    assert on_source == {"run1", "run2", "stopped", "suspended", "member1"}

    response = session.post(f"{api}/os-host-drains", json={"drain": {"host": SOURCE}}, timeout=30)
    assert response.status_code == 202, response.text
    drain_id = response.json()["drain"]["id"]

    # Every step of a move passes through the conductor: killed while a migration is in progress, it
    # leaves that move half done and the drain's other servers waiting.
    wait_until(
        lambda: Migration.objects.filter(status__in=Migration.ACTIVE_STATUSES).exists(),
        30,
        interval=0.02,
        message="a move of the drain to be under way",
    )
    cluster.processes["conductor"].kill()
    killed_at = time.monotonic()
    in_progress = Migration.objects.filter(status__in=Migration.ACTIVE_STATUSES).count()
    assert in_progress >= 1
    assert HostDrain.objects.get(uuid=drain_id).status == "running"
    cluster.restart("conductor")

    budget = 2 * int(LEASE) + 4 * int(FAULT_ENV["REAPER_INTERVAL"]) + 60

    def drain_done():
        body = session.get(f"{api}/os-host-drains/{drain_id}", timeout=30).json()["drain"]
        return body if body["status"] != "running" else None

    drain = wait_until(drain_done, budget, interval=0.5, message="the drain to end")
    assert time.monotonic() - killed_at <= budget
    assert drain["status"] == "done", drain
    items = {item["name"]: item for item in drain["items"]}
    assert set(items) == on_source, items

    # The suspended server cannot move, and says why.
    assert items["suspended"]["status"] == "failed", items
    assert "suspended" in items["suspended"]["reason"], items
    assert Instance.objects.get(uuid=servers["suspended"]).host.name == SOURCE

    movable = on_source - {"suspended"}
    for name in movable:
        instance = Instance.objects.select_related("host").get(uuid=servers[name])
        migrations = list(Migration.objects.filter(instance=instance))
        assert len(migrations) == 1, (name, [(m.migration_type, m.status) for m in migrations])
        migration = migrations[0]
        item = items[name]
        if item["status"] == "moved":
            assert instance.host.name != SOURCE, (name, instance.host.name)
            assert migration.status in ("completed", "confirmed"), (name, migration.status)
        else:
            # Only a step whose report was lost with the conductor (Redis) may end a move, by its lease.
            assert broker == "redis", (name, item["reason"], migration.status, build_events(servers[name]))
            assert item["status"] == "failed" and item["reason"], item
            assert instance.host.name == SOURCE
            assert migration.status in ("error", "failed", "reverted", "cancelled"), (name, migration.status)
        assert instance.task_state is None, (name, instance.task_state)
    assert not Migration.objects.filter(status__in=Migration.ACTIVE_STATUSES).exists()
    if broker == "rabbitmq":
        assert {items[name]["status"] for name in movable} == {"moved"}, items

    expected_status = {name: "ACTIVE" for name in servers} | {"stopped": "SHUTOFF", "suspended": "SUSPENDED"}
    for name, server_id in servers.items():
        wait_status(cluster, session, server_id, expected_status[name], timeout=10)

    hosts = {name: Instance.objects.select_related("host").get(uuid=sid).host.name for name, sid in servers.items()}
    assert hosts["member1"] != hosts["member2"], hosts

    # Claims: each host holds exactly the servers placed on it, nothing of a move.
    pks = {row.name: row.pk for row in ComputeHost.objects.filter(name__in=HOSTS)}
    claims = claimed_usage(list(pks.values()))
    for host, pk in pks.items():
        count = sum(1 for placed in hosts.values() if placed == host)
        used = claims.get(pk, {"vcpus": 0, "memory_mb": 0, "disk_gb": 0})
        assert (used["vcpus"], used["memory_mb"], used["disk_gb"]) == (count, 64 * count, count), (host, claims)
    assert instance_usage(admin.project) == {"instances": 6, "cores": 6, "ram": 384}

    # No host reports a domain that is not its own.
    rows = fresh_heartbeats(HOSTS)
    for host, row in rows.items():
        assert row.orphan_domains == [], (host, row.orphan_domains)
    assert ComputeHost.objects.get(name=SOURCE).enabled is False
