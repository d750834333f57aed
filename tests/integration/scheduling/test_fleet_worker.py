"""One compute worker process standing in for three hosts (COMPUTE_HOSTS) on libvirt's test driver,
with the real API, broker and conductor: every host heartbeats, builds land on the host whose queue
they were sent to, a hard anti-affinity group spreads over the hosts, and a build that fails on one
host is rescheduled onto another, which leaves the failing host marked."""

from __future__ import annotations

import subprocess

import pytest

from portal.models import ComputeHost, Instance, QuotaLimit, ServerGroup
from tests.processes import HOST_ENV, VENV_BIN, Cluster, Process, enroll, purge_broker, wait_until

pytestmark = pytest.mark.integration

HOSTS = ("sim-1", "sim-2", "sim-3")


@pytest.fixture(scope="module")
def fleet(django_db_setup, django_db_blocker, live_server, tmp_path_factory):
    purge_broker()
    cluster = Cluster(live_server.url, tmp_path_factory.mktemp("fleet"))
    cluster.start_conductor()
    state = cluster.work_dir / "fleet"
    # Nothing can be created in sim-1's instance directory (immutable, which binds root too): every build
    # there fails, a host problem and so reschedulable, while its heartbeats go on.
    broken = state / "sim-1" / "instances"
    broken.mkdir(parents=True, mode=0o700)  # as the host makes it: private
    subprocess.run(["chattr", "+i", str(broken)], check=True)
    env = {
        **cluster.env,
        "COMPUTE_HOSTS": "sim-[1-3]",
        "COMPUTE_DRIVER": "libvirt",
        "COMPUTE_LIBVIRT_URI": "test:///default",
        "COMPUTE_STATE_DIR": str(state),
        "COMPUTE_HEARTBEAT_INTERVAL": "1",
        **HOST_ENV,
    }
    enroll(list(HOSTS), state / "credentials.json")
    argv = [str(VENV_BIN / "celery"), "-A", "compute_tasks.worker", "worker", "-n", "compute@fleet"]
    argv += ["--pool", "threads", "--concurrency", "4", "--loglevel", "INFO", "--without-mingle", "--without-gossip"]
    cluster.processes["fleet"] = Process("fleet", argv, env, cluster.work_dir)
    cluster.state = state
    yield cluster
    subprocess.run(["chattr", "-i", str(broken)], check=True)
    with django_db_blocker.unblock():
        cluster.stop()
    purge_broker()


@pytest.fixture
def hosts_up(fleet, transactional_db):
    wait_until(
        lambda: ComputeHost.objects.filter(name__in=HOSTS, last_heartbeat__isnull=False).count() == 3,
        60,
        message="a heartbeat from each simulated host",
    )


def status(user, server_id):
    return user.server(server_id)["status"]


def test_builds_follow_their_queue_and_failures_move_to_another_host(
    fleet, hosts_up, api_user, tiny_flavor, small_image
):
    for resource in ("instances", "cores", "ram", "server_group_members"):
        QuotaLimit.objects.create(project=api_user.ctx.project, resource=resource, hard_limit=-1)
    group = ServerGroup.objects.create(
        name="spread", project=api_user.ctx.project, user=api_user.ctx.user, policy="anti-affinity"
    )
    ids = []
    for index in range(2):
        body = {
            "server": {"name": f"s{index}", "imageRef": str(small_image.id), "flavorRef": "1", "networks": "none"},
            "os:scheduler_hints": {"group": str(group.uuid)},
        }
        response = api_user.post("/servers", body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["server"]["id"])

    wait_until(lambda: all(status(api_user, i) in ("ACTIVE", "ERROR") for i in ids), 60, message="builds")
    assert [status(api_user, i) for i in ids] == ["ACTIVE", "ACTIVE"], fleet.logs()

    placed = {str(i.uuid): i for i in Instance.objects.filter(uuid__in=ids).select_related("host")}
    # Two members, two different hosts, neither of them the broken one.
    assert sorted(i.host.name for i in placed.values()) == ["sim-2", "sim-3"]
    for server_id, instance in placed.items():
        # Each build ran as the host whose queue it came from: its disk is in that host's directory.
        assert (fleet.state / instance.host.name / "instances" / server_id / "disk").exists()
    # Whichever went to sim-1 first (the roomiest-looking host) failed there and was rescheduled.
    retried = [i for i in placed.values() if i.attempted_hosts]
    assert [i.attempted_hosts for i in retried] in ([["sim-1"]], [["sim-1"], ["sim-1"]])
    assert all(i.build_attempts == 2 for i in retried)
    assert ComputeHost.objects.get(name="sim-1").failed_builds >= 1

    # Each host reports only its own domains, so none of them is mistaken for a stray and removed.
    wait_until(
        lambda: ComputeHost.objects.filter(
            name="sim-1", last_heartbeat__gt=max(i.launched_at for i in placed.values())
        ).exists(),
        10,
        message="a later heartbeat of sim-1",
    )
    assert [status(api_user, i) for i in ids] == ["ACTIVE", "ACTIVE"]

    for server_id in ids:
        assert api_user.delete(f"/servers/{server_id}").status_code == 204
    wait_until(lambda: all(api_user.get(f"/servers/{i}").status_code == 404 for i in ids), 30, message="deletes")
    for server_id, instance in placed.items():
        assert not (fleet.state / instance.host.name / "instances" / server_id).exists()
